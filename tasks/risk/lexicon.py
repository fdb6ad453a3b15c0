"""The bilingual risk lexicon (data/rules/risk_lexicon.yaml): schema, loader and normalisation.

The lexicon is validated once at load, so a typo in a severity, a category or a regular expression
fails with the file and the entry named instead of mislabelling rows later. tasks/term_matcher.py
compiles it for one language; tasks/classify_risk.py turns its hits into labels. Last, what a pattern
can match, read from its parse tree: the matcher tries a pattern only where one of its literal
prefixes begins, and knows from its whole matches (when they are few) what it may contain.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from re import _constants as sre  # parse trees of the lexicon's own patterns (stable since 3.11)
from re import _parser as sre_parser
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.core.records import LANGS, RISK_CATEGORIES, RISK_LEVELS
from tasks.core.workdir import ASSETS_DIR
from tasks.risk.acuity import AcuityRules
from tasks.risk.backstop import BackstopWeights
from tasks.risk.intent import IntentRules
from tasks.risk.topics import TopicClauses

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
    if value not in RISK_CATEGORIES:
        raise ValueError(f"unknown category {value!r}; use one of {', '.join(RISK_CATEGORIES)}")
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
    contains: bool = Field(
        True,
        description=(
            "Whether a hit drops shorter hits inside it that rank no higher (the drug inside 'took a bottle "
            "of pills'); false for phrases whose words (a drug, a person) should still count on their own."
        ),
    )
    keep_inside: bool = Field(
        False,
        description=(
            "Hits stay even inside a longer hit: a frame word ('Prioritize ...', 'how can a doctor') that "
            "is also the first word of an act still counts for a combination."
        ),
    )
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
    acuity: AcuityRules | None = Field(default=None, description="Cue classes scored on a patient's words.")
    intent: IntentRules | None = Field(
        default=None, description="Cue classes whose compositions mark harmful intent or self-harm."
    )
    topic_clauses: TopicClauses | None = Field(
        default=None,
        description="Markers of clauses about the past, someone else, hearsay or a feared outcome, whose "
        "terms do not count in a question (tasks/risk/topics.py).",
    )

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
        if self.topic_clauses is not None and (unknown := sorted(set(self.topic_clauses.kinds) - kinds)):
            raise ValueError(f"topic_clauses kinds names unknown kind(s) {unknown}")
        if self.acuity is not None and self.acuity.backstop_unless:
            known = {c.name for c in self.intent.classes} if self.intent is not None else set()
            if unknown := sorted(set(self.acuity.backstop_unless) - known):
                raise ValueError(f"acuity backstop_unless names unknown intent class(es) {unknown}")
        for key in RISK_CATEGORIES:
            if key not in self.concerns:
                raise ValueError(f"concerns has no text for category {key!r}")
        for key, texts in self.concerns.items():
            if set(texts) != set(LANGS) or any("{terms}" not in t for t in texts.values()):
                raise ValueError(f"concern {key!r} needs zh and en texts that contain {{terms}}")
        return self


# Chinese punctuation NFKC maps to one ASCII character each: replacing them first cannot change the
# result (NFKC decomposes every character on its own), and what remains is usually normalised already.
_WIDE_PUNCT = tuple((ch, unicodedata.normalize("NFKC", ch)) for ch in "，：；！？（）％～")


def normalize(text: str, lang: str) -> str:
    """Fold width and case (and, for en, hyphens and curly quotes) so terms and texts compare alike."""
    if text.isascii():  # NFKC leaves ASCII as it is, and ASCII has no curly quote
        text = text.lower()
        return text.replace("-", " ") if lang == "en" else text
    folded = text
    for wide, narrow in _WIDE_PUNCT:
        if wide in folded:
            folded = folded.replace(wide, narrow)
    text = (
        folded if unicodedata.is_normalized("NFKC", folded) else unicodedata.normalize("NFKC", text)
    ).lower()
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
        lexicon = Lexicon.model_validate(raw)
    except ValidationError as exc:
        lines = [f"  {_where(err['loc'], raw)}: {err['msg']}" for err in exc.errors()]
        raise ValueError(
            f"{path}: invalid risk lexicon:\n" + "\n".join(lines) + "\nFix these entries and rerun."
        ) from None
    # the learned backstops' weights, next to the lexicon
    for section in ("intent", "acuity"):
        rules = getattr(lexicon, section)
        if rules is None or not isinstance(rules.backstop, str):
            continue
        weights = path.parent / rules.backstop
        try:
            model = BackstopWeights.model_validate(json.loads(weights.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:  # ValidationError is a ValueError
            raise ValueError(
                f"{path}: {section}.backstop {weights}: cannot read the weights "
                f"({str(exc).splitlines()[0]}); rerun `python -m tasks.risk.train_backstop` or remove the key"
            ) from None
        lexicon = lexicon.model_copy(update={section: rules.model_copy(update={"backstop": model})})
    return lexicon


def _where(loc: tuple, raw: dict) -> str:
    """'groups[3] (name='antibiotics').severity' rather than pydantic's bare index path."""
    parts = [str(p) for p in loc]
    if len(loc) >= 2 and loc[0] in ("groups", "combinations") and isinstance(loc[1], int):
        entry = (raw.get(loc[0]) or [{}])[loc[1]] if loc[1] < len(raw.get(loc[0]) or []) else {}
        parts[:2] = [f"{loc[0]}[{loc[1]}] (name={entry.get('name') if isinstance(entry, dict) else None!r})"]
    return ".".join(parts) or "(top level)"


# ---- what a pattern can match, read from its parse tree (tasks/term_matcher.py) -----------------------

_PREFIX_CAP = 256  # at most this many alternatives: past it a prefix grows by fewer characters
_PREFIX_LEN = 8  # longer prefixes find few fewer places to try, but add thousands of automaton nodes (en)


def literal_prefixes(regex: re.Pattern[str]) -> list[str] | None:
    """Strings one of which begins every match of `regex`, from its parse tree; None when there are none
    (the pattern may start with a class like \\w, or ignore case)."""
    if regex.flags & re.IGNORECASE:
        return None
    strings, _ = _seq_prefixes(list(sre_parser.parse(regex.pattern, regex.flags)))
    if "" in strings:
        return None
    strings = {s[:_PREFIX_LEN] for s in strings}
    # a string that extends another adds nothing: every match it begins also begins with the shorter one
    return sorted(s for s in strings if not any(s != t and s.startswith(t) for t in strings))


def anchored_at_start(regex: re.Pattern[str]) -> bool:
    """Whether every match of `regex` begins at the start of the text (a leading ^ without MULTILINE)."""
    if regex.flags & re.MULTILINE:
        return False
    items = list(sre_parser.parse(regex.pattern, regex.flags))
    return (
        bool(items) and items[0][0] is sre.AT and items[0][1] in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING)
    )


def whole_matches(regex: re.Pattern[str]) -> set[str] | None:
    """Every string `regex` can match (lookarounds aside) when they are a few thousand literal strings."""
    if regex.flags & re.IGNORECASE:
        return None
    strings, complete = _seq_prefixes(list(sre_parser.parse(regex.pattern, regex.flags)), 4096)
    return strings if complete else None


def _seq_prefixes(items: list, cap: int = _PREFIX_CAP) -> tuple[set[str], bool]:
    """(prefixes, complete) of a parsed sequence; complete: they are the sequence's whole matches."""
    if not items:
        return {""}, True
    (op, av), rest = items[0], items[1:]
    if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):  # zero width
        return _seq_prefixes(rest, cap)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and av[0] == 0:
        body = list(av[2])
        once = _seq_prefixes(body + rest, cap) if av[1] == 1 else (_seq_prefixes(body, cap)[0], False)
        skip = _seq_prefixes(rest, cap)
        return once[0] | skip[0], once[1] and skip[1]
    head, whole = _item_prefixes(op, av, cap)
    if not whole:
        return head, False
    tail, tail_whole = _seq_prefixes(rest, cap)
    while len(head) * len(tail) > cap and tail != {""}:  # too many: cut the tail's strings shorter
        cut = max(map(len, tail)) - 1
        tail, tail_whole = {t[:cut] for t in tail}, False
    return {a + b for a in head for b in tail}, tail_whole


def _item_prefixes(op: object, av: object, cap: int) -> tuple[set[str], bool]:
    if op is sre.LITERAL:
        return {chr(av)}, True
    if op is sre.IN and all(k in (sre.LITERAL, sre.RANGE) for k, _ in av):
        chars = "".join(
            chr(v) if k is sre.LITERAL else "".join(map(chr, range(v[0], v[1] + 1))) for k, v in av
        )
        return (set(chars), True) if len(chars) <= 32 else ({""}, False)
    if op is sre.SUBPATTERN and not av[1] & re.IGNORECASE:
        return _seq_prefixes(list(av[3]), cap)
    if op is sre.ATOMIC_GROUP:
        return _seq_prefixes(list(av), cap)
    if op is sre.BRANCH:
        found = [_seq_prefixes(list(branch), cap) for branch in av[1]]
        return set().union(*(f[0] for f in found)), all(f[1] for f in found)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):  # at least once
        body, whole = _seq_prefixes(list(av[2]), cap)
        return body, whole and av[0] == av[1] == 1
    return {""}, False
