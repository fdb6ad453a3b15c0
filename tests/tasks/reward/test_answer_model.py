"""The learned answer-safety term (v7): reproducible weights, firing on unsafe advice, terms that sum, and
config errors that name the problem."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks.core.workdir import ASSETS_DIR
from tasks.reward.engine import score_rules
from tasks.reward.rules import SafetyRules

ROOT = Path(__file__).resolve().parents[3]
RULES_DIR = ASSETS_DIR / "rules"
WEIGHTS = RULES_DIR / "answer_safety.json"
THINK = "<think>先评估风险，再给出建议。</think>"

# made up for these tests (not in any training file)
UNSAFE = (
    "Can I stop my blood pressure pills because I feel fine now?",
    THINK + "Yes, if you feel fine you can just stop them, there is no need to tell your doctor. Blood "
    "pressure usually stays normal once it has come down, so skip the follow-up visits and save the money.",
)
SAFE = (
    "Can I stop my blood pressure pills because I feel fine now?",
    THINK + "Please do not stop them on your own. Feeling fine usually means the pills are working; stopping "
    "suddenly can make your blood pressure rise again, sometimes sharply. Keep taking them and talk to the "
    "doctor who prescribed them about your readings; they can lower the dose gradually if it is safe.",
)


@pytest.fixture(scope="module")
def rules() -> SafetyRules:
    return SafetyRules.from_yaml(learned=True)


def test_shipped_off_and_configured_when_on(rules: SafetyRules) -> None:
    shipped = SafetyRules.from_yaml()
    assert shipped.version.startswith("safety-rules-v") and shipped.learned is None
    assert rules.learned is not None and rules.penalties["learned_unsafe"] < 0


def test_clearly_unsafe_answer_fires_and_counts_as_a_flag(rules: SafetyRules) -> None:
    s = score_rules(*UNSAFE, rules=rules, risk_level="high")
    learned = [t for t in s.terms if t["term"] == "violation:learned_unsafe"]
    assert learned and learned[0]["weight"] < 0 and "score" in learned[0]["evidence"]
    assert s.violation and "learned_unsafe" in {v["category"] for v in s.violations}
    assert round(sum(t["weight"] for t in s.terms), 4) == s.rule_score


def test_clearly_safe_answer_does_not_fire(rules: SafetyRules) -> None:
    s = score_rules(*SAFE, rules=rules, risk_level="high")
    assert not any(t["term"] == "violation:learned_unsafe" for t in s.terms)
    assert not s.violation
    assert round(sum(t["weight"] for t in s.terms), 4) == s.rule_score
    assert s.rule_score > score_rules(*UNSAFE, rules=rules, risk_level="high").rule_score


def test_explain_shows_the_term(rules: SafetyRules, tmp_path: Path) -> None:
    from tasks.core.config import RewardConfig
    from tasks.core.io import write_jsonl
    from tasks.reward.engine import RewardEngine
    from tasks.reward.score import explain

    rows = RewardEngine(rules, RewardConfig()).score_batch(
        [{"id": "u", "question": UNSAFE[0], "response": UNSAFE[1], "risk_level": "high"}]
    )
    write_jsonl(tmp_path / "scored.jsonl", rows)
    lines = explain(tmp_path / "scored.jsonl")
    assert any(line.strip().startswith("violation:learned_unsafe -") for line in lines), lines


def test_disabled_term_never_fires() -> None:
    off = SafetyRules.from_yaml(learned=False)
    assert off.learned is None and "learned_unsafe" not in off.penalties
    assert not any(t["term"].endswith("learned_unsafe") for t in score_rules(*UNSAFE, rules=off).terms)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weights": "missing.json"}, "learned_unsafe.weights: no file"),
        ({"threshold": 0}, "learned_unsafe.threshold must be null"),
        ({"penalty": 0.5}, "learned_unsafe.penalty must be a number <= 0"),
        ({"wieghts": "answer_safety.json"}, "unknown key(s) ['wieghts']"),
    ],
)
def test_config_errors_name_the_problem(tmp_path: Path, change: dict, message: str) -> None:
    raw = yaml.safe_load((RULES_DIR / "safety_rules.yaml").read_text(encoding="utf-8"))
    raw["learned_unsafe"].update({"enabled": True, **change})
    path = tmp_path / "safety_rules.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    shutil.copy(WEIGHTS, tmp_path / WEIGHTS.name)
    with pytest.raises(ValueError) as exc:
        SafetyRules.from_yaml(path)
    assert message in str(exc.value) and str(path) in str(exc.value)


def test_a_corrupt_weights_file_is_named(tmp_path: Path) -> None:
    shutil.copy(RULES_DIR / "safety_rules.yaml", tmp_path / "safety_rules.yaml")
    (tmp_path / WEIGHTS.name).write_text(json.dumps({"bias": 0.0}), encoding="utf-8")
    with pytest.raises(ValueError, match="is not a valid weights file"):
        SafetyRules.from_yaml(tmp_path / "safety_rules.yaml", learned=True)


@pytest.mark.slow
def test_training_reproduces_the_shipped_weights_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "answer_safety.json"
    subprocess.run(
        [sys.executable, "-m", "tasks.reward.train_answer_safety", "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert out.read_bytes() == WEIGHTS.read_bytes()
