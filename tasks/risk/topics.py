"""Topic clauses: words that tell of the past, of someone else's illness, of hearsay or of a feared outcome.

A long worried question often names alarming words it does not present: "ever since a friend had a heart
attack at 40 I check my pulse", "three months ago I had a high fever, now my hair falls out", 网上说打嗝
可能是肿瘤, 会不会中毒. A marker (a time long ago, a death or family history, a third person's event,
hearsay, a feared outcome) makes its clause a topic: the lexicon's terms found there describe, they do
not present, and do not count - like negated terms, but only for the kinds that present (`kinds`: a sign,
a symptom, a disease; never a drug, a population, a crisis signal). `clause` markers cover their whole
clause, `after` markers the rest of it, `sentence` markers their clause and the rest of their sentence (a
past episode told over several clauses: "last Tuesday I had chest pain, sweating, tingling; the ER said all
normal"). A clause ends at punctuation or at a breaker that returns to the present ("but now", 现在, 刚才).
The acuity scorer skips the `clause` and `sentence` spans too (tasks/risk/acuity.py) and still reads the
rest: "my dad had a stroke two years ago and right now his face is drooping" is acute.
Only a question's terms are scoped, never a row's context.

The markers live in the lexicon (`topic_clauses:` in data/rules/risk_lexicon.yaml). Pure, no Prefect.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.risk.cues import alternation, check_cues

Lang = Literal["zh", "en"]
_ENDS = {"zh": re.compile(r"[，。；！？,.;!?：:\n]"), "en": re.compile(r"[,.;!?:\n]")}
_SENTENCE_ENDS = {"zh": re.compile(r"[。！？!?\n]"), "en": re.compile(r"(?:[.!?](?!\d)|\n)")}


class TopicClauses(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clause: dict[Lang, list[str]] = Field(
        default_factory=dict, description="Markers whose whole clause is a topic (the past, someone else)."
    )
    after: dict[Lang, list[str]] = Field(
        default_factory=dict, description="Markers after which the rest of the clause is a topic."
    )
    sentence: dict[Lang, list[str]] = Field(
        default_factory=dict,
        description="Markers whose clause and the rest of its sentence are a topic (a past episode told in "
        "several clauses, that the question itself says is over).",
    )
    breakers: dict[Lang, list[str]] = Field(
        default_factory=dict, description="Words that end a topic clause: a return to the present."
    )
    kinds: list[str] = Field(
        min_length=1,
        description="The group kinds a topic clause drops: what presents (a sign, a symptom, a disease); a "
        "drug, a population or a request frame still counts there ('amoxicillin left over from last year').",
    )

    @model_validator(mode="after")
    def _cues_compile(self) -> TopicClauses:
        check_cues(
            "topic_clauses",
            [
                ("clause", self.clause),
                ("after", self.after),
                ("sentence", self.sentence),
                ("breakers", self.breakers),
            ],
        )
        return self


class TopicScopes:
    """Finds the topic spans of a normalized question in one language."""

    def __init__(self, rules: TopicClauses, lang: str) -> None:
        self._clause = alternation(rules.clause.get(lang, []), lang)
        self._after = alternation(rules.after.get(lang, []), lang)
        self._sentence = alternation(rules.sentence.get(lang, []), lang)
        self._breaker = alternation(rules.breakers.get(lang, []), lang)
        self._ends, self._sentence_ends = _ENDS[lang], _SENTENCE_ENDS[lang]
        # the last text's spans (the word groups and the acuity scorer both ask for a question's spans)
        self._last: tuple[str | None, list[tuple[int, int, bool]]] = (None, [])

    def spans(self, norm: str, whole_only: bool = False) -> list[tuple[int, int]]:
        """(start, end) of each topic span; empty for most texts (no marker). whole_only: only the
        `clause` markers' spans (the acuity scorer's: a feared outcome may follow a real ingestion)."""
        last = self._last  # read once: another thread may replace it
        if norm != last[0]:
            last = (norm, self._spans(norm))
            self._last = last
        return [(lo, hi) for lo, hi, whole in last[1] if whole or not whole_only]

    def _spans(self, norm: str) -> list[tuple[int, int, bool]]:
        out = []
        for pattern, whole in ((self._clause, True), (self._after, False)):
            if pattern is None:
                continue
            for match in pattern.finditer(norm):
                lo = match.start() if not whole else self._clause_start(norm, match.start())
                out.append((lo, self._clause_end(norm, match.end()), whole))
        if self._sentence is not None:
            for match in self._sentence.finditer(norm):
                lo = self._clause_start(norm, match.start())
                out.append((lo, self._clause_end(norm, match.end(), self._sentence_ends), True))
        return out

    def _clause_start(self, norm: str, at: int) -> int:
        lo = max((m.end() for m in self._ends.finditer(norm, 0, at)), default=0)
        if self._breaker is not None:
            lo = max((m.end() for m in self._breaker.finditer(norm, lo, at)), default=lo)
        return lo

    def _clause_end(self, norm: str, at: int, ends: re.Pattern[str] | None = None) -> int:
        end = (ends or self._ends).search(norm, at)
        hi = end.start() if end else len(norm)
        if self._breaker is not None and (brk := self._breaker.search(norm, at, hi)):
            hi = brk.start()
        return hi
