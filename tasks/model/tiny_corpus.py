"""The tiny base's corpus: the text of the shipped samples (tokenizer training) and their conversations
(warm-up), read from whatever upstream schema each sample file has.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.core.io import iter_jsonl
from tasks.core.workdir import ASSETS

log = logging.getLogger(__name__)


# Field names of the shipped sample schemas (data/samples/README.md, data/red_team/); first match wins.
QUESTION_KEYS = ("Question", "question", "harmful_medical_request")


THINK_KEYS = ("Complex_CoT", "think")


ANSWER_KEYS = ("Response", "answer", "safe_response", "reference_answer")


Conversation = tuple[str, str, str]  # (question, think, answer)


def sample_texts(assets_dir: Path = ASSETS.root) -> list[str]:
    """Every string in the shipped samples and red-team prompts (any text under assets_dir as a fallback)."""
    files = sorted(p for p in (assets_dir / "samples").glob("*") if p.is_file())
    files += sorted((assets_dir / "red_team").glob("*.jsonl"))
    if not files:
        files = sorted(
            p for p in assets_dir.rglob("*") if p.suffix in {".jsonl", ".json", ".yaml", ".txt", ".md"}
        )
    texts: list[str] = []
    for path in files:
        if path.suffix == ".jsonl":
            for _, obj in iter_jsonl(path, strict=False):
                if isinstance(obj, dict):
                    texts.extend(_strings(obj))
        elif path.suffix == ".json":
            texts.extend(_strings(_load_json(path)))
        else:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return texts


def sample_conversations(assets_dir: Path = ASSETS.root) -> list[Conversation]:
    """(question, think, answer) of every shipped sample record that has a question, a think and an answer.

    The red-team set is left out: it is the evaluation set, and a base that has seen its reference answers
    would flatter every tiny-profile metric. Records without reasoning (the MedSafetyBench refusals) are
    left out too: greedy decoding copies the one shared token of an empty think, so a few of them teach
    the model to skip thinking altogether.
    """
    files = sorted(p for p in (assets_dir / "samples").glob("*") if p.suffix in {".jsonl", ".json", ".csv"})
    conversations = []
    for path in files:
        for record in _records(path):
            question, think, answer = (
                _first_text(record, keys) for keys in (QUESTION_KEYS, THINK_KEYS, ANSWER_KEYS)
            )
            if (
                "</think>" in answer
            ):  # red-team reference answers (and one sample) carry their reasoning inline
                inline, _, answer = answer.partition("</think>")
                think = "\n\n".join(t for t in (think.strip(), inline.replace("<think>", "").strip()) if t)
            if question.strip() and think.strip() and answer.strip():
                conversations.append((question.strip(), think.strip(), answer.strip()))
    return conversations


def _records(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        rows: Any = [obj for _, obj in iter_jsonl(path, strict=False)]
    elif path.suffix == ".json":
        rows = _load_json(path)
        rows = rows if isinstance(rows, list) else [rows]
    else:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    return [row for row in rows if isinstance(row, dict)]


def _first_text(record: dict[str, Any], keys: tuple[str, ...]) -> str:
    return next((record[k] for k in keys if isinstance(record.get(k), str) and record[k].strip()), "")


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        log.warning("%s is not valid JSON; left out of the tiny tokenizer's corpus", path)
        return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
