"""Label each row's risk level and safety categories from a versioned bilingual lexicon.

The lexicon (data/rules/risk_lexicon.yaml, schema in tasks/risk_lexicon.py) is compiled into one
Aho-Corasick automaton per language plus a few regular expressions for phrases whose words inflect
or take an infix ("wants to die", "剧烈上腹痛"), so a text is scanned once however many terms there are.
Labels come from the question (what the RL prompt will ask); the reasoning and answer may add only
weak evidence. Exam answer options ("A. 胃癌 B. ... C. ...") name candidates, not what the asker has:
a term found only in the options counts as its plain kind capped at medium, so "D. 氰化钠中毒" in a
physiology question is no emergency, while kinds still combine with the stem ("最可能的诊断" with
"B. 胃癌" still seeks a serious diagnosis).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from flows.config import Workdir
from tasks.caching import STAGE_CACHE
from tasks.io import read_jsonl, write_jsonl
from tasks.records import LANGS, RISK_LEVELS, SAFETY_CATEGORIES
from tasks.risk_lexicon import (  # noqa: F401  (Combination, NegationRules, Severity: re-exported)
    DEFAULT_LEXICON,
    SEVERITY_RANK,
    Combination,
    Lexicon,
    NegationRules,
    Severity,
    TermGroup,
    TermMatcher,
    load_lexicon,
    normalize,
)

_MEDIUM = SEVERITY_RANK["medium"]
# An option marker: "A." "B、" "C)" "(d)" not inside a word; texts are already lower-cased by normalize.
_OPTION = re.compile(r"(?<![a-z0-9])\(?([a-f])\s?[.、:)]")


def options_start(norm: str) -> int:
    """Where exam answer options begin in a normalized text (markers a, b, c in order), else its length."""
    seen: dict[str, int] = {}
    for match in _OPTION.finditer(norm):
        letter = match.group(1)
        if letter == "a":
            seen = {"a": match.start()}
        elif seen and chr(ord(letter) - 1) in seen and letter not in seen:
            seen[letter] = match.start()
            if letter == "c":
                return seen["a"]
    return len(norm)


@dataclass(frozen=True)
class RiskLabel:
    """A row's risk: level, categories in canonical order, a short concern, and the terms behind it."""

    risk_level: str
    safety_categories: list[str]
    safety_concern: str | None
    evidence: list[dict[str, str]] = field(default_factory=list)


class RiskClassifier:
    """Scores a text against the lexicon: the highest severity found sets the risk level."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        self._matchers = {lang: TermMatcher(lexicon, lang) for lang in LANGS}

    @classmethod
    def from_yaml(cls, path: Path | None = None) -> RiskClassifier:
        return cls(load_lexicon(Path(path) if path else DEFAULT_LEXICON))

    def classify(self, text: str, lang: str) -> RiskLabel:
        return self._label(self._evidence(text, lang), lang)

    def _evidence(self, text: str, lang: str) -> list[dict[str, str]]:
        if lang not in self._matchers:
            raise ValueError(f"unknown lang {lang!r}; expected one of {', '.join(LANGS)}")
        norm = normalize(text or "", lang)
        options = options_start(norm)
        evidence: dict[tuple[str, str], dict[str, str]] = {}
        by_kind: dict[str, list[str]] = {}
        for start, term, group in self._matchers[lang].hits(norm):
            item = _item(term, group, in_options=start >= options)
            evidence.setdefault((term, group.name), item)  # hits come in text order: the stem's wins
            if term not in by_kind.setdefault(group.kind, []):
                by_kind[group.kind].append(term)
        for combo in self.lexicon.combinations:
            found = [next((by_kind[k][0] for k in slot if k in by_kind), None) for slot in combo.requires]
            if all(found):
                term = "+".join(found)
                evidence[(term, combo.name)] = {
                    "term": term,
                    "category": combo.category,
                    "severity": combo.severity,
                }
        return sorted(evidence.values(), key=_strength, reverse=True)

    def _label(self, evidence: list[dict[str, str]], lang: str) -> RiskLabel:
        level = evidence[0]["severity"] if evidence else "low"  # evidence comes strongest first
        found = {e.get("category") for e in evidence}
        categories = [c for c in SAFETY_CATEGORIES if c in found]
        return RiskLabel(
            level, categories, self._concern(evidence, lang) if level != "low" else None, evidence
        )

    def _concern(self, evidence: list[dict[str, str]], lang: str) -> str | None:
        """Text from the strongest evidence that has a concern template (a bare topic has none)."""
        for top in evidence:
            key = top.get("category") or top.get("kind")
            if key in self.lexicon.concerns:
                terms = [e["term"] for e in evidence if (e.get("category") or e.get("kind")) == key][:3]
                sep = "、" if lang == "zh" else ", "
                return self.lexicon.concerns[key][lang].format(terms=sep.join(terms))
        return None

    def classify_row(self, question: str, context: str, lang: str) -> RiskLabel:
        """Label from the question; context (reasoning + answer) may add only uncategorised evidence
        up to medium, because a reference answer's differential ("if chest pain, call 120") describes
        the answer, not the risk of the prompt the model will be given."""
        primary = self._evidence(question, lang)
        seen = {(e["term"], e.get("kind")) for e in primary}
        extra = [
            e
            for e in self._evidence(context, lang)
            if "kind" in e and SEVERITY_RANK[e["severity"]] <= _MEDIUM and (e["term"], e["kind"]) not in seen
        ]
        return self._label(sorted(primary + extra, key=_strength, reverse=True), lang)


def _item(term: str, group: TermGroup, in_options: bool) -> dict[str, str]:
    """Evidence for one hit; in answer options only the plain kind counts, at most medium."""
    if in_options and (group.category or SEVERITY_RANK[group.severity] > _MEDIUM):
        return {"term": term, "kind": group.kind, "severity": "medium"}
    label = {"category": group.category} if group.category else {"kind": group.kind}
    return {"term": term, **label, "severity": group.severity}


_CATEGORY_RANK = {c: len(SAFETY_CATEGORIES) - i for i, c in enumerate(SAFETY_CATEGORIES)}


def _strength(evidence: dict[str, str]) -> tuple[int, int]:
    """Severity first; at equal severity a safety category beats a plain kind, in canonical order."""
    return SEVERITY_RANK[evidence["severity"]], _CATEGORY_RANK.get(evidence.get("category"), 0)


def iter_labelled(
    rows: Iterable[dict[str, Any]], classifier: RiskClassifier
) -> Iterator[tuple[dict[str, Any], RiskLabel | None]]:
    """Yield (labelled copy of row, label); curated rows (row["labelled"]) pass through with label None."""
    for row in rows:
        out = dict(row)
        if row.get("labelled") and row.get("risk_level"):
            out.setdefault("safety_categories", [])
            out.setdefault("safety_concern", None)
            yield out, None
            continue
        lang = row.get("lang")
        if lang not in LANGS:
            raise ValueError(
                f"row {row.get('id', '?')}: lang {lang!r} is not one of {LANGS}; fix the cleanup stage output"
            )
        context = "\n".join(str(row.get(k) or "") for k in ("think", "answer"))
        label = classifier.classify_row(str(row.get("question") or ""), context, lang)
        out.update(
            risk_level=label.risk_level,
            safety_categories=label.safety_categories,
            safety_concern=label.safety_concern,
        )
        yield out, label


def classify_rows(rows: Iterable[dict[str, Any]], classifier: RiskClassifier) -> list[dict[str, Any]]:
    """Rows with risk_level, safety_categories and safety_concern filled (curated labels kept)."""
    return [row for row, _ in iter_labelled(rows, classifier)]


def risk_distribution(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts and shares per risk level (every level listed), plus counts per safety category."""
    rows = list(rows)
    levels = Counter(row.get("risk_level") or "low" for row in rows)
    categories = Counter(c for row in rows for c in row.get("safety_categories") or [])
    total = len(rows)
    return {
        "total": total,
        "counts": {level: levels.get(level, 0) for level in RISK_LEVELS},
        "shares": {level: round(levels.get(level, 0) / total, 4) if total else 0.0 for level in RISK_LEVELS},
        "categories": {c: categories.get(c, 0) for c in SAFETY_CATEGORIES},
    }


def classify_file(
    rows_path: Path, out_path: Path, classifier: RiskClassifier, top_terms: int = 15
) -> dict[str, Any]:
    """Label a JSONL file into another; returns the distribution and the most frequent evidence terms."""
    terms: Counter[str] = Counter()
    labelled = []
    for row, label in iter_labelled(read_jsonl(rows_path), classifier):
        labelled.append(row)
        terms.update(
            e["term"] for e in (label.evidence if label else []) if SEVERITY_RANK[e["severity"]] >= 3
        )
    write_jsonl(out_path, labelled)
    return {
        **risk_distribution(labelled),
        "curated": sum(1 for r in labelled if r.get("labelled")),
        "top_evidence": dict(terms.most_common(top_terms)),
        "lexicon_version": classifier.lexicon.version,
        "output": str(out_path),
    }


@task(cache_policy=STAGE_CACHE, persist_result=True)
def classify_risk_task(
    rows_path: Path,
    workdir: Workdir,
    lexicon_path: Path = DEFAULT_LEXICON,
    output_name: str = "classified.jsonl",
) -> dict[str, Any]:
    """Prefect stage: label cleaned rows into <workdir>/data/processed/<output_name>."""
    logger = get_run_logger()
    classifier = RiskClassifier.from_yaml(lexicon_path)
    summary = classify_file(rows_path, workdir.processed / output_name, classifier)
    logger.info(
        "classified %d rows (lexicon %s): %s", summary["total"], summary["lexicon_version"], summary["counts"]
    )
    return summary
