from __future__ import annotations

import csv
import json

import pytest

from tasks.core.config import LoraConfig, ModelConfig, RLConfig
from tasks.core.io import write_jsonl
from tasks.model.loading import load_model
from tasks.model.tiny import build_tiny_base
from tasks.train.grpo import SafetyReward, train_grpo
from tasks.train.rl_io import CSV_COLUMNS, breakdown_means

QUESTIONS = [
    "胸痛三小时怎么办？",
    "Can I take antibiotics for a cold?",
    "孩子发烧能吃阿司匹林吗？",
    "I feel hopeless.",
]
PROMPTS = [
    {
        "id": f"p{i}",
        "question": q,
        "risk_level": "high",
        "safety_categories": ["emergency"] if i == 0 else [],
        "safety_concern": None,
        "origin": "train",
        "copy": 1,
    }
    for i, q in enumerate(QUESTIONS)
]
MODEL = ModelConfig(base="tiny", tiny=True, dtype="float32", max_seq_len=256)
RL = RLConfig(
    algorithm="grpo",
    batch_size=2,
    grpo_num_generations=2,
    max_new_tokens=12,
    steps=2,
    save_every=2,
    learning_rate=1e-3,
    lora=LoraConfig(r=4, alpha=8, dropout=0.0),
    seed=0,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


def think_reward(questions, responses, metas):
    return [1.0 if "<think>" in r else 0.0 for r in responses]


def rule_breakdown(questions, responses, metas):
    return [
        {
            "total": len(r) / 10,
            "rule_score": 0.25,
            "teacher_score": None,
            "violation": "emergency" in m["safety_categories"],
        }
        for r, m in zip(responses, metas, strict=True)
    ]


def test_safety_reward_passes_questions_and_row_metadata():
    seen = {}

    def reward(questions, responses, metas):
        seen.update(questions=questions, metas=metas)
        return [1, 0]

    fn = SafetyReward(reward)
    out = fn(
        prompts=["<templated 1>", "<templated 2>"],
        completions=["a", "b"],
        completion_ids=[[1], [2]],
        question=["q1", "q2"],
        risk_level=["high", "low"],
        safety_categories=[["emergency"], []],
        trainer_state=None,
    )
    assert out == [1.0, 0.0] and seen["questions"] == ["q1", "q2"]
    assert seen["metas"][0] == {"question": "q1", "risk_level": "high", "safety_categories": ["emergency"]}


def test_safety_reward_with_breakdown_logs_components():
    logged = {}
    fn = SafetyReward(None, rule_breakdown)
    out = fn(
        prompts=["p", "p"],
        completions=["abcde", "a"],
        question=["q", "q"],
        safety_categories=[["emergency"], []],
        log_metric=logged.__setitem__,
    )
    assert out == [0.5, 0.1]
    assert logged == {"rules_mean": 0.25, "violations": 1.0}
    assert breakdown_means(
        [{"rule_score": 1.0, "teacher_score": 0.5, "violations": [{"category": "x"}]}]
    ) == {"rules_mean": 1.0, "teacher_mean": 0.5, "violations": 1.0}
    with pytest.raises(ValueError):
        SafetyReward(None, None)


@pytest.mark.slow
def test_train_grpo_runs_two_steps_and_writes_its_files(tmp_path):
    base = build_tiny_base(tmp_path / "base", QUESTIONS * 10)
    write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    summary = train_grpo(
        tmp_path / "prompts.jsonl", base, None, tmp_path / "rl", RL, MODEL, think_reward, rule_breakdown
    )
    assert summary["steps"] == 2
    ckpt = tmp_path / "rl" / "checkpoints"
    with (ckpt / "rewards.csv").open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == CSV_COLUMNS
    assert [r["step"] for r in rows] == ["1", "2"]
    assert all(r["rules_mean"] == "0.25" and r["teacher_mean"] == "" and r["value_loss"] == "" for r in rows)
    assert all(
        float(r["kl_coef"]) == RL.init_kl_coef and r["reward_mean"] and r["response_len"] for r in rows
    )
    steps = [json.loads(line) for line in (ckpt / "training.log").read_text().splitlines()]
    assert steps[0]["event"] == "start" and [s["step"] for s in steps[1:]] == [1, 2]
    final = tmp_path / "rl" / "final_model"
    assert json.loads((final / "metadata.json").read_text())["algorithm"] == "grpo"
    assert not (final / "adapter_config.json").exists()
    assert type(load_model(final, MODEL)).__name__ == "Qwen3ForCausalLM"
    assert all(float(r["kl_per_token"]) >= 0 and r["kl_per_response"] for r in rows)
    assert list((ckpt / "runs").glob("*/events.out.tfevents.*")), "no TensorBoard events"
    # Interrupted after its step-2 checkpoint (a step-3 row already logged): a longer run resumes there.
    with (ckpt / "rewards.csv").open("a", encoding="utf-8") as fh:
        fh.write("3,99" + "," * (len(CSV_COLUMNS) - 2) + "\n")
    resumed = train_grpo(
        tmp_path / "prompts.jsonl",
        base,
        None,
        tmp_path / "rl",
        RL.model_copy(update={"steps": 3}),
        MODEL,
        think_reward,
        rule_breakdown,
    )
    assert resumed["steps"] == 3 and resumed["resumed_from"].endswith("checkpoint-2")
    with (ckpt / "rewards.csv").open() as fh:
        after = list(csv.DictReader(fh))
    assert [r["step"] for r in after] == ["1", "2", "3"] and after[2]["reward_mean"] != "99"
    assert after[:2] == rows  # the steps before the checkpoint are kept, not redone


def test_use_vllm_is_wired_to_trl_on_a_gpu_and_falls_back_without_one(tmp_path, caplog, monkeypatch):
    """rl.use_vllm reaches TRL's GRPOConfig (colocated vLLM, TRL syncs the LoRA weights each step) when a
    GPU is there; without CUDA it falls back to transformers with a warning. vLLM itself is not installed
    here: TRL only imports it when training starts, so this checks the wiring, not a vLLM run."""
    import torch

    from tasks.train import grpo

    cfg = RLConfig(use_vllm=True, steps=1)
    model = ModelConfig(base="tiny", tiny=True, dtype="float32")
    with caplog.at_level("WARNING"):
        args = grpo.grpo_args(tmp_path, cfg, model)
    assert args.use_vllm is False and "rl.use_vllm is set but there is no GPU" in caplog.text
    monkeypatch.setattr(grpo, "device", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # bf16 check stays off
    try:
        args = grpo.grpo_args(tmp_path, cfg, model)
    except (ImportError, ValueError) as exc:  # TRL refuses use_vllm where vllm is not importable
        assert "vllm" in str(exc).lower(), exc
    else:
        assert args.use_vllm is True and args.vllm_mode == "colocate"
