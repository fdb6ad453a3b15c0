from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.core.config import LoraConfig, ModelConfig, RewardConfig, RLConfig, TeacherConfig
from tasks.core.io import write_jsonl
from tasks.core.workdir import ASSETS, Workdir
from tasks.model.tiny import build_tiny_base
from tasks.reward.engine import RewardEngine
from tasks.reward.rules import SafetyRules
from tasks.reward.teacher import teacher_enabled
from tasks.train.rl_io import read_rows

QUESTIONS = [
    "胸痛三小时怎么办？",
    "Can I take antibiotics for a cold?",
    "孩子发烧能吃阿司匹林吗？",
    "I feel hopeless.",
]
SAFE = "<think>\n胸痛可能是心梗。\n</think>\n\n请立即拨打120或去急诊就医。"
UNSAFE = "Sure, just take amoxicillin you have left at home, no need to see a doctor."

SAFETY_RULES = ASSETS.safety_rules


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


def test_teacher_enabled_follows_the_switch_and_the_key(monkeypatch):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert (
        teacher_enabled(TeacherConfig(enabled="on")) is True
    )  # required: Teacher.from_env fails loudly later
    assert teacher_enabled(TeacherConfig(enabled="auto")) is False
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    assert teacher_enabled(TeacherConfig(enabled="auto")) is True
    assert teacher_enabled(TeacherConfig(enabled="off")) is False


def test_engine_breakdown_fn_scores_with_the_engine_and_keeps_row_metadata():
    engine = RewardEngine(SafetyRules.from_yaml(SAFETY_RULES), RewardConfig(), None)
    metas = [
        {"id": "a", "question": "stale", "risk_level": "high", "safety_categories": ["emergency"]},
        {"id": "b", "risk_level": "medium", "safety_categories": ["prescription_drug"]},
    ]
    rows = engine.breakdown_fn()(QUESTIONS[:2], [SAFE, UNSAFE], metas)
    assert [r["id"] for r in rows] == ["a", "b"]
    assert [r["total"] for r in rows] == engine.as_reward_fn()(QUESTIONS[:2], [SAFE, UNSAFE], metas)
    assert (rows[0]["violation"], rows[1]["violation"]) == (False, True)
    assert rows[0]["emergency_referral"] and rows[0]["teacher_score"] is None
    with pytest.raises(ValueError):
        engine.breakdown_fn()(QUESTIONS[:2], [SAFE], metas)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    return build_tiny_base(
        tmp_path_factory.mktemp("base") / "tiny", texts=[q + SAFE + UNSAFE for q in QUESTIONS] * 5
    )


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "training_prompts.jsonl"
    write_jsonl(
        path,
        [
            {
                "id": f"p{i}",
                "question": q,
                "risk_level": "high",
                "safety_categories": [],
                "safety_concern": None,
                "origin": "train",
                "copy": 1,
            }
            for i, q in enumerate(QUESTIONS)
        ],
    )
    return path


def run_rl_in_a_flow(prompts: Path, base: Path, rl_cfg: RLConfig, teacher: TeacherConfig, root: Path) -> dict:
    from prefect import flow

    from tasks.train.rl import rl_task

    model_cfg = ModelConfig(base=str(base), tiny=True, dtype="float32", max_seq_len=128)

    @flow
    def rl_only() -> dict:
        return rl_task(
            prompts,
            base,
            None,
            SAFETY_RULES,
            rl_cfg,
            model_cfg,
            RewardConfig(),
            teacher,
            teacher_enabled(teacher),
            Workdir.at(root),
        )

    return rl_only()


def assert_rl_files(summary: dict, root: Path, algorithm: str, steps: int) -> str:
    """The files every RL run leaves in the workdir; returns training.log's text."""
    wd = Workdir.at(root)
    assert (summary["algorithm"], summary["teacher_enabled"], summary["steps"]) == (algorithm, False, steps)
    assert Path(summary["final_model"]) == wd.rl_final
    rows = read_rows(wd.rl_checkpoints / "rewards.csv")
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    # Scored through breakdown_fn: the rule component is logged, the teacher's is blank while it is off.
    assert all(r["rules_mean"] is not None and r["teacher_mean"] is None for r in rows)
    meta = json.loads((wd.rl_final / "metadata.json").read_text(encoding="utf-8"))
    assert (meta["algorithm"], meta["teacher_enabled"], meta["steps"]) == (algorithm, False, steps)
    assert (wd.rl_final / "config.json").is_file() and not (wd.rl_final / "adapter_config.json").exists()
    card = (wd.rl_final / "README.md").read_text(encoding="utf-8")  # the model card travels with the model
    assert card.startswith("---\nbase_model:") and "Not a medical device" in card and "## Evaluation" in card
    return (wd.rl_checkpoints / "training.log").read_text(encoding="utf-8")


@pytest.mark.slow
def test_rl_task_runs_ppo_into_the_workdir(tiny_base, prompts, tmp_path, prefect_server):
    cfg = RLConfig(
        algorithm="ppo",
        steps=2,
        batch_size=2,
        mini_batch_size=2,
        ppo_epochs=2,
        max_new_tokens=8,
        save_every=100,
        lora=LoraConfig(r=4, alpha=8, dropout=0.0),
        seed=0,
    )
    summary = run_rl_in_a_flow(prompts, tiny_base, cfg, TeacherConfig(enabled="off"), tmp_path / "wd")
    log_text = assert_rl_files(summary, tmp_path / "wd", "ppo", 2)
    assert "PPO on 4 prompts" in log_text and "step 2 reward" in log_text
    assert summary["resumed_from_step"] == 0 and Path(summary["curves_png"]).is_file()
    assert (Workdir.at(tmp_path / "wd").rl_checkpoints / "step-2" / "trainer_state.json").is_file()


@pytest.mark.slow
def test_rl_task_runs_grpo_into_the_workdir(tiny_base, prompts, tmp_path, prefect_server):
    cfg = RLConfig(
        algorithm="grpo",
        steps=1,
        batch_size=2,
        grpo_num_generations=2,
        max_new_tokens=8,
        save_every=100,
        learning_rate=1e-3,
        lora=LoraConfig(r=4, alpha=8, dropout=0.0),
        seed=0,
    )
    summary = run_rl_in_a_flow(prompts, tiny_base, cfg, TeacherConfig(enabled="auto"), tmp_path / "wd")
    log_text = assert_rl_files(summary, tmp_path / "wd", "grpo", 1)
    events = [json.loads(line) for line in log_text.splitlines()]
    assert events[0]["event"] == "start" and [e["step"] for e in events[1:]] == [1]


@pytest.mark.slow
def test_rl_task_names_a_bad_prompt_row_before_training(tiny_base, tmp_path, prefect_server):
    from tasks.core.errors import StageFailed

    bad = tmp_path / "training_prompts.jsonl"
    write_jsonl(bad, [{"id": "p0", "question": QUESTIONS[0]}, {"id": "p1", "question": "  "}])
    with pytest.raises(StageFailed, match=r"stage 'rl' failed: .*training_prompts\.jsonl: row 2 \(id 'p1'\)"):
        run_rl_in_a_flow(
            bad, tiny_base, RLConfig(steps=1, max_new_tokens=8), TeacherConfig(enabled="off"), tmp_path
        )
    assert not (Workdir.at(tmp_path).rl_final).exists()
