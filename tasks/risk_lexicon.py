"""The bilingual risk lexicon (data/rules/risk_lexicon.yaml): schema, loader, normalisation and matcher.

The lexicon is validated once at load, so a typo in a severity, a category or a regular expression
fails with the file and the entry named instead of mislabelling rows later. TermMatcher compiles it
for one language; tasks/classify_risk.py turns its hits into labels.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Literal

import ahocorasick
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from flows.config import ASSETS_DIR
from tasks.records import LANGS, RISK_LEVELS, SAFETY_CATEGORIES

DEFAULT_LEXICON = ASSETS_DIR / "rules" / "risk_lexicon.yaml"
SEVERITY_RANK = {level: len(RISK_LEVELS) - i for i, level in enumerate(RISK_LEVELS)}  # critical=4 .. low=1
Severity = Literal["critical", "high", "medium", "low"]
Lang = Literal["zh", "en"]


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


def _check_patterns(owner: str, patterns: dict[Lang, list[str]]) -> None:
    """Each pattern must compile and must not match an empty string (it would match everywhere)."""
    for lang, items in patterns.items():
        for pattern in items:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"{owner} has a {lang} pattern {pattern!r} that does not compile: {exc}"
                ) from None
            if compiled.fullmatch(""):
                raise ValueError(f"{owner} has a {lang} pattern {pattern!r} that matches empty text")


class TermGroup(_Strict):
    name: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    severity: Severity
    category: Category | None = None
    negation: Literal["all", "clinical", "none"] = "all"
    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)
    patterns: dict[Lang, list[str]] = Field(
        default_factory=dict, description="Regular expressions over normalized text, per language."
    )

    @model_validator(mode="after")
    def _terms_ok(self) -> TermGroup:
        if not self.zh and not self.en and not any(self.patterns.values()):
            raise ValueError(f"group {self.name!r} has no terms; add zh: or en: terms")
        for lang in LANGS:
            seen = [normalize(t, lang) for t in getattr(self, lang)]
            if any(not t.strip() for t in seen):
                raise ValueError(f"group {self.name!r} has an empty {lang} term")
            if dupes := sorted({t for t in seen if seen.count(t) > 1}):
                raise ValueError(f"group {self.name!r} lists {lang} term(s) {dupes} more than once")
        _check_patterns(f"group {self.name!r}", self.patterns)
        return self


class Combination(_Strict):
    name: str = Field(min_length=1)
    category: Category
    severity: Severity
    requires: list[list[str]] = Field(min_length=2, description="Each slot: any of these kinds.")


class Lexicon(_Strict):
    version: str = Field(min_length=1)
    negation: dict[Lang, NegationRules]
    exclusions: dict[Lang, list[str]] = Field(default_factory=dict)
    exclusion_patterns: dict[Lang, list[str]] = Field(default_factory=dict)
    groups: list[TermGroup] = Field(min_length=1)
    combinations: list[Combination] = Field(default_factory=list)
    concerns: dict[str, dict[Lang, str]]

    @model_validator(mode="after")
    def _consistent(self) -> Lexicon:
        if missing := [lang for lang in LANGS if lang not in self.negation]:
            raise ValueError(f"negation rules missing for {missing}")
        _check_patterns("exclusion_patterns", self.exclusion_patterns)
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


class TermMatcher:
    """The lexicon compiled for one language: an automaton for terms, regexes for patterns, then word
    boundaries (en), exclusions, containment and negation."""

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
            self.automaton.add_word(key, (key, tuple(groups), _rank(groups)))
        self.automaton.make_automaton()
        self.patterns = [
            (self._compile(p), (g,), _rank([g])) for g in lexicon.groups for p in g.patterns.get(lang, [])
        ]
        self.patterns += [(self._compile(p), (), _rank([])) for p in lexicon.exclusion_patterns.get(lang, [])]
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

    def _compile(self, pattern: str) -> re.Pattern[str]:
        """en patterns end at a word end (a plural s/es allowed) whatever order their alternatives take;
        the start is checked in hits(), as a leading \\b would stop re from skipping ahead fast."""
        return re.compile(pattern if self.lang == "zh" else rf"(?:{pattern})(?=(?:e?s)?\b)")

    def hits(self, norm: str) -> list[tuple[int, str, TermGroup]]:
        """(start, term, group) found in a normalized text, after boundaries, exclusions, containment
        and negation."""
        terms = (
            (end - len(key) + 1, end + 1, key, value) for end, (key, *value) in self.automaton.iter(norm)
        )
        spans = [*terms, *self._pattern_spans(norm)]
        found = []
        for start, stop, key, (groups, rank) in spans:
            if self.lang == "en":
                if start > 0 and norm[start - 1].isalnum():
                    continue
                stop = _word_stop(norm, stop)
                if stop < 0:
                    continue
            found.append((start, stop, rank, key, groups))
        return [
            (start, key, group)
            for start, _, _, key, groups in _drop_contained(found)
            for group in groups
            if group.negation == "none" or not self._negated(norm, start, group.negation)
        ]

    def _pattern_spans(self, norm: str) -> Iterator[tuple[int, int, str, tuple[tuple[TermGroup, ...], int]]]:
        for regex, groups, rank in self.patterns:
            for match in regex.finditer(norm):
                yield match.start(), match.end(), match.group(0), (groups, rank)

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


def _rank(groups: Iterable[TermGroup]) -> int:
    """The strongest severity among a term's groups; 99 for an exclusion, which outranks every term."""
    return max((SEVERITY_RANK[g.severity] for g in groups), default=99)


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
