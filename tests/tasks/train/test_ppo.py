from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch

from tasks.core.config import LoraConfig, ModelConfig, RLConfig
from tasks.core.io import write_jsonl
from tasks.model.chat import build_chat_prompt
from tasks.model.loading import load_policy, load_tokenizer
from tasks.model.tiny import build_tiny_base
from tasks.train.ppo import (
    batch_indices,
    build_state,
    forward_response,
    ppo_step,
    response_mask,
    sample_rollout,
    score_responses,
    train_ppo,
)
from tasks.train.ppo_state import save_checkpoint
from tasks.train.rl_io import CSV_COLUMNS, append_row, keep_rows, read_rows

SAFE = "头痛可能有多种原因，应立即就医。"
UNSAFE = "多喝水，自己买药吃就好。"
QUESTIONS = [f"我{i}岁，头痛{i % 7}天了怎么办？" for i in range(24)]


def referral_reward(questions: list[str], responses: list[str], metas: list[dict]) -> list[float]:
    """+1 when the response sends the patient to a doctor (the tiny model's SAFE answer), else 0."""
    return [1.0 if "就医" in r else 0.0 for r in responses]


def rl_cfg(**overrides) -> RLConfig:
    fields = {"max_new_tokens": 20, "save_every": 100, "lora": LoraConfig(r=8, alpha=16, dropout=0.0)}
    return RLConfig(**(fields | overrides))


def model_cfg(base: Path) -> ModelConfig:
    return ModelConfig(base=str(base), tiny=True, dtype="float32", max_seq_len=128)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def raw_base(tmp_path_factory) -> Path:
    """The tiny Qwen3 with random weights and a tokenizer trained on the test's own text."""
    texts = [q + SAFE + UNSAFE + "<think>想一想。</think>" for q in QUESTIONS]
    return build_tiny_base(tmp_path_factory.mktemp("raw") / "tiny", texts=texts)


@pytest.fixture(scope="module")
def tuned_base(raw_base, tmp_path_factory) -> Path:
    """raw_base briefly trained on chat turns answering SAFE one time in four, UNSAFE otherwise."""
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(raw_base)
    model = AutoModelForCausalLM.from_pretrained(raw_base)
    texts = [
        tok.apply_chat_template(
            [
                {"role": "user", "content": q},
                {
                    "role": "assistant",
                    "content": f"<think>\n想一想。\n</think>\n\n{SAFE if k % 4 == 0 else UNSAFE}",
                },
            ],
            tokenize=False,
        )
        for k, q in enumerate(QUESTIONS * 2)
    ]
    rng, opt = random.Random(0), torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(120):
        batch = tok(rng.sample(texts, 16), return_tensors="pt", padding=True, add_special_tokens=False)
        loss = model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = tmp_path_factory.mktemp("tuned") / "tiny"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "training_prompts.jsonl"
    write_jsonl(
        path,
        [
            {"id": str(i), "question": q, "risk_level": "high", "origin": "train"}
            for i, q in enumerate(QUESTIONS)
        ],
    )
    return path


def test_response_mask_keeps_tokens_up_to_the_first_eos():
    ids = torch.tensor([[5, 6, 2, 9, 2], [5, 2, 0, 0, 0], [5, 6, 7, 8, 9]])
    assert response_mask(ids, [2, 3]).tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_batch_indices_visit_every_prompt_once_per_pass_deterministically():
    first_pass = [i for step in range(1, 6) for i in batch_indices(10, 2, step, seed=3)]
    assert sorted(first_pass) == list(range(10))
    assert batch_indices(10, 2, 7, seed=3) == batch_indices(10, 2, 7, seed=3)
    second_pass = [i for step in range(6, 11) for i in batch_indices(10, 2, step, seed=3)]
    assert sorted(second_pass) == list(range(10)) and second_pass != first_pass


def test_keep_rows_drops_steps_after_the_checkpoint(tmp_path):
    path = tmp_path / "rewards.csv"
    for step in (1, 2, 3):
        append_row(path, {"step": step, "reward_mean": step / 10, "kl_per_token": 0.5, "rules_mean": None})
    keep_rows(path, upto_step=2)
    rows = read_rows(path)
    assert [r["step"] for r in rows] == [1, 2] and rows[1]["reward_mean"] == pytest.approx(0.2)
    assert rows[0]["rules_mean"] is None
    assert next(csv.reader(path.open(encoding="utf-8"))) == CSV_COLUMNS


def test_score_responses_takes_breakdown_totals_and_checks_lengths():
    def breakdown(q, r, m):
        return [{"total": 0.5, "rule_score": 0.2, "teacher_score": None, "violation": True}] * len(r)

    rows, scores = score_responses(["q", "q"], ["a", "b"], [{}, {}], None, breakdown)
    assert scores.tolist() == [0.5, 0.5] and len(rows) == 2
    with pytest.raises(ValueError, match="1 scores for 2 responses"):
        score_responses(["q", "q"], ["a", "b"], [{}, {}], lambda q, r, m: [1.0], None)


def test_bad_prompt_row_is_named_before_any_model_loads(tmp_path):
    path, no_model = tmp_path / "p.jsonl", tmp_path / "no-model"
    write_jsonl(path, [{"id": "a", "question": "ok?"}, {"id": "b", "question": ""}])
    with pytest.raises(ValueError, match=r"p\.jsonl: row 2 \(id 'b'\)"):
        train_ppo(path, no_model, None, tmp_path / "rl", rl_cfg(), model_cfg(no_model), referral_reward)


def test_rollout_logprobs_match_what_generate_sampled_from(raw_base):
    state = build_state(raw_base, None, rl_cfg(max_new_tokens=8), model_cfg(raw_base), None)
    questions = ["头痛", QUESTIONS[3], QUESTIONS[5] * 3]  # different lengths: left padding is exercised
    rollout = sample_rollout(state, questions)
    chat = [build_chat_prompt(state.tokenizer, q) for q in questions]
    enc = state.tokenizer(
        chat, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
    )
    assert enc["attention_mask"].min() == 0 and torch.equal(
        enc["input_ids"], rollout.input_ids[:, : rollout.prompt_len]
    )
    # Replay generate() on the sampled tokens: its own per-step logits must give our logprobs.
    with torch.no_grad():
        out = state.policy.generate(
            **enc,
            max_new_tokens=rollout.input_ids.shape[1] - rollout.prompt_len,
            do_sample=False,
            return_dict_in_generate=True,
            output_logits=True,
            pad_token_id=state.tokenizer.pad_token_id,
        )
        ours, _, _ = forward_response(
            state.policy, None, rollout.input_ids, rollout.attention_mask, rollout.prompt_len, 1.0
        )
        greedy_mask = torch.cat(
            [enc["attention_mask"], torch.ones_like(out.sequences[:, rollout.prompt_len :])], 1
        )
        greedy, _, _ = forward_response(
            state.policy, None, out.sequences, greedy_mask, rollout.prompt_len, 1.0
        )
    theirs = torch.log_softmax(torch.stack(out.logits, 1).float(), -1)
    theirs = theirs.gather(-1, out.sequences[:, rollout.prompt_len :, None]).squeeze(-1)
    assert torch.allclose(greedy, theirs, atol=1e-4)
    assert ours.shape == rollout.mask.shape and bool((ours <= 0).all())


@pytest.mark.slow
def test_ppo_raises_the_reward_on_the_tiny_model(tuned_base, prompts, tmp_path):
    cfg = rl_cfg(steps=12, batch_size=16, mini_batch_size=8, learning_rate=2e-3)
    summary = train_ppo(
        prompts, tuned_base, None, tmp_path / "rl", cfg, model_cfg(tuned_base), referral_reward
    )
    rows = read_rows(Path(summary["rewards_csv"]))
    rewards = [r["reward_mean"] for r in rows]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    print(
        f"reward per step: {[round(r, 3) for r in rewards]}; first-3 mean {first:.3f}, last-3 mean {last:.3f}"
    )
    assert last - first >= 0.2, rewards
    assert [r["step"] for r in rows] == list(range(1, 13))
    # The fresh LoRA starts at the reference; KL is logged per token and per response.
    assert rows[0]["kl_per_token"] == 0.0 and max(r["kl_per_token"] for r in rows) > 0
    assert all(
        r["kl_per_response"] == pytest.approx(r["kl_per_token"] * r["response_len"], rel=1e-3, abs=1e-5)
        for r in rows
    )
    assert Path(summary["curves_png"]).read_bytes()[:4] == b"\x89PNG"
    events = list((tmp_path / "rl" / "checkpoints" / "runs" / "ppo").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100, "no TensorBoard events"


@pytest.mark.slow
def test_checkpoint_resume_continues_where_it_stopped(raw_base, prompts, tmp_path, caplog):
    straight = train_ppo(
        prompts,
        raw_base,
        None,
        tmp_path / "a",
        rl_cfg(steps=4, save_every=2, learning_rate=1e-3),
        model_cfg(raw_base),
        referral_reward,
        metadata={"teacher_enabled": False},
    )
    first = train_ppo(
        prompts,
        raw_base,
        None,
        tmp_path / "b",
        rl_cfg(steps=2, save_every=2, learning_rate=1e-3),
        model_cfg(raw_base),
        referral_reward,
    )
    csv_path = Path(first["rewards_csv"])
    append_row(
        csv_path, {"step": 3, "reward_mean": 99.0}
    )  # logged by a run that died before its next checkpoint
    second = train_ppo(
        prompts,
        raw_base,
        None,
        tmp_path / "b",
        rl_cfg(steps=4, save_every=2, learning_rate=1e-3),
        model_cfg(raw_base),
        referral_reward,
        metadata={"teacher_enabled": False},
    )
    assert (first["resumed_from_step"], second["resumed_from_step"]) == (0, 2)
    resumed, uninterrupted = read_rows(csv_path), read_rows(Path(straight["rewards_csv"]))
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    # Adapter, value head, optimizer, KL controller and RNG all come back: the curve is the uninterrupted one.
    keys = (
        "reward_mean",
        "kl_per_token",
        "kl_per_response",
        "kl_coef",
        "policy_loss",
        "value_loss",
        "entropy",
    )
    for key in keys:
        assert [r[key] for r in resumed] == pytest.approx(
            [r[key] for r in uninterrupted], rel=1e-4, abs=1e-6
        ), key
    assert "resumed from" in (tmp_path / "b" / "checkpoints" / "training.log").read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("step-*")) == ["step-2", "step-4"]
    # A changed setting still resumes (nothing left to train here) but says so.
    train_ppo(
        prompts,
        raw_base,
        None,
        tmp_path / "b",
        rl_cfg(steps=4, learning_rate=5e-4),
        model_cfg(raw_base),
        referral_reward,
    )
    assert "changed settings, applied from now on: learning_rate 0.001 -> 0.0005" in caplog.text
    assert len(read_rows(csv_path)) == 4


@pytest.mark.slow
def test_final_model_is_the_merged_policy_and_loads_plainly(raw_base, prompts, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    summary = train_ppo(
        prompts,
        raw_base,
        None,
        tmp_path / "rl",
        rl_cfg(steps=2, learning_rate=1e-2),
        model_cfg(raw_base),
        referral_reward,
        metadata={"teacher_enabled": False},
    )
    final = Path(summary["final_model"])
    merged = AutoModelForCausalLM.from_pretrained(final)
    policy = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(raw_base), tmp_path / "rl" / "checkpoints" / "step-2"
    )
    base = AutoModelForCausalLM.from_pretrained(raw_base)
    ids = load_tokenizer(final)(build_chat_prompt(load_tokenizer(final), QUESTIONS[0]), return_tensors="pt")[
        "input_ids"
    ]
    with torch.no_grad():
        got, want, before = merged(ids).logits, policy(ids).logits, base(ids).logits
    assert torch.allclose(got, want, atol=1e-4) and not torch.allclose(got, before, atol=1e-3)
    meta = json.loads((final / "metadata.json").read_text(encoding="utf-8"))
    assert (meta["algorithm"], meta["steps"], meta["teacher_enabled"]) == ("ppo", 2, False)
    assert meta["config"]["target_kl"] == 0.1 and not any(final.glob("adapter_*"))


@pytest.mark.slow
def test_reference_stays_the_sft_merged_model_while_the_policy_moves(raw_base, tmp_path):
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    sft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(raw_base),
        PeftLora(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    sft.save_pretrained(tmp_path / "sft")  # a non-trivial SFT adapter, so merging it matters
    cfg = rl_cfg(learning_rate=1e-2, batch_size=4)
    state = build_state(raw_base, tmp_path / "sft", cfg, model_cfg(raw_base), None)
    rows = [{"question": q} for q in QUESTIONS[:4]]
    for _ in range(2):
        ppo_step(state, rows, lambda q, r, m: [float(len(x) % 3) for x in r], None)
    rollout = sample_rollout(state, QUESTIONS[4:8])
    args = (rollout.input_ids, rollout.attention_mask, rollout.prompt_len, 1.0)
    with torch.no_grad():
        with state.policy.disable_adapter():
            ref, _, _ = forward_response(state.policy, None, *args)
        moved, _, _ = forward_response(state.policy, None, *args)
        sft_merged, _, _ = forward_response(
            load_policy(raw_base, model_cfg(raw_base), tmp_path / "sft"), None, *args
        )
        plain_base, _, _ = forward_response(AutoModelForCausalLM.from_pretrained(raw_base), None, *args)
    mask = rollout.mask.bool()
    assert torch.allclose(ref[mask], sft_merged[mask], atol=1e-5)
    assert (moved - ref)[mask].abs().max() > 1e-3  # training did move the policy
    assert (sft_merged - plain_base)[mask].abs().max() > 1e-3  # and the SFT adapter was really merged in


def test_resume_applies_a_changed_learning_rate_and_kl_target(raw_base, tmp_path, caplog):
    state = build_state(raw_base, None, rl_cfg(learning_rate=1e-3), model_cfg(raw_base), None)
    state.step = 2
    state.kl_ctl.value = 0.3
    save_checkpoint(state, tmp_path / "step-2")
    changed = rl_cfg(learning_rate=5e-4, target_kl=0.2)
    resumed = build_state(raw_base, None, changed, model_cfg(raw_base), tmp_path / "step-2")
    assert resumed.step == 2 and len(resumed.optimizer.state_dict()["param_groups"]) >= 1
    assert {g["lr"] for g in resumed.optimizer.param_groups} == {5e-4}  # not the checkpoint's 1e-3
    assert (resumed.kl_ctl.value, resumed.kl_ctl.target) == (0.3, 0.2)  # beta carried, new target
    assert "learning_rate 0.001 -> 0.0005" in caplog.text and "target_kl 0.1 -> 0.2" in caplog.text


def test_rollout_batch_size_generates_once_for_several_steps(raw_base, prompts, tmp_path):
    """rl.rollout_batch_size 8 at batch 4: one generate call feeds steps 1 and 2, the log keeps one row a
    step, and a rollout batch that is no multiple of the batch is refused."""
    from tasks.train import ppo

    calls: list[int] = []
    real = ppo.sample_rollout

    def counting(state, questions):  # noqa: ANN001 - the real sampler, counted
        calls.append(len(questions))
        return real(state, questions)

    cfg = rl_cfg(steps=3, batch_size=4, mini_batch_size=2, rollout_batch_size=8, max_new_tokens=8)
    ppo.sample_rollout = counting
    try:
        train_ppo(prompts, raw_base, None, tmp_path / "rl", cfg, model_cfg(raw_base), referral_reward)
    finally:
        ppo.sample_rollout = real
    assert calls == [8, 4]  # steps 1-2 from one call, step 3 (the last) alone
    rows = read_rows(tmp_path / "rl" / "checkpoints" / "rewards.csv")
    assert [r["step"] for r in rows] == [1, 2, 3]
    with pytest.raises(ValueError, match="must be a multiple of rl.batch_size"):
        rl_cfg(batch_size=4, rollout_batch_size=6)


def test_split_rollout_keeps_rows_together(raw_base):
    from tasks.train.ppo import score_rollout, split_rollout

    state = build_state(raw_base, None, rl_cfg(max_new_tokens=6), model_cfg(raw_base), None)
    rollout = sample_rollout(state, QUESTIONS[:4])
    score_rollout(state.policy, state.value_head, rollout, 1.0)
    a, b = split_rollout(rollout, 2)
    assert a.responses + b.responses == rollout.responses
    for key in ("input_ids", "attention_mask", "mask", "logprobs", "ref_logprobs", "values", "entropy"):
        assert torch.equal(torch.cat([getattr(a, key), getattr(b, key)]), getattr(rollout, key)), key


def test_rollout_compile_is_a_gpu_default_only():
    from tasks.train.ppo import rollout_cache_kwargs

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert rollout_cache_kwargs("auto", cpu) == {} and rollout_cache_kwargs("off", gpu) == {}
    on_gpu, on_cpu = rollout_cache_kwargs("auto", gpu), rollout_cache_kwargs("on", cpu)
    assert on_gpu["cache_implementation"] == on_cpu["cache_implementation"] == "static"
    assert not on_gpu["compile_config"]._compile_all_devices and on_cpu["compile_config"]._compile_all_devices


def test_static_cache_rollouts_pad_prompts_and_sample_like_the_dynamic_path(raw_base, monkeypatch):
    """The GPU path's generate options on a CPU, without compiling: a static KV cache, prompts padded to a
    multiple of 64 (one compiled shape per bucket); same seed, same sampled tokens as the dynamic cache."""
    from tasks.train import ppo

    state = build_state(raw_base, None, rl_cfg(max_new_tokens=8), model_cfg(raw_base), None)
    questions = ["头痛", QUESTIONS[3], QUESTIONS[5] * 3]
    torch.manual_seed(7)
    dynamic = sample_rollout(state, questions)
    monkeypatch.setattr(ppo, "rollout_cache_kwargs", lambda mode, dev: {"cache_implementation": "static"})
    torch.manual_seed(7)
    static = sample_rollout(state, questions)
    assert static.prompt_len % ppo.STATIC_PAD == 0 and static.prompt_len > dynamic.prompt_len
    assert static.responses == dynamic.responses
    assert torch.equal(static.mask, dynamic.mask)
