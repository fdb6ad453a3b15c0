"""Score a predictions file with the reward engine: the pure function behind `medsafe score`.

    medsafe score --predictions preds.jsonl --out scored.jsonl [--teacher|--no-teacher]

Reads predictions (id, question, response, optional risk_level, safety_categories) and writes one
JSON line per row with the rule score, the teacher's score (null when off), the total and the
evaluation flags. `terms` explains the rule score: each part (format, length, each violation, each
positive, substance, hollow safety words, refusal, judge injection) with its signed weight and its
evidence; the weights sum to `rule_score`. Imports neither torch nor Prefect, so it starts fast and
runs anywhere the rules do; a flow that wants it as a task wraps `score_predictions` where the flow lives.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.core.config import RewardConfig, TeacherConfig
from tasks.core.errors import InputFileError
from tasks.core.io import write_jsonl
from tasks.core.records import RISK_CATEGORIES, read_predictions
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
    "terms",
    "injection",
    "refusal",
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
    if not rows:  # every metric would be null: an error, not a silent success
        raise InputFileError(
            f"{predictions_path}: no predictions (the file is empty or holds only blank lines); "
            'write one JSON object per line, e.g. {"id": "a", "question": "...", "response": "..."}'
        )
    check_categories(rows, Path(predictions_path))
    rules = SafetyRules.from_yaml()
    teacher = Teacher.from_env(teacher_cfg, Path(cache_path), secret_lookup)
    try:
        scored = RewardEngine(rules, reward_cfg, teacher).score_batch(rows)
    finally:
        if teacher is not None:
            teacher.close()
    write_jsonl(out_path, ({k: s[k] for k in _OUT_FIELDS} for s in scored))
    summary = _summary(rows, scored, out_path, rules, teacher is not None)
    summary["teacher"] = teacher.describe() if teacher is not None else None  # endpoint, calls, masking
    return summary


def check_categories(rows: list[dict], path: Path) -> None:
    """Every safety category a row names must be one the rules know; else one message naming the row, the
    unknown names and the valid ones."""
    for i, row in enumerate(rows, 1):
        unknown = sorted(set(row.get("safety_categories") or ()) - set(RISK_CATEGORIES))
        if unknown:
            raise InputFileError(
                f"{path}: row {i} (id {row['id']!r}) has unknown safety_categories {unknown}; "
                f"valid ones are {', '.join(RISK_CATEGORIES)}: fix or drop them"
            )


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
        "injection_rate": round(sum(bool(s["injection"]) for s in scored) / n, 4) if n else None,
        "blanket_refusal_rate": round(sum(s["refusal"] == "blanket" for s in scored) / n, 4) if n else None,
        "reasoning_retention": rate("has_think"),
        "mean_rule_score": round(sum(s["rule_score"] for s in scored) / n, 4) if n else None,
        "mean_total": round(sum(s["total"] for s in scored) / n, 4) if n else None,
        "mean_teacher_score": round(sum(teacher_scores) / len(teacher_scores), 4) if teacher_scores else None,
    }


def explain(scored_path: Path, limit: int | None = None) -> list[str]:
    """Human-readable lines for a scored file: each row's rule score as the sum of its signed terms."""
    from tasks.core.io import read_jsonl

    lines = []
    for row in read_jsonl(Path(scored_path))[:limit]:
        lines.append(f"{row['id']}: rule_score {row['rule_score']:+.4g} = sum of")
        for t in row.get("terms") or []:
            evidence = f"  [{t['evidence']}]" if t.get("evidence") else ""
            lines.append(f"    {t['term']} {t['weight']:+.4g}{evidence}")
    return lines
