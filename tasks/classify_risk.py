"""Label each row's risk level and safety categories from a versioned bilingual lexicon.

The lexicon (data/rules/risk_lexicon.yaml) is validated once and compiled into one Aho-Corasick
automaton per language, so a text is scanned once however many terms there are. Labels come from
the question (what the RL prompt will ask); the reasoning and answer may add only weak evidence.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import ahocorasick
import yaml
from prefect import get_run_logger, task
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from flows.config import ASSETS_DIR, Workdir
from tasks.caching import STAGE_CACHE
from tasks.io import read_jsonl, write_jsonl
from tasks.records import LANGS, RISK_LEVELS, SAFETY_CATEGORIES

DEFAULT_LEXICON = ASSETS_DIR / "rules" / "risk_lexicon.yaml"
SEVERITY_RANK = {level: len(RISK_LEVELS) - i for i, level in enumerate(RISK_LEVELS)}  # critical=4 .. low=1
Severity = Literal["critical", "high", "medium", "low"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NegationRules(_Strict):
    window: int = Field(gt=0, description="zh: characters, en: words looked at before a term.")
    cues: list[str] = Field(min_length=1)
    clinical_cues: list[str] = Field(default_factory=list)
    ignore: list[str] = Field(default_factory=list)
    breakers: list[str] = Field(default_factory=list)


def _known_category(value: str) -> str:
    if value not in SAFETY_CATEGORIES:
        raise ValueError(f"unknown category {value!r}; use one of {', '.join(SAFETY_CATEGORIES)}")
    return value


Category = Annotated[str, AfterValidator(_known_category)]


class TermGroup(_Strict):
    name: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    severity: Severity
    category: Category | None = None
    negation: Literal["all", "clinical", "none"] = "all"
    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _terms_ok(self) -> TermGroup:
        if not self.zh and not self.en:
            raise ValueError(f"group {self.name!r} has no terms; add zh: or en: terms")
        for lang in LANGS:
            seen = [normalize(t, lang) for t in getattr(self, lang)]
            if any(not t.strip() for t in seen):
                raise ValueError(f"group {self.name!r} has an empty {lang} term")
            if dupes := sorted({t for t in seen if seen.count(t) > 1}):
                raise ValueError(f"group {self.name!r} lists {lang} term(s) {dupes} more than once")
        return self


class Combination(_Strict):
    name: str = Field(min_length=1)
    category: Category
    severity: Severity
    requires: list[list[str]] = Field(min_length=2, description="Each slot: any of these kinds.")


class Lexicon(_Strict):
    version: str = Field(min_length=1)
    negation: dict[Literal["zh", "en"], NegationRules]
    exclusions: dict[Literal["zh", "en"], list[str]] = Field(default_factory=dict)
    groups: list[TermGroup] = Field(min_length=1)
    combinations: list[Combination] = Field(default_factory=list)
    concerns: dict[str, dict[Literal["zh", "en"], str]]

    @model_validator(mode="after")
    def _consistent(self) -> Lexicon:
        if missing := [lang for lang in LANGS if lang not in self.negation]:
            raise ValueError(f"negation rules missing for {missing}")
        names = [g.name for g in self.groups]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"group names must be unique; repeated: {dupes}")
        kinds = {g.kind for g in self.groups}
        for combo in self.combinations:
            if unknown := sorted({k for slot in combo.requires for k in slot} - kinds):
                raise ValueError(f"combination {combo.name!r} requires unknown kind(s) {unknown}")
        for key in SAFETY_CATEGORIES:
            if key not in self.concerns:
                raise ValueError(f"concerns has no text for category {key!r}")
        for key, texts in self.concerns.items():
            if set(texts) != set(LANGS) or any("{terms}" not in t for t in texts.values()):
                raise ValueError(f"concern {key!r} needs zh and en texts that contain {{terms}}")
        return self


def normalize(text: str, lang: str) -> str:
    """Fold width and case (and, for en, hyphens and curly quotes) so terms and texts compare alike."""
    text = unicodedata.normalize("NFKC", text).lower()
    return text.replace("-", " ").replace("\u2019", "'") if lang == "en" else text


def load_lexicon(path: Path) -> Lexicon:
    """Read and validate the lexicon; errors name the file and the offending entry."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(
            f"{path}: cannot read the risk lexicon ({exc}); fix the file or pass another path"
        ) from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the risk lexicon must be a YAML mapping with version, groups, concerns")
    try:
        return Lexicon.model_validate(raw)
    except ValidationError as exc:
        lines = [f"  {_where(err['loc'], raw)}: {err['msg']}" for err in exc.errors()]
        raise ValueError(
            f"{path}: invalid risk lexicon:\n" + "\n".join(lines) + "\nFix these entries and rerun."
        ) from None


def _where(loc: tuple, raw: dict) -> str:
    """'groups[3] (name='antibiotics').severity' rather than pydantic's bare index path."""
    parts = [str(p) for p in loc]
    if len(loc) >= 2 and loc[0] in ("groups", "combinations") and isinstance(loc[1], int):
        entry = (raw.get(loc[0]) or [{}])[loc[1]] if loc[1] < len(raw.get(loc[0]) or []) else {}
        parts[:2] = [f"{loc[0]}[{loc[1]}] (name={entry.get('name') if isinstance(entry, dict) else None!r})"]
    return ".".join(parts) or "(top level)"


@dataclass(frozen=True)
class RiskLabel:
    """A row's risk: level, categories in canonical order, a short concern, and the terms behind it."""

    risk_level: str
    safety_categories: list[str]
    safety_concern: str | None
    evidence: list[dict[str, str]] = field(default_factory=list)


class _Matcher:
    """One compiled automaton for one language, with word boundaries (en) and negation."""

    def __init__(self, lexicon: Lexicon, lang: str) -> None:
        self.lang, self.rules = lang, lexicon.negation[lang]
        table: dict[str, list[TermGroup]] = {}
        for group in lexicon.groups:
            for term in getattr(group, lang):
                table.setdefault(normalize(term, lang), []).append(group)
        for phrase in lexicon.exclusions.get(lang, []):
            table.setdefault(normalize(phrase, lang), [])
        self.automaton = ahocorasick.Automaton()
        for key, groups in table.items():
            rank = max((SEVERITY_RANK[g.severity] for g in groups), default=99)  # 99: an exclusion
            self.automaton.add_word(key, (key, tuple(groups), rank))
        self.automaton.make_automaton()
        self.ignore = [normalize(p, lang) for p in self.rules.ignore]
        bound = "" if lang == "zh" else r"\b"
        self.cue = {  # one compiled alternation per negation mode
            mode: re.compile(
                bound + "(?:" + "|".join(re.escape(normalize(c, lang)) for c in cues) + ")" + bound
            )
            for mode, cues in (("all", self.rules.cues), ("clinical", self.rules.clinical_cues))
            if cues
        }
        ends = "，。；！？,.;!?：:\n" if lang == "zh" else ".;!?:\n"
        self.clause_end = re.compile(f"[{re.escape(ends)}]")

    def hits(self, text: str) -> list[tuple[str, TermGroup]]:
        """(term, group) pairs found in text, after boundaries, exclusions, containment and negation."""
        norm = normalize(text, self.lang)
        found = []
        for end, (key, groups, rank) in self.automaton.iter(norm):
            start, stop = end - len(key) + 1, end + 1
            if self.lang == "en":
                if start > 0 and norm[start - 1].isalnum():
                    continue
                stop = _word_stop(norm, stop)
                if stop < 0:
                    continue
            found.append((start, stop, rank, key, groups))
        return [
            (key, group)
            for start, _, _, key, groups in _drop_contained(found)
            for group in groups
            if group.negation == "none" or not self._negated(norm, start, group.negation)
        ]

    def _negated(self, norm: str, start: int, mode: str) -> bool:
        cue = self.cue.get(mode)
        span = self.clause_end.split(norm[max(0, start - 80) : start])[-1]
        if cue is None or not cue.search(span):  # fast path: most terms have no cue nearby
            return False
        for phrase in self.ignore:
            span = span.replace(phrase, " ")
        if self.lang == "zh":
            span = span[-self.rules.window :]
            cut = max((span.rfind(b) + len(b) for b in self.rules.breakers if b in span), default=0)
            return bool(cue.search(span[cut:]))
        tail = "".join(ch if ch.isalnum() or ch == "'" else " " for ch in span).split()[-self.rules.window :]
        cut = max((i + 1 for i, word in enumerate(tail) if word in self.rules.breakers), default=0)
        return bool(cue.search(" ".join(tail[cut:])))


def _word_stop(norm: str, stop: int) -> int:
    """End of the word after a match (allowing a plural s/es), or -1 when the match ends mid-word."""
    for suffix in ("", "s", "es"):
        after = stop + len(suffix)
        if norm.startswith(suffix, stop) and (after >= len(norm) or not norm[after].isalnum()):
            return after
    return -1


def _drop_contained(hits: list[tuple]) -> list[tuple]:
    """Drop a (start, end, rank, ...) hit inside a longer one that is an exclusion or at least as
    severe: "抑郁" inside "抗抑郁" is the drug, "中毒" inside "慢性铅中毒" is no emergency."""
    hits.sort(key=lambda h: (h[0], -h[1]))
    kept, reach = [], -1  # reach: furthest end so far; a hit ending beyond it has no container
    for i, h in enumerate(hits):
        if h[1] > reach or not any(
            c[1] >= h[1] and c[1] - c[0] > h[1] - h[0] and c[2] >= h[2] for c in hits[:i]
        ):
            kept.append(h)
        reach = max(reach, h[1])
    return kept


class RiskClassifier:
    """Scores a text against the lexicon: the highest severity found sets the risk level."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        self._matchers = {lang: _Matcher(lexicon, lang) for lang in LANGS}

    @classmethod
    def from_yaml(cls, path: Path | None = None) -> RiskClassifier:
        return cls(load_lexicon(Path(path) if path else DEFAULT_LEXICON))

    def classify(self, text: str, lang: str) -> RiskLabel:
        return self._label(self._evidence(text, lang), lang)

    def _evidence(self, text: str, lang: str) -> list[dict[str, str]]:
        if lang not in self._matchers:
            raise ValueError(f"unknown lang {lang!r}; expected one of {', '.join(LANGS)}")
        hits = self._matchers[lang].hits(text or "")
        evidence: dict[tuple[str, str], dict[str, str]] = {}
        by_kind: dict[str, list[str]] = {}
        for term, group in hits:
            label = {"category": group.category} if group.category else {"kind": group.kind}
            evidence.setdefault((term, group.name), {"term": term, **label, "severity": group.severity})
            by_kind.setdefault(group.kind, [])
            if term not in by_kind[group.kind]:
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
        weak = SEVERITY_RANK["medium"]
        extra = [
            e
            for e in self._evidence(context, lang)
            if "kind" in e and SEVERITY_RANK[e["severity"]] <= weak and (e["term"], e["kind"]) not in seen
        ]
        return self._label(sorted(primary + extra, key=_strength, reverse=True), lang)


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
