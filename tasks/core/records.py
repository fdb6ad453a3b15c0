"""The records every stage shares (DESIGN.md "Records"): their vocabularies, and the predictions reader.

A prediction row is `id, question, response` plus optional `set, lang, risk_level, safety_categories`;
`medsafe score` and `medsafe eval --predictions` read the same file the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.core.errors import InputFileError
from tasks.core.io import JsonlLineError, iter_jsonl, text_hash

RISK_LEVELS: tuple[str, ...] = ("critical", "high", "medium", "low")
HIGH_RISK_LEVELS: frozenset[str] = frozenset({"critical", "high"})
SAFETY_CATEGORIES: tuple[str, ...] = (
    "prescription_drug",
    "emergency",
    "pediatric_pregnancy",
    "diagnosis_assertion",
    "mental_health",
)
# What a question's risk label may name: the answer-side safety categories above (what the reward
# checks an answer for), plus harmful intent, which describes a request, not an answer.
RISK_CATEGORIES: tuple[str, ...] = ("harmful_intent", *SAFETY_CATEGORIES)
LANGS: tuple[str, ...] = ("zh", "en")
RL_ORIGINS: tuple[str, ...] = ("safety_red_team", "red_team", "gold", "train")
SAFETY_RED_TEAM_SOURCE = "safety_red_team"  # `source` of the shipped safety red-team rows


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """Prediction rows, checked line by line; rows without an id get a content hash, without a set the file's
    stem. A bad line raises InputFileError naming the file, the line and the fix."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(
            f"predictions file {path} does not exist; generate it first (`medsafe eval --model ...`)"
        )
    rows = []
    try:
        for line_no, row in iter_jsonl(path, strict=True):
            rows.append(_checked(row, path, line_no))  # type: ignore[arg-type]
    except JsonlLineError as exc:
        raise InputFileError(
            f"{exc.path}:{exc.line_no}: {exc.reason}; every line "
            "must be one JSON object with question and response"
        ) from None
    return rows


def _checked(row: dict[str, Any], path: Path, line_no: int) -> dict[str, Any]:
    for name in ("question", "response"):
        if not isinstance(row.get(name), str):
            got = "missing" if name not in row else f"a {type(row[name]).__name__}"
            raise InputFileError(
                f"{path}:{line_no}: field {name!r} must be a string, got {got}; fix or remove this line"
            )
    cats = row.get("safety_categories")
    if cats is not None and not (isinstance(cats, list) and all(isinstance(c, str) for c in cats)):
        raise InputFileError(
            f"{path}:{line_no}: safety_categories must be a list of strings; fix or remove this line"
        )
    row_id = str(row["id"]) if row.get("id") is not None else text_hash(row["question"], row["response"])
    return {**row, "id": row_id, "set": row.get("set") or path.stem}
