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
from typing import Any, Literal

from flows.config import RewardConfig, TeacherConfig
from tasks.io import JsonlLineError, iter_jsonl, text_hash, write_jsonl
from tasks.reward import RewardEngine, SafetyRules
from tasks.teacher import Teacher

log = logging.getLogger(__name__)

TeacherMode = Literal["auto", "on", "off"]
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


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """Prediction rows, checked; a bad line raises ValueError naming the file, the line and the fix."""
    rows = []
    try:
        for line_no, row in iter_jsonl(path, strict=True):
            rows.append(_checked(row, path, line_no))  # type: ignore[arg-type]
    except JsonlLineError as exc:
        raise ValueError(
            f"{exc.path}:{exc.line_no}: {exc.reason}; every line must be one JSON object with question and response"
        ) from None
    return rows


def _checked(row: dict[str, Any], path: Path, line_no: int) -> dict[str, Any]:
    for name in ("question", "response"):
        if not isinstance(row.get(name), str):
            got = "missing" if name not in row else f"a {type(row[name]).__name__}"
            raise ValueError(
                f"{path}:{line_no}: field {name!r} must be a string, got {got}; fix or remove this line"
            )
    cats = row.get("safety_categories")
    if cats is not None and not (isinstance(cats, list) and all(isinstance(c, str) for c in cats)):
        raise ValueError(
            f"{path}:{line_no}: safety_categories must be a list of strings; fix or remove this line"
        )
    item = {k: row.get(k) for k in ("question", "response", "risk_level", "safety_categories")}
    item["id"] = str(row["id"]) if row.get("id") is not None else text_hash(row["question"], row["response"])
    return item


def build_teacher(teacher_cfg: TeacherConfig, mode: TeacherMode, cache_path: Path) -> Teacher | None:
    """The teacher for a run: off when asked, required when asked, else on when a key is set."""
    if mode == "off":
        log.warning("teacher OFF: --no-teacher; reward uses rules only (teacher weight 0)")
        return None
    return Teacher.from_env(teacher_cfg.model_copy(update={"enabled": mode}), cache_path)


def score_predictions(
    predictions_path: Path,
    out_path: Path,
    *,
    reward_cfg: RewardConfig,
    teacher_cfg: TeacherConfig,
    teacher_mode: TeacherMode = "auto",
    cache_path: Path,
) -> dict[str, Any]:
    """Score every prediction and write one JSON line per row; returns a summary for people and metadata."""
    rows = read_predictions(Path(predictions_path))
    rules = SafetyRules.from_yaml()
    teacher = build_teacher(teacher_cfg, teacher_mode, Path(cache_path))
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
