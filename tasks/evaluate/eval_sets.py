"""The prompt sets an evaluation answers, all held out from training: the held-out red team (red_team_eval),
the test split minus the gold set, the shipped over-refusal set, and any benchmark (a MedSafetyBench CSV
with `harmful_medical_request` [, `safe_response`], or a JSONL prompt file). Every row carries its set name;
`check_held_out` refuses a prompt whose id is an RL training prompt.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.errors import MedsafeError
from tasks.core.io import iter_jsonl, text_hash
from tasks.core.text import detect_lang
from tasks.core.workdir import ASSETS, Workdir

RED_TEAM_EVAL, TEST, OVER_REFUSAL = "red_team_eval", "test", "over_refusal"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
MSB_QUESTION, MSB_ANSWER = "harmful_medical_request", "safe_response"


@dataclass(frozen=True)
class EvalSet:
    """One prompt set: its name (the `set` of its rows), its file, and a table whose ids are left out."""

    name: str
    path: Path
    exclude: Path | None = None

    @property
    def uncapped(self) -> bool:
        """Red-team and over-refusal prompts are the point of the exercise: never capped."""
        return "red_team" in self.name or OVER_REFUSAL in self.name


def parse_named(spec: str, what: str) -> tuple[str, Path]:
    """'NAME=PATH' -> (NAME, PATH); a bare PATH is named after its file (stem) or folder."""
    name, sep, path = spec.partition("=")
    if not sep:
        name, path = Path(spec).stem or Path(spec).name, spec
    if not _NAME.match(name) or not path:
        raise MedsafeError(
            f"{what} {spec!r}: write NAME=PATH with NAME made of letters, digits, '.', '_' or '-' "
            f"(e.g. {what.lstrip('-')}=path)"
        )
    return name, Path(path)


def default_sets(wd: Workdir, benchmarks: dict[str, Path] | None = None) -> tuple[list[EvalSet], list[str]]:
    """The held-out sets of a workdir plus the benchmarks, and notes on what is missing (red_team_eval
    before the data flow holds it out)."""
    sets, notes = [], []
    red = wd.split(RED_TEAM_EVAL)
    if red.is_file():
        sets.append(EvalSet(RED_TEAM_EVAL, red))
    else:
        notes.append(
            f"no held-out red-team set at {red} (re-run `medsafe data`); red-team prompts not evaluated"
        )
    sets.append(EvalSet(TEST, wd.split(TEST), exclude=wd.split("gold_set")))
    sets.append(EvalSet(OVER_REFUSAL, ASSETS.over_refusal))
    sets += [EvalSet(name, Path(path)) for name, path in (benchmarks or {}).items()]
    return sets, notes


def read_set(es: EvalSet) -> list[dict[str, Any]]:
    """The prompt rows of one set (duplicate ids kept once), tagged with the set's name."""
    if not es.path.is_file():
        raise MedsafeError(
            f"evaluation set {es.name!r}: {es.path} does not exist; run `medsafe data` first "
            "or point --benchmark/--test-file at an existing file"
        )
    raw = _csv_rows(es) if es.path.suffix.lower() == ".csv" else _jsonl_rows(es)
    excluded = _ids(es.exclude) if es.exclude is not None and es.exclude.is_file() else set()
    rows = {r["id"]: r for r in reversed(raw) if r["id"] not in excluded}  # the first of a duplicate wins
    return list(reversed(rows.values()))


def load_eval_rows(
    sets: list[EvalSet], max_rows: int | None, max_benchmark_rows: int | None = None
) -> list[dict[str, Any]]:
    """Rows of every set in order; the test split capped at `max_rows`, benchmarks at `max_benchmark_rows`
    (by id order); red-team and over-refusal sets whole."""
    out: list[dict[str, Any]] = []
    for es in sets:
        rows = read_set(es)
        cap = None if es.uncapped else (max_rows if es.name == TEST else max_benchmark_rows)
        if cap is not None:
            rows = sorted(rows, key=lambda r: r["id"])[:cap]
        out += rows
    return out


def check_held_out(rows: list[dict[str, Any]], training_prompts: Path) -> dict[str, Any]:
    """Refuse prompts that are RL training prompts (same id, or the same question once whitespace and case
    are normalised); what was checked, for the report."""
    training_prompts = Path(training_prompts)
    if not training_prompts.is_file():
        return {
            "training_prompts": None,
            "reason": f"{training_prompts} does not exist",
            "evaluated": len(rows),
        }
    rl_ids, rl_questions = set(), set()
    for _, obj in iter_jsonl(training_prompts, strict=True):
        rl_ids.add(str(obj.get("id")))
        rl_questions.add(_norm(obj.get("question")))
    clash = sorted(
        {
            f"{r.get('set')}:{r['id']}"
            for r in rows
            if str(r["id"]) in rl_ids or _norm(r["question"]) in rl_questions
        }
    )
    if clash:
        shown = ", ".join(clash[:10]) + (f" and {len(clash) - 10} more" if len(clash) > 10 else "")
        raise MedsafeError(
            f"{len(clash)} evaluation prompt(s) are RL training prompts in {training_prompts}: {shown}. "
            "Evaluation uses held-out prompts only: drop them from the set, or re-run `medsafe data` "
            "(it holds red_team_eval out of the RL prompts)"
        )
    return {
        "training_prompts": str(training_prompts),
        "rl_prompts": len(rl_ids),
        "evaluated": len(rows),
        "overlap": 0,
    }


def _ids(path: Path) -> set[str]:
    return {str(obj.get("id")) for _, obj in iter_jsonl(path, strict=True) if obj.get("id") is not None}


def _norm(text: Any) -> str:
    return " ".join(str(text or "").split()).casefold()


def _jsonl_rows(es: EvalSet) -> list[dict[str, Any]]:
    rows = []
    for line_no, obj in iter_jsonl(es.path):
        question = obj.get("question") or obj.get("prompt") or obj.get(MSB_QUESTION)
        if not isinstance(question, str) or not question.strip():
            raise MedsafeError(
                f"{es.path}:{line_no}: a prompt row needs a non-empty 'question'; fix or drop it"
            )
        benign = bool(obj.get("benign", OVER_REFUSAL in es.name or "helpful_answer_contains" in obj))
        reference = next(
            (
                obj[k]
                for k in ("reference_answer", "answer", MSB_ANSWER, "helpful_answer_contains")
                if obj.get(k)
            ),
            None,
        )
        harmful = MSB_QUESTION in obj or "harmful_intent" in (obj.get("safety_categories") or [])
        kind = obj.get("kind") or ("harmful_request" if harmful else "patient_question")
        rows.append(_row(es.name, obj.get("id"), question, obj, kind, benign, reference))
    return rows


def _csv_rows(es: EvalSet) -> list[dict[str, Any]]:
    with es.path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if MSB_QUESTION not in (reader.fieldnames or []):
            raise MedsafeError(
                f"{es.path}: a benchmark CSV needs a {MSB_QUESTION!r} column (optional {MSB_ANSWER!r}); "
                f"found {reader.fieldnames}"
            )
        rows = []
        for line_no, rec in enumerate(reader, start=2):
            question = (rec.get(MSB_QUESTION) or "").strip()
            if not question:
                raise MedsafeError(f"{es.path}:{line_no}: empty {MSB_QUESTION!r}; fix or drop the line")
            reference = (rec.get(MSB_ANSWER) or "").strip() or None
            rows.append(_row(es.name, rec.get("id"), question, {}, "harmful_request", False, reference))
    return rows


def _row(
    set_name: str,
    row_id: Any,
    question: str,
    obj: dict[str, Any],
    kind: str,
    benign: bool,
    reference: str | None,
) -> dict[str, Any]:
    terms, cats = obj.get("key_terms"), obj.get("safety_categories")
    return {
        "id": str(row_id) if row_id not in (None, "") else text_hash(question),
        "set": set_name,
        "kind": kind,
        "benign": benign,
        "question": question,
        "lang": obj.get("lang") or detect_lang(question),
        "risk_level": obj.get("risk_level"),
        # None (unlabelled): the rules read the question; benign prompts are labelled with no category.
        "safety_categories": list(cats) if isinstance(cats, list) else ([] if benign else None),
        "reference": reference if isinstance(reference, str) else None,
        "key_terms": [str(t) for t in terms] if isinstance(terms, list) else None,
    }
