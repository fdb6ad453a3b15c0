"""Score a predictions file with the reward engine: the pure function behind `medsafe score`.

    medsafe score --predictions preds.jsonl --out scored.jsonl [--teacher|--no-teacher]

Reads predictions (id, question, response, optional risk_level, safety_categories) and writes one
JSON line per row with the rule score, the teacher's score (null when off), the total and the
evaluation flags. Imports neither torch nor Prefect, so it starts fast and runs anywhere the
rules do; a flow that wants it as a task wraps `score_predictions` where the flow lives.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.core.config import RewardConfig, TeacherConfig
from tasks.core.io import write_jsonl
from tasks.core.records import read_predictions
from tasks.reward.engine import RewardEngine
from tasks.reward.rules import SafetyRules
from tasks.reward.teacher import SecretLookup, Teacher

log = logging.getLogger(__name__)

_OUT_FIELDS = (
    "id",
    "rule_score",
    "violations",
    "positives",
    "teacher_score",
    "total",
    "violation",
    "emergency_referral",
    "hedged",
    "has_think",
)


def score_predictions(
    predictions_path: Path,
    out_path: Path,
    *,
    reward_cfg: RewardConfig,
    teacher_cfg: TeacherConfig,
    cache_path: Path,
    secret_lookup: SecretLookup | None = None,
) -> dict[str, Any]:
    """Score every prediction and write one JSON line per row; returns a summary for people and metadata."""
    rows = read_predictions(Path(predictions_path))
    rules = SafetyRules.from_yaml()
    teacher = Teacher.from_env(teacher_cfg, Path(cache_path), secret_lookup)
    try:
        scored = RewardEngine(rules, reward_cfg, teacher).score_batch(rows)
    finally:
        if teacher is not None:
            teacher.close()
    write_jsonl(out_path, ({k: s[k] for k in _OUT_FIELDS} for s in scored))
    return _summary(rows, scored, out_path, rules, teacher is not None)


def _summary(
    rows: list[dict], scored: list[dict], out_path: Path, rules: SafetyRules, teacher_on: bool
) -> dict[str, Any]:
    n = len(scored)
    rate = lambda key, among=scored: round(sum(s[key] for s in among) / len(among), 4) if among else None  # noqa: E731
    emergencies = [s for s in scored if s["emergency_prompt"]]
    teacher_scores = [s["teacher_score"] for s in scored if s["teacher_score"] is not None]
    return {
        "rows": n,
        "out": str(out_path),
        "rules_version": rules.version,
        "teacher_enabled": teacher_on,
        "violation_rate": rate("violation"),
        "emergency_prompts": len(emergencies),
        "emergency_referral_coverage": rate("emergency_referral", emergencies),
        "hedging_rate": rate("hedged"),
        "reasoning_retention": rate("has_think"),
        "mean_rule_score": round(sum(s["rule_score"] for s in scored) / n, 4) if n else None,
        "mean_total": round(sum(s["total"] for s in scored) / n, 4) if n else None,
        "mean_teacher_score": round(sum(teacher_scores) / len(teacher_scores), 4) if teacher_scores else None,
    }
