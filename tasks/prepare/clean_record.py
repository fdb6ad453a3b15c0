"""One raw record to one processed row, or the reason it cannot be one: the per-record half of cleanup.

CleanJob runs it over chunks of a manifest's records in this process and worker processes together
(tasks/workers.py), and signs each kept row for near-duplicate search on the way. Pure and free of
Prefect, so a worker starts in well under a second. Text normalisation comes from tasks/text_clean.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.config import DataConfig
from tasks.core.io import text_hash
from tasks.core.records import RISK_CATEGORIES, RISK_LEVELS
from tasks.core.text import detect_lang, split_think
from tasks.core.workers import ForwardChunks
from tasks.prepare.near_dup import minhash_signatures, near_dup_text
from tasks.prepare.raw_files import SCHEMA_BY_NAME, RawRecord, Schema, iter_raw_records
from tasks.prepare.text_clean import clean_block, clean_inline, undecodable

_OVERSIZE = 8  # a field over 8x its limit is too long whatever normalisation removes; skip the work

_THINK_TAG = re.compile(r"</?think>")


def _field(row: dict[str, Any], column: str | None, name: str, required: bool) -> tuple[str, str]:
    """(value, '') or ('', reason) for one mapped column; None counts as empty."""
    if column is None or column not in row:
        return ("", f"missing_field:{name}") if required else ("", "")
    value = row[column]
    if value is None:
        return "", ""
    return (value, "") if isinstance(value, str) else ("", f"wrong_type:{name}")


def map_fields(row: dict[str, Any], schema: Schema) -> tuple[dict[str, str], str, str]:
    """The raw question/think/answer of a row, or a reason and detail when a field is missing or not text."""
    fields: dict[str, str] = {}
    for name, column, required in (
        ("question", schema.question, True),
        ("answer", schema.answer, not schema.red_team),
        ("think", schema.think, False),
    ):
        value, reason = _field(row, column, name, required)
        if reason.startswith("missing"):
            return fields, reason, f"the row has no {column!r} column ({name})"
        if reason:
            return (
                fields,
                reason,
                f"column {column!r} ({name}) holds a {type(row[column]).__name__}, not text",
            )
        fields[name] = value
    if any(map(undecodable, fields.values())):
        return fields, "invalid_utf8", "the row holds bytes that are not valid UTF-8"
    return fields, "", ""


def _bounds(q: str, think: str, answer: str, cfg: DataConfig, red_team: bool) -> tuple[str, str]:
    """The first length limit the cleaned texts break, as (reason, detail); ('', '') when they keep them
    all."""
    for name, n, low, high in (
        ("question", len(q), cfg.min_question_chars, cfg.max_question_chars),
        ("answer", len(answer), 0 if red_team else cfg.min_answer_chars, cfg.max_answer_chars),
        ("think", len(think), 0, cfg.max_think_chars),
    ):
        if n < low:
            return f"too_short:{name}", f"{name} has {n} characters, minimum {low}"
        if n > high:
            return f"too_long:{name}", f"{name} has {n} characters, maximum {high}"
    return "", ""


def normalise(fields: dict[str, str], cfg: DataConfig, red_team: bool) -> tuple[dict[str, str], str, str]:
    """Clean the three texts, move an embedded <think> block out of the answer, and check emptiness and
    length."""
    limits = {
        "question": cfg.max_question_chars,
        "answer": cfg.max_answer_chars + cfg.max_think_chars,
        "think": cfg.max_think_chars,
    }
    for name, value in fields.items():
        if len(value) > _OVERSIZE * limits[name]:
            return (
                fields,
                f"too_long:{name}",
                f"{name} has {len(value)} characters, far above the maximum {limits[name]}",
            )
    q, think, answer = (
        clean_inline(fields["question"]),
        clean_block(fields["think"]),
        clean_block(fields["answer"]),
    )
    for name, raw, cleaned in (("question", fields["question"], q), ("answer", fields["answer"], answer)):
        if not cleaned and raw.strip():
            return fields, "control_bytes_only", f"{name} holds only control or invisible characters"
    if not q:
        return fields, "empty_question", "question is empty"
    if "think>" in answer:
        parts = split_think(answer)
        if parts.unclosed:
            return fields, "unclosed_think", "answer opens <think> but never closes it"
        embedded, answer = parts.think, parts.answer
        think = embedded if not think else think if embedded in ("", think) else f"{think}\n\n{embedded}"
    think = _THINK_TAG.sub("", think).strip() if "think>" in think else think
    if not answer and not red_team:
        return (
            fields,
            "empty_answer",
            "answer is empty"
            + (" once its <think> block is removed" if "think>" in fields["answer"] else ""),
        )
    reason, detail = _bounds(q, think, answer, cfg, red_team)
    return {"question": q, "think": think, "answer": answer}, reason, detail


def to_processed(rec: RawRecord, schema: Schema, texts: dict[str, str]) -> dict[str, Any]:
    """The processed row (risk fields neutral until classify_risk; split and group filled later).

    `source` names the raw file (manifest entry); red-team rows carry the schema name (medsafetybench),
    which is how the split stage recognises them.
    """
    row: dict[str, Any] = {
        "id": text_hash(texts["question"], texts["answer"]),
        "source": schema.name if schema.red_team else rec.source,
        "lang": detect_lang(texts["question"], texts["answer"]),
        **texts,
        "risk_level": "low",
        "safety_categories": [],
        "safety_concern": None,
        "split": "",
        "group": "",
    }
    if schema.name == "processed":
        raw = rec.row or {}
        if isinstance(raw.get("source"), str) and raw["source"].strip():
            row["source"] = raw["source"].strip()
        cats = raw.get("safety_categories")
        if (
            raw.get("risk_level") in RISK_LEVELS
            and isinstance(cats, list)
            and set(cats) <= set(RISK_CATEGORIES)
        ):
            concern = raw.get("safety_concern")
            row |= {
                "risk_level": raw["risk_level"],
                "safety_categories": list(cats),
                "safety_concern": concern if isinstance(concern, str) else None,
                "labelled": True,
            }
    return row


def clean_record(rec: RawRecord, cfg: DataConfig) -> tuple[dict[str, Any] | None, str, str]:
    """(processed row, '', '') for a usable record, else (None, reason, detail)."""
    if rec.error:
        return (
            None,
            rec.error,
            {
                "invalid_json": "line is not valid JSON",
                "not_an_object": "record is JSON but not an object",
                "wrong_field_count": "CSV record has a different number of fields than the header",
            }.get(rec.error, rec.error),
        )
    schema = SCHEMA_BY_NAME[rec.schema]
    fields, reason, detail = map_fields(rec.row or {}, schema)
    if not reason:
        fields, reason, detail = normalise(fields, cfg, schema.red_team)
    return (None, reason, detail) if reason else (to_processed(rec, schema, fields), "", "")


Outcome = tuple[dict[str, Any] | None, str, str]  # what clean_record returns


@dataclass
class CleanJob:
    """Clean chunk i of the records and MinHash-sign the rows it keeps; a worker's copy reads the records
    from the manifest itself (None: the records are not from one, and no worker may help)."""

    manifest: Path | None
    max_rows_per_source: int | None
    cfg: DataConfig
    total: int
    chunk_rows: int
    records: list[RawRecord] | None = None
    stream: ForwardChunks[RawRecord] | None = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:  # what a worker receives: the recipe, not the records
        return {**self.__dict__, "records": None, "stream": None}

    def open(self) -> None:
        """A worker's copy reads the manifest's records as its chunks come, front to back."""
        if self.manifest is None:
            raise ValueError("records that come from no manifest cannot be read by a worker")
        records = iter_raw_records(self.manifest, self.max_rows_per_source)
        self.stream = ForwardChunks(records, self.total, self.chunk_rows, f"the sources of {self.manifest}")

    def run(self, chunk: int) -> tuple[list[Outcome], np.ndarray]:
        if self.records is None:
            records = self.stream.chunk(chunk)  # type: ignore[union-attr]
        else:
            records = self.records[chunk * self.chunk_rows : (chunk + 1) * self.chunk_rows]
        outcomes = [clean_record(rec, self.cfg) for rec in records]
        return outcomes, minhash_signatures([near_dup_text(row) for row, _, _ in outcomes if row is not None])
