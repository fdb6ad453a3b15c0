"""RiskClassifier: a row's risk level, safety categories and concern from the lexicon's hits.

Pure and free of Prefect, so classification worker processes start in well under a second
(tasks/parallel_label.py runs them for large inputs). Labels come from the question; the reasoning and
answer may add only weak evidence. Exam answer options ("A. 胃癌 B. ... C. ...") name candidates, not
what the asker has: a term found only there counts as its plain kind capped at medium.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.records import LANGS, RISK_CATEGORIES, RISK_LEVELS
from tasks.risk.acuity import AcuityScorer
from tasks.risk.intent import IntentScorer
from tasks.risk.lexicon import DEFAULT_LEXICON, SEVERITY_RANK, Lexicon, TermGroup, load_lexicon, normalize
from tasks.risk.term_matcher import TermMatcher
from tasks.risk.topics import TopicScopes

_MEDIUM = SEVERITY_RANK["medium"]
_HIGH = SEVERITY_RANK["high"]
# An option marker: "A." "B、" "C)" "(d)" not inside a word; texts are already lower-cased by normalize.
# The letter comes first in these patterns (a leading lookbehind would keep re from skipping ahead to
# it); a marker starts at its "(" when one that is not inside a word precedes the letter.
_MARKER = re.compile(r"([a-f])(?<![a-z0-9][a-f])\s?[.、:)]")
_FIRST_MARKER = re.compile(r"a(?<![a-z0-9]a)\s?[.、:)]")  # options begin at an "a" marker
_THIRD_MARKER = re.compile(r"c(?<![a-z0-9]c)\s?[.、:)]")  # and need a "c" marker after it
_WORD = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_CATEGORY_RANK = {c: len(RISK_CATEGORIES) - i for i, c in enumerate(RISK_CATEGORIES)}


def options_start(norm: str) -> int:
    """Where exam answer options begin in a normalized text (markers a, b, c in order), else its length."""
    if not _THIRD_MARKER.search(norm):  # most texts: no "c" marker ("c" is rarer than "a": searched first)
        return len(norm)
    first = _FIRST_MARKER.search(norm)
    if first is None or not _THIRD_MARKER.search(norm, first.end()):
        return len(norm)
    seen: dict[str, int] = {}
    for match in _MARKER.finditer(norm, first.start()):
        letter, at = match.group(1), match.start()
        if at and norm[at - 1] == "(" and (at == 1 or norm[at - 2] not in _WORD):
            at -= 1
        if letter == "a":
            seen = {"a": at}
        elif seen and chr(ord(letter) - 1) in seen and letter not in seen:
            seen[letter] = at
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
        # clauses about the past, someone else, hearsay or a feared outcome (tasks/risk/topics.py): the
        # question's signs there do not count, nor do they for its acuity
        topics = lexicon.topic_clauses
        self._topics = {lang: TopicScopes(topics, lang) for lang in LANGS} if topics else {}
        self._topic_kinds = frozenset(topics.kinds) if topics else frozenset()
        # the acuity of a patient's own words (tasks/risk/acuity.py), read on the question only
        self._acuity = (
            {lang: AcuityScorer(lexicon.acuity, lang, self._topics.get(lang)) for lang in LANGS}
            if lexicon.acuity
            else {}
        )
        # harmful intent and self-harm from compositions of cue classes (tasks/risk/intent.py), question only
        self._intent = {lang: IntentScorer(lexicon.intent, lang) for lang in LANGS} if lexicon.intent else {}
        self._acuity_unless = tuple(lexicon.acuity.backstop_unless) if lexicon.acuity else ()
        # groups whose evidence changes inside answer options (see _item)
        self._option_sensitive = frozenset(
            g.name for g in lexicon.groups if g.category or SEVERITY_RANK[g.severity] > _MEDIUM
        )
        self._group_names = {
            kind: frozenset(g.name for g in lexicon.groups if g.kind == kind)
            for kind in {g.kind for g in lexicon.groups}
        }
        self._concern_keys = frozenset(lexicon.concerns)
        # kinds whose context evidence can raise a level above low: a low kind without a category (a
        # request frame, a symptom word waiting for a severity cue) never changes a label from the context
        self._raising_kinds = frozenset(
            g.kind for g in lexicon.groups if g.category or SEVERITY_RANK[g.severity] >= _MEDIUM
        )
        self._templated_kinds = self._concern_keys.intersection(self._group_names)
        self._kind_groups: dict[frozenset[str], tuple[frozenset[str], frozenset[str]]] = {}  # _context_groups
        self._combinations = [(combo, frozenset(combo.requires[0])) for combo in lexicon.combinations]
        # the combinations each kind can open (its first slot), to try only those a text can complete
        self._opened_by: dict[str, tuple[int, ...]] = {}
        for i, (_, first) in enumerate(self._combinations):
            for kind in first:
                self._opened_by[kind] = (*self._opened_by.get(kind, ()), i)
        # what a hit of each group gives, outside and inside answer options: (field, value, severity,
        # strength)
        self._items = {
            g.name: (_item(g, in_options=False), _item(g, in_options=True)) for g in lexicon.groups
        }

    @classmethod
    def from_yaml(cls, path: Path | None = None) -> RiskClassifier:
        return cls(load_lexicon(Path(path) if path else DEFAULT_LEXICON))

    def classify(self, text: str, lang: str) -> RiskLabel:
        norm = normalize(text or "", lang)
        return self._label(self._with_acuity(self._evidence(norm, lang), norm, lang), lang)

    def _with_acuity(self, evidence: list[dict[str, str]], norm: str, lang: str) -> list[dict[str, str]]:
        """The question's evidence after the rules (_with_rules) and, when they leave it below high, the
        learned acuity backstop: an `emergency` item at high (critical above its second threshold) named
        by its top n-grams, unless the question has a rights, myth or study frame (acuity.backstop_unless)."""
        evidence = self._with_rules(evidence, norm, lang)
        intent = self._intent.get(lang)
        if intent is not None and evidence and SEVERITY_RANK[evidence[0]["severity"]] >= _HIGH:
            lowered, _ = intent.lowered(norm)
            if lowered and not self._acute(norm, lang):
                # a protective frame (reporting, an ethics question, disposal or safe storage, giving a
                # child its medicine) and no acute words: its categories' high evidence describes
                capped = _capped(evidence, lambda e: e.get("category") in lowered and e["severity"] == "high")
                if capped is not evidence:
                    return capped  # lowered: the backstops do not raise it again
        if evidence and SEVERITY_RANK[evidence[0]["severity"]] >= _HIGH:
            return evidence
        scorer = self._acuity.get(lang)
        hit = scorer.backstop(norm) if scorer is not None else None
        if hit is None:
            return evidence
        if intent is not None and intent.any_class(norm, self._acuity_unless):
            return evidence
        item = {"term": hit[1] or "backstop", "category": "emergency", "severity": hit[0]}
        return sorted([item, *evidence], key=_strength, reverse=True)

    def _acute(self, norm: str, lang: str) -> bool:
        """Whether the acuity scorer reads a level, or a swallowed substance, failing vital or absent
        function, in the words: then no protective frame lowers the question."""
        scorer = self._acuity.get(lang)
        if scorer is None:
            return False
        acuity = scorer.score(norm)
        return acuity.level is not None or any(
            cue.split(":", 1)[0] in ("ingestion", "vital", "absent") for cue in acuity.cues
        )

    def _with_rules(self, evidence: list[dict[str, str]], norm: str, lang: str) -> list[dict[str, str]]:
        """The question's evidence, with an `emergency` item first when the acuity of its words reaches a
        level above the lexicon's (the item's term names the cues, "blood+ear+fell"), and an item for each
        intent rule the question fires (harmful_intent, mental_health)."""
        intent = self._intent.get(lang)
        fired, frame = (
            intent.read(norm, excuses=any(e.get("category") == "harmful_intent" for e in evidence))
            if intent is not None
            else ([], None)
        )
        if fired:
            items = [{"term": h.term, "category": h.category, "severity": h.severity} for h in fired]
            evidence = sorted([*items, *evidence], key=_strength, reverse=True)
        elif frame is None and (not evidence or SEVERITY_RANK[evidence[0]["severity"]] < _HIGH):
            # no rule and nothing high: the learned backstop may still read harmful intent
            hit = intent.backstop(norm) if intent is not None else None
            if hit is not None:
                item = {"term": hit.term, "category": hit.category, "severity": hit.severity}
                evidence = sorted([item, *evidence], key=_strength, reverse=True)
        elif frame == "excused":
            # a rights or safety question ("is it legal to...", 不让孩子拿到) or the person's own medicine:
            # the groups' harmful-intent words describe, they do not ask
            evidence = _capped(evidence, lambda e: e.get("category") == "harmful_intent")
        scorer = self._acuity.get(lang)
        if frame == "myth":
            # "is it true that X causes heart attacks": a claim, not a presentation, unless the words also
            # carry a failing vital or absent function ("...short of breath, is that true?")
            acute = scorer.score(norm).cues if scorer is not None else ()
            if not any(cue.split(":", 1)[0] in ("vital", "absent") for cue in acute):
                return _capped(
                    evidence, lambda e: e.get("category") not in ("harmful_intent", "mental_health")
                )
        top = SEVERITY_RANK[evidence[0]["severity"]] if evidence else 0
        if scorer is None or top >= SEVERITY_RANK["critical"]:
            return evidence
        acuity = scorer.score(norm)
        if acuity.level is None or top >= SEVERITY_RANK[acuity.level]:
            return evidence
        term = "+".join(
            dict.fromkeys(cue.split(":", 1)[1] for cue in acuity.cues if cue.split(":", 1)[0] != "dampener")
        )
        item = {"term": term, "category": "emergency", "severity": acuity.level}
        return sorted([item, *evidence], key=_strength, reverse=True)

    def _evidence(
        self, norm: str, lang: str, combine: bool = True, groups: frozenset[str] | None = None
    ) -> list[dict[str, str]]:
        """Evidence in a normalized text, strongest first; combine=False (a row's context) skips the
        combinations (categories), the sort and the topic clauses; `groups` limits the evidence to those
        groups' hits (containment still judged on every hit)."""
        matcher = self._matchers.get(lang)
        if matcher is None:
            raise ValueError(f"unknown lang {lang!r}; expected one of {', '.join(LANGS)}")
        options = -1  # found on the first hit that needs it: most texts have none
        evidence: dict[tuple[str, str], dict[str, str]] = {}
        strength: dict[tuple[str, str], tuple[int, int]] = {}  # each item's _strength, known in advance
        first_term: dict[str, str] = {}  # each kind's first term, which is what a combination names
        items, sensitive = self._items, self._option_sensitive
        hits = matcher.hits(norm, groups)
        kinds = self._topic_kinds
        scopes = self._topics.get(lang) if combine and any(h[2].kind in kinds for h in hits) else None
        spans = scopes.spans(norm) if scopes is not None else None
        if spans:  # a question's signs and symptoms in a topic clause describe, they do not present
            hits = [h for h in hits if h[2].kind not in kinds or not any(lo <= h[0] < hi for lo, hi in spans)]
        for start, term, group in hits:
            key = (term, name := group.name)
            if key not in evidence:  # hits come in text order: the stem's wins
                if options < 0 and name in sensitive:
                    options = options_start(norm)
                field, value, severity, rank = items[name][0 <= options <= start]
                evidence[key] = {"term": term, field: value, "severity": severity}
                strength[key] = rank
                first_term.setdefault(group.kind, term)
        if not combine:
            return list(evidence.values())
        opened = {i for kind in first_term for i in self._opened_by.get(kind, ())}
        for combo, _ in (self._combinations[i] for i in sorted(opened)) if opened else ():
            found = [next((first_term[k] for k in slot if k in first_term), None) for slot in combo.requires]
            if all(found):
                key = ("+".join(found), combo.name)
                evidence[key] = {"term": key[0], "category": combo.category, "severity": combo.severity}
                strength[key] = _strength(evidence[key])
        return [evidence[key] for key in sorted(evidence, key=strength.__getitem__, reverse=True)]

    def _label(self, evidence: list[dict[str, str]], lang: str) -> RiskLabel:
        level = evidence[0]["severity"] if evidence else "low"  # evidence comes strongest first
        found = {e.get("category") for e in evidence}
        categories = [c for c in RISK_CATEGORIES if c in found]
        return RiskLabel(
            level, categories, self._concern(evidence, lang) if level != "low" else None, evidence
        )

    def _concern(self, evidence: list[dict[str, str]], lang: str) -> str | None:
        """Text from the strongest evidence that has a concern template (a bare topic has none)."""
        keys = [e.get("category") or e.get("kind") for e in evidence]
        key = next((key for key in keys if key in self._concern_keys), None)
        if key is None:
            return None
        terms = [e["term"] for e, each in zip(evidence, keys, strict=True) if each == key][:3]
        return self.lexicon.concerns[key][lang].format(terms=("、" if lang == "zh" else ", ").join(terms))

    def classify_row(
        self, question: str, context: str, lang: str, *, weak_evidence: bool = True
    ) -> RiskLabel:
        """Label from the question; context (reasoning + answer) may add only uncategorised evidence
        up to medium, because a reference answer's differential ("if chest pain, call 120") describes
        the answer, not the risk of the prompt the model will be given. weak_evidence=False reads the
        context only for what can change level, categories or concern (the evidence then lacks the rest)."""
        question_norm = normalize(question or "", lang)
        primary = self._with_acuity(self._evidence(question_norm, lang), question_norm, lang)
        kinds = None if weak_evidence else self._deciding_kinds(primary)
        if kinds is not None and not kinds:
            return self._label(primary, lang)
        norm = normalize(context or "", lang)
        groups = None
        if kinds is not None:
            groups, plain = self._context_groups(kinds)
            if plain != groups and options_start(norm) == len(norm):
                # no answer options: a group with a category or above medium adds nothing that passes below
                if not plain:
                    return self._label(primary, lang)
                groups = plain
        context_evidence = self._evidence(norm, lang, combine=False, groups=groups)
        if not context_evidence:
            return self._label(primary, lang)
        seen = {(e["term"], e.get("kind")) for e in primary}
        # unsorted is enough: the sort below is stable and extras never outrank each other by category
        extra = [
            e
            for e in context_evidence
            if "kind" in e and SEVERITY_RANK[e["severity"]] <= _MEDIUM and (e["term"], e["kind"]) not in seen
        ]
        return self._label(sorted(primary + extra, key=_strength, reverse=True) if extra else primary, lang)

    def _context_groups(self, kinds: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
        """The groups of `kinds`, and those of them whose hits count alike outside answer options."""
        if kinds not in self._kind_groups:
            groups = frozenset().union(*(self._group_names[k] for k in kinds))
            self._kind_groups[kinds] = (groups, groups - self._option_sensitive)
        return self._kind_groups[kinds]

    def _deciding_kinds(self, primary: list[dict[str, str]]) -> frozenset[str] | None:
        """The kinds whose context evidence can still change level or concern.

        Context adds kinds at most medium, placed after the question's equals: below medium, any kind
        that can raise the level (a low kind cannot); with the level at least medium, only the concern
        can change - through templated kinds when the question has no templated evidence, or through
        the concern's own kind while it has fewer than three terms.
        """
        if not primary or SEVERITY_RANK[primary[0]["severity"]] < _MEDIUM:
            return self._raising_kinds
        keys = [e.get("category") or e.get("kind") for e in primary]
        top = next((i for i, key in enumerate(keys) if key in self._concern_keys), None)
        if top is None:
            return self._templated_kinds
        if SEVERITY_RANK[primary[top]["severity"]] < _MEDIUM:
            return self._raising_kinds
        if keys[top] not in self._group_names:  # a category: context evidence is never one
            return frozenset()
        same = sum(
            key == keys[top] and SEVERITY_RANK[e["severity"]] >= _MEDIUM
            for e, key in zip(primary, keys, strict=True)
        )
        return frozenset([keys[top]]) if same < 3 else frozenset()


def _capped(evidence: list[dict[str, str]], which: Any) -> list[dict[str, str]]:
    """The evidence with each item `which` selects, when above medium, made a plain medium kind."""
    if not any(which(e) and SEVERITY_RANK[e["severity"]] > _MEDIUM for e in evidence):
        return evidence
    out = [
        {"term": e["term"], "kind": "request", "severity": "medium"}
        if which(e) and SEVERITY_RANK[e["severity"]] >= _MEDIUM
        else e
        for e in evidence
    ]
    return sorted(out, key=_strength, reverse=True)


def _item(group: TermGroup, in_options: bool) -> tuple[str, str, str, tuple[int, int]]:
    """What a hit of the group adds to its term: (field, value, severity) and that evidence's strength;
    in answer options only the plain kind counts, at most medium."""
    if in_options and (group.category or SEVERITY_RANK[group.severity] > _MEDIUM):
        field, value, severity = "kind", group.kind, "medium"
    elif group.category:
        field, value, severity = "category", group.category, group.severity
    else:
        field, value, severity = "kind", group.kind, group.severity
    return field, value, severity, _strength({field: value, "severity": severity})


def _strength(evidence: dict[str, str]) -> tuple[int, int]:
    """Severity first; at equal severity a safety category beats a plain kind, in canonical order."""
    return SEVERITY_RANK[evidence["severity"]], _CATEGORY_RANK.get(evidence.get("category"), 0)


def label_row(
    row: dict[str, Any], classifier: RiskClassifier, weak_evidence: bool = True
) -> RiskLabel | None:
    """The row's label, or None for a curated row (row["labelled"] with a risk_level) that keeps its own."""
    if row.get("labelled") and row.get("risk_level"):
        return None
    lang = row.get("lang")
    if lang not in LANGS:
        raise ValueError(
            f"row {row.get('id', '?')}: lang {lang!r} is not one of {LANGS}; fix the cleanup stage output"
        )
    context = f"{row.get('think') or ''}\n{row.get('answer') or ''}"
    return classifier.classify_row(str(row.get("question") or ""), context, lang, weak_evidence=weak_evidence)


def apply_label(row: dict[str, Any], label: RiskLabel | None) -> dict[str, Any]:
    """A copy of the row with the label's risk fields (a curated row keeps its own)."""
    out = dict(row)
    if label is None:
        out.setdefault("safety_categories", [])
        out.setdefault("safety_concern", None)
    else:
        out.update(
            risk_level=label.risk_level,
            safety_categories=label.safety_categories,
            safety_concern=label.safety_concern,
        )
    return out


def iter_labelled(
    rows: Iterable[dict[str, Any]], classifier: RiskClassifier
) -> Iterator[tuple[dict[str, Any], RiskLabel | None]]:
    """Yield (labelled copy of row, label); curated rows (row["labelled"]) pass through with label None."""
    for row in rows:
        label = label_row(row, classifier)
        yield apply_label(row, label), label


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
        "categories": {c: categories.get(c, 0) for c in RISK_CATEGORIES},
    }


def trim(label: RiskLabel | None, min_rank: int = SEVERITY_RANK["high"]) -> RiskLabel | None:
    """The label with only its high and critical evidence: all a file summary reads, a fraction to send."""
    if label is None:
        return None
    strong = [e for e in label.evidence if SEVERITY_RANK[e["severity"]] >= min_rank]
    return RiskLabel(label.risk_level, label.safety_categories, label.safety_concern, strong)
