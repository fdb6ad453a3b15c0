"""Label any file of questions with the data flow's risk classifier (`medsafe label`).

Reads JSONL, JSON (an array of objects) or CSV with a question column, labels each question exactly as the
classify_risk stage labels a cleaned row (the question decides; `think` and `answer` columns, when present,
add only weak evidence), and writes JSONL: every input field plus lang, risk_level, safety_categories,
safety_concern and risk_evidence (the terms behind a high or critical label). Free of Prefect.

A bad input raises InputFileError naming the file, the line (CSV, JSONL) or record (JSON), and the fix.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

from tasks.core.errors import InputFileError
from tasks.core.io import JsonlLineError, iter_jsonl, write_jsonl
from tasks.core.records import LANGS, RISK_CATEGORIES, RISK_LEVELS
from tasks.core.text import detect_lang
from tasks.risk.classifier import RiskClassifier, risk_distribution
from tasks.risk.lexicon import SEVERITY_RANK
from tasks.risk.parallel_label import label_all

# Looked for in this order when no column is named: the pipeline's own field, the upstream schemas'
# (medical-o1, MedSafetyBench) and common prompt-set names.
QUESTION_COLUMNS = (
    "question",
    "Question",
    "harmful_medical_request",
    "prompt",
    "input",
    "instruction",
    "query",
)
CONTEXT_COLUMNS = (("think", "Complex_CoT"), ("answer", "Response"))
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}


def read_questions(path: Path, column: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """The file's records (each with its position in `_where`) and the question column used."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file; pass --input a JSONL, JSON or CSV file of questions")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputFileError(
            f"{path}: unknown file type {path.suffix or '(none)'!r}; use .jsonl, .json or .csv"
        )
    try:
        records = {"jsonl": _jsonl, "json": _json, "csv": _csv}[kind](path)
    except OSError as exc:
        raise InputFileError(
            f"{path}: cannot read it ({exc.strerror or exc}); check the path and permissions"
        ) from None
    if not records:
        raise InputFileError(f"{path}: no records found; the file must hold at least one question")
    first_fields = records[0][1]
    name = column or next((c for c in QUESTION_COLUMNS if c in first_fields), None)
    if name is None:
        raise InputFileError(
            f"{path}: {records[0][0]}: no question column (looked for {', '.join(QUESTION_COLUMNS)}); "
            "name it with --column"
        )
    rows = []
    for where, record in records:
        question = record.get(name)
        if not isinstance(question, str) or not question.strip():
            got = (
                "missing"
                if name not in record
                else "empty"
                if question in (None, "") or isinstance(question, str)
                else "not text"
            )
            raise InputFileError(
                f"{path}: {where}: column {name!r} is {got}; every record needs a question (fix or remove it)"
            )
        rows.append({**record, "_where": where})
    return rows, name


def _jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        return [(f"line {n}", row) for n, row in iter_jsonl(path, strict=True)]  # type: ignore[misc]
    except JsonlLineError as exc:
        raise InputFileError(
            f"{exc.path}: line {exc.line_no}: {exc.reason}; every line must be one JSON object"
        ) from None


def _json(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg}); fix the file") from None
    if not isinstance(data, list):
        raise InputFileError(f"{path}: expected a JSON array of objects, got a {type(data).__name__}")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise InputFileError(
                f"{path}: record {i}: expected an object with a question, got a {type(item).__name__}"
            )
    return [(f"record {i}", item) for i, item in enumerate(data)]


def _csv(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            out = []
            for row in reader:
                if None in row:  # more cells than the header names
                    raise InputFileError(
                        f"{path}: line {reader.line_num}: more cells than header columns; "
                        "quote cells that contain commas"
                    )
                out.append((f"line {reader.line_num}", {k: v for k, v in row.items() if k}))
            return out
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except csv.Error as exc:
        raise InputFileError(f"{path}: unreadable CSV ({exc}); fix the file") from None


def label_file(
    in_path: Path,
    out_path: Path,
    classifier: RiskClassifier | None = None,
    column: str | None = None,
    top_terms: int = 10,
) -> dict[str, Any]:
    """Label a question file into JSONL; returns the summary (distribution, per language, top evidence)."""
    classifier = classifier or RiskClassifier.from_yaml()
    rows, name = read_questions(in_path, column)
    work = []
    for row in rows:
        question = row[name]
        lang = row.get("lang") if row.get("lang") in LANGS else detect_lang(question)
        context = {k: str(row.get(k) or row.get(alt) or "") for k, alt in CONTEXT_COLUMNS}
        work.append({"id": row["_where"], "lang": lang, "question": question, **context})
    labels = label_all(work, classifier)
    out, by_lang, terms = [], Counter(), Counter()
    for row, item, label in zip(rows, work, labels, strict=True):
        strong = [e["term"] for e in label.evidence if SEVERITY_RANK[e["severity"]] >= SEVERITY_RANK["high"]]
        record = {k: v for k, v in row.items() if k != "_where"}
        record["lang"] = item["lang"]  # the language it was labelled in (given, or detected when not zh/en)
        record |= {
            "risk_level": label.risk_level,
            "safety_categories": label.safety_categories,
            "safety_concern": label.safety_concern,
            "risk_evidence": strong,
        }
        out.append(record)
        by_lang[(item["lang"], label.risk_level)] += 1
        terms.update(strong)
    write_jsonl(out_path, out)
    return {
        **risk_distribution(out),
        "input": str(in_path),
        "question_column": name,
        "by_lang": {
            lang: {lv: by_lang[(lang, lv)] for lv in RISK_LEVELS}
            for lang in LANGS
            if any(by_lang[(lang, lv)] for lv in RISK_LEVELS)
        },
        "top_evidence": dict(terms.most_common(top_terms)),
        "lexicon_version": classifier.lexicon.version,
        "output": str(out_path),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines: levels with shares, categories, languages, top evidence."""
    total = summary["total"]
    lines = [
        f"labelled {total} questions from {summary['input']} (column {summary['question_column']!r}, "
        f"lexicon {summary['lexicon_version']}) -> {summary['output']}",
        "",
        "risk level   count   share",
    ]
    for level in RISK_LEVELS:
        count = summary["counts"][level]
        lines.append(f"  {level:9s} {count:6d}  {count / total:6.1%}")
    high = summary["counts"]["critical"] + summary["counts"]["high"]
    lines.append(f"  {'high+crit':9s} {high:6d}  {high / total:6.1%}")
    cats = [(c, summary["categories"][c]) for c in RISK_CATEGORIES if summary["categories"][c]]
    lines += ["", "categories: " + (", ".join(f"{c} {n}" for c, n in cats) if cats else "none")]
    for lang, counts in summary["by_lang"].items():
        lines.append(f"{lang}: " + ", ".join(f"{lv} {n}" for lv, n in counts.items()))
    if summary["top_evidence"]:
        lines.append("top evidence: " + ", ".join(f"{t} ({n})" for t, n in summary["top_evidence"].items()))
    return "\n".join(lines)
