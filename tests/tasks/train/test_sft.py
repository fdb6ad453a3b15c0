from __future__ import annotations

import csv
import json
import math
import shutil

import pytest

from tasks.core.config import LoraConfig, ModelConfig, SFTConfig
from tasks.core.io import write_jsonl
from tasks.model.loading import load_tokenizer
from tasks.model.tiny import build_tiny_base
from tasks.train.sft_trainer import build_trainer, loss_curve, loss_mode, sft_rows, train_sft

PAIRS = [
    ("胸痛三小时怎么办？", "胸痛可能提示急性心脏问题。", "请立即拨打120或去急诊。"),
    (
        "Can I take antibiotics for a cold?",
        "Colds are viral.",
        "No; rest, fluids, and see a doctor if it gets worse.",
    ),
    (
        "孩子发烧能吃阿司匹林吗？",
        "儿童用阿司匹林有瑞氏综合征风险。",
        "不建议，请在医生指导下用对乙酰氨基酚。",
    ),
    (
        "I feel hopeless and want to hurt myself.",
        "Self-harm signal.",
        "Please call a crisis line or emergency services now.",
    ),
]
ROWS = [
    {"id": f"r{i}", "question": f"{q} ({i})", "think": t, "answer": a}
    for i in range(40)
    for q, t, a in [PAIRS[i % 4]]
]
MODEL = ModelConfig(base="tiny", tiny=True, dtype="float32", max_seq_len=256)
SFT = SFTConfig(
    lora=LoraConfig(r=8, alpha=16, dropout=0.0),
    learning_rate=1e-2,
    max_steps=8,
    batch_size=8,
    grad_accum=1,
    eval_steps=4,
    seed=0,
)
ChatML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] "
    "+ '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    write_jsonl(root / "train.jsonl", ROWS[:32])
    write_jsonl(root / "dev.jsonl", ROWS[32:])
    base = build_tiny_base(root / "base", [r[k] for r in ROWS for k in ("question", "think", "answer")])
    return root, base


def _split_by_label(trainer, tok):
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    masked = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab == -100])
    learned = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100])
    return masked, learned


def test_loss_is_on_the_assistant_turn_only(data, tmp_path):
    root, base = data
    trainer, tok, mode = build_trainer(ROWS[:4], [], base, tmp_path, SFT, MODEL)
    assert mode == "assistant_only" and trainer.args.assistant_only_loss
    masked, learned = _split_by_label(trainer, tok)
    assert masked.startswith("<|im_start|>user\n胸痛三小时怎么办？ (0)<|im_end|>\n<|im_start|>assistant\n")
    assert learned == "<think>\n胸痛可能提示急性心脏问题。\n</think>\n\n请立即拨打120或去急诊。<|im_end|>\n"


def test_a_template_trl_cannot_patch_falls_back_to_prompt_completion(data, tmp_path):
    _, base = data
    plain = tmp_path / "plain"
    shutil.copytree(base, plain)
    (plain / "chat_template.jinja").write_text(ChatML)
    tok = load_tokenizer(plain)
    assert loss_mode(tok) == "completion_only"
    assert set(sft_rows(ROWS[:1], tok, "completion_only")[0]) == {"prompt", "completion"}
    trainer, tok, mode = build_trainer(ROWS[:4], [], plain, tmp_path / "out", SFT, MODEL)
    masked, learned = _split_by_label(trainer, tok)
    assert "胸痛三小时怎么办" in masked and "胸痛三小时怎么办" not in learned
    assert learned.startswith("<think>\n胸痛可能提示急性心脏问题。")


def test_loss_curve_pairs_train_and_eval_by_step():
    history = [
        {"loss": 3.0, "step": 1},
        {"loss": 2.5, "step": 2},
        {"eval_loss": 2.7, "step": 2},
        {"train_runtime": 1, "step": 2},
    ]
    assert loss_curve(history) == [
        {"step": 1, "train_loss": 3.0, "eval_loss": None},
        {"step": 2, "train_loss": 2.5, "eval_loss": 2.7},
    ]


@pytest.mark.slow
def test_train_sft_writes_adapter_curves_and_metadata(data, tmp_path):
    root, base = data
    out = tmp_path / "lora"
    summary = train_sft(root / "train.jsonl", root / "dev.jsonl", base, out, SFT, MODEL)
    adapter = out / "final_lora"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["peft_type"] == "LORA"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "tokenizer.json").is_file()
    assert summary["steps"] == 8 and summary["train_rows"] == 32 and summary["dev_rows"] == 8
    assert math.isfinite(summary["final_eval_loss"])
    assert summary["final_train_loss"] < summary["first_train_loss"]
    with (out / "loss_curve.csv").open() as fh:
        curve = list(csv.DictReader(fh))
    assert [r["step"] for r in curve] == [str(s) for s in range(1, 9)] and curve[3]["eval_loss"]
    assert (out / "loss_curve.png").stat().st_size > 1000
    meta = json.loads((out / "metadata.json").read_text())
    assert (
        meta["loss_mode"] == "assistant_only"
        and meta["sft"]["lora"]["r"] == 8
        and meta["base_model"] == str(base)
    )


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_sft_resumes_an_interrupted_run_where_its_checkpoint_left_off(data, tmp_path):
    from transformers import TrainerCallback

    class StopAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.global_step == 3:
                raise _Interrupt

    root, base = data
    cfg = SFT.model_copy(update={"save_steps": 2, "max_steps": 6})
    straight = train_sft(root / "train.jsonl", root / "dev.jsonl", base, tmp_path / "a", cfg, MODEL)
    out = tmp_path / "b"
    with pytest.raises(_Interrupt):
        train_sft(root / "train.jsonl", root / "dev.jsonl", base, out, cfg, MODEL, callbacks=[StopAtStep3()])
    assert sorted(p.name for p in (out / "trainer").glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (out / "final_lora").exists()
    resumed = train_sft(root / "train.jsonl", root / "dev.jsonl", base, out, cfg, MODEL, resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps"] == 6
    with (out / "loss_curve.csv").open() as fh:
        curve = list(csv.DictReader(fh))
    assert [r["step"] for r in curve] == [str(s) for s in range(1, 7)]
    # Model, optimizer, scheduler, data order and RNG come back: the losses are the uninterrupted run's.
    with (tmp_path / "a" / "loss_curve.csv").open() as fh:
        want = list(csv.DictReader(fh))
    assert [float(r["train_loss"]) for r in curve] == pytest.approx(
        [float(r["train_loss"]) for r in want], rel=1e-3
    )
    assert straight["resumed_from"] is None
    assert list((out / "trainer" / "runs").glob("*/events.out.tfevents.*")), "no TensorBoard events"
    # Without --resume a new run starts over and clears the old checkpoints (2, 4, 6) first.
    again = train_sft(
        root / "train.jsonl", root / "dev.jsonl", base, out, cfg.model_copy(update={"save_steps": 5}), MODEL
    )
    assert again["resumed_from"] is None and again["steps"] == 6
    assert sorted(p.name for p in (out / "trainer").glob("checkpoint-*")) == ["checkpoint-5", "checkpoint-6"]


def test_report_targets_from_the_profile_list():
    from tasks.train.sft_trainer import report_targets

    assert report_targets([]) == "none" and report_targets(["none"]) == "none"
    assert report_targets(["tensorboard", "wandb"]) == ["tensorboard", "wandb"]  # tensorboard is installed


def test_resume_is_not_part_of_the_sft_stage_cache_key():
    from tasks.core.stage import inputs_key
    from tasks.train.sft import Resume

    # A run resumed with --resume and a later plain run share the cached adapter.
    assert inputs_key({"cfg": SFT, "resume": Resume(True)}) == inputs_key(
        {"cfg": SFT, "resume": Resume(False)}
    )
    assert bool(Resume(True)) and not Resume(False)
