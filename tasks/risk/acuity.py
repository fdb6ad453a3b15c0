"""Acuity: how urgent a patient's own words sound, from classes of cues rather than whole phrases.

Word lists name presentations ("blood coming out of my ear"); people describe the same emergency in
endless ways. The acuity scorer instead counts small classes of cues that compose: an alarming finding
("blood", "swollen", 肿, 脓, "passed out"), a vital function failing ("can't breathe", 叫不醒), the body
site, who it happens to (a baby, a pregnancy, an elderly parent), how it happened (fell, swallowed,
injected, 被咬), how fast or how bad (suddenly, getting worse, 剧痛, 止不住), and what plays it down
("a little", 有点, 已经好了). Each class has a weight and a cap on how many distinct hits count; the sum
against two thresholds gives high or critical. One of the lexicon's `alarming` sets of classes must be
present (a finding, a vital sign, an absent function, a symptom with intensity or in a baby, a non-food
swallowed); critical needs two findings or a `critical_with` set (a vital sign, ...). Exam vignettes
("A 45-year-old man presents with...", 患者男, 最可能的诊断) and clinical wording are skipped: the
scorer reads a patient's words, and the lexicon's groups already know clinical wording.

The classes live in the lexicon (data/rules/risk_lexicon.yaml, `acuity:`), so they are versioned with it.
Pure and free of Prefect; texts arrive normalized (tasks/risk/lexicon.py normalize).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.risk.backstop import Backstop, BackstopWeights
from tasks.risk.cues import alternation, check_cues
from tasks.risk.topics import TopicScopes

Lang = Literal["zh", "en"]
# two findings allow critical; the other classes act through their weights, `alarming`, `critical_with`
REQUIRED_CLASSES = ("finding",)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CueClass(_Strict):
    name: str = Field(min_length=1)
    weight: int = Field(description="Added for each distinct hit, up to `cap` hits (negative: dampens).")
    cap: int = Field(default=1, gt=0)
    negatable: bool = Field(default=False, description="A hit after a negation cue does not count.")
    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)


class AcuityRules(_Strict):
    high: int = Field(gt=0, description="Score from which a patient's question is high.")
    critical: int = Field(
        gt=0, description="Score from which it is critical (with a vital sign or 2 findings)."
    )
    negation: dict[Lang, list[str]] = Field(
        description="Cues that negate the next few words (zh: characters)."
    )
    negation_window: dict[Lang, int]
    skip: dict[Lang, list[str]] = Field(description="Exam-vignette or clinical wording: not scored.")
    alarming: list[list[str]] = Field(
        min_length=1, description="Sets of classes, one of which must all be present for any level."
    )
    critical_with: list[list[str]] = Field(
        default_factory=list, description="Sets of classes that allow critical (besides two findings)."
    )
    high_with: list[list[str]] = Field(
        default_factory=list,
        description="Sets of classes that give at least high on their own, whatever the score, when no "
        "dampener is present (1.11.0): one strong sign of the asker's own body asked about now ('Bleeding "
        "from ear, what do?'), which a short title cannot back with a site, a duration and a second cue.",
    )
    classes: list[CueClass] = Field(min_length=1)
    undampened_by: list[list[str]] = Field(
        default_factory=list,
        description="Sets of classes in whose presence negative weights (dampeners) do not count: harm "
        "that shows later (an overdose, a bleed on a blood thinner) is not reassured by 'I feel fine'.",
    )
    backstop: BackstopWeights | str | None = Field(
        default=None,
        description="A learned acuity backstop (tasks/risk/backstop.py, critical vs mild patient questions); "
        "in the YAML the name of its weights file next to the lexicon, which load_lexicon reads.",
    )
    backstop_unless: list[str] = Field(
        default_factory=list,
        description="Intent classes (a rights, myth or study frame) that keep the acuity backstop silent.",
    )
    neutral: dict[Lang, list[str]] = Field(
        default_factory=dict,
        description="Phrases whose words are no cue: a size comparison ('coin sized', 硬币大小), a limb that "
        "'fell asleep', hours of screen time. Words inside a dampener's match ('好多了') are no cue either.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AcuityRules:
        names = [c.name for c in self.classes]
        if missing := [n for n in REQUIRED_CLASSES if n not in names]:
            raise ValueError(f"acuity classes {missing} are missing; the rules need {list(REQUIRED_CLASSES)}")
        if len(set(names)) != len(names):
            raise ValueError(f"acuity class names must be unique: {names}")
        for needed in (*self.alarming, *self.critical_with, *self.undampened_by, *self.high_with):
            if unknown := sorted(set(needed) - set(names)):
                raise ValueError(f"acuity alarming/critical_with name unknown class(es) {unknown}")
        if self.critical < self.high:
            raise ValueError(f"acuity critical ({self.critical}) is below high ({self.high})")
        check_cues(
            "acuity",
            [
                ("skip", self.skip),
                ("neutral", self.neutral),
                *((c.name, {"zh": c.zh, "en": c.en}) for c in self.classes),
            ],
        )
        return self


@dataclass(frozen=True)
class Acuity:
    """A question's acuity: its score, the level it reaches (None below high) and the cues behind it."""

    score: int
    level: str | None
    cues: tuple[str, ...]


class AcuityScorer:
    """Scores normalized question text in one language against the lexicon's acuity rules."""

    def __init__(self, rules: AcuityRules, lang: str, topics: TopicScopes | None = None) -> None:
        self.rules = rules
        self.lang = lang
        # clauses about the past, someone else or hearsay (tasks/risk/topics.py): no cue there presents
        self._topics = topics
        self._skip = alternation(rules.skip.get(lang, []), lang)
        self._negation = alternation(rules.negation.get(lang, []), lang)
        self._window = rules.negation_window.get(lang, 3)
        # the classes that open an alarming set are scored first: without one of them nothing else matters
        gates = {needed[0] for needed in (*rules.alarming, *rules.high_with)}
        # a complaint for the backstop's gate: a cue of a class that opens a one-class set or several sets
        # (a finding, a symptom); a class that opens only one longer set (a verb of taking) needs the rest
        # of it ("took" alone, as in "took my life savings", names no complaint; "took 20 pills" does)
        opens = [needed[0] for needed in rules.alarming]
        self._complaint_sets = [
            tuple(needed[:1]) if len(needed) == 1 or opens.count(needed[0]) > 1 else tuple(needed)
            for needed in rules.alarming
        ]
        ordered = sorted(rules.classes, key=lambda c: c.name not in gates)
        self._classes = [
            (c, c.name in gates, pattern)
            for c in ordered
            if (pattern := alternation(getattr(c, lang), lang)) is not None
        ]
        # spans no cue may use: neutral phrases and the dampeners' own matches ("好多了" holds "好多")
        masks = [
            *rules.neutral.get(lang, []),
            *(t for c in rules.classes if c.weight < 0 for t in getattr(c, lang)),
        ]
        self._mask = alternation(masks, lang)
        model = rules.backstop
        self._backstop = Backstop(model) if isinstance(model, BackstopWeights) else None
        self._last: tuple[str | None, Acuity] = (None, Acuity(0, None, ()))

    def backstop(self, norm: str) -> tuple[str, str] | None:
        """The learned backstop's level ("high"/"critical") and top n-grams, for a question that is not
        clinical wording (the scorer's `skip`). A question that names no complaint the rules see (no cue
        of a class that opens an `alarming` set, or only negated ones: "no fever, no chest pain", small
        talk; a verb of taking without what was taken) is raised only above the critical threshold, and
        then to high. None below its threshold or without a backstop."""
        if self._backstop is None or not norm or (self._skip is not None and self._skip.search(norm)):
            return None
        hit = self._backstop.level(norm, self.lang)
        if hit is None:
            return None
        seen = {cue.split(":", 1)[0] for cue in self.score(norm).cues}
        if any(all(name in seen for name in needed) for needed in self._complaint_sets):
            return hit
        return ("high", hit[1]) if hit[0] == "critical" else None  # no complaint seen: only a sure model

    def score(self, norm: str) -> Acuity:
        """The text's acuity; 0 and no level for clinical wording or when no alarming class is present.
        The last text's acuity is kept: a question is read up to three times (rules, frames, backstop)."""
        last = self._last  # read once: another thread may replace it
        if norm == last[0]:
            return last[1]
        acuity = self._score(norm)
        self._last = (norm, acuity)
        return acuity

    def _score(self, norm: str) -> Acuity:
        if self._skip is not None and self._skip.search(norm):
            return Acuity(0, None, ())
        total, cues, counts = 0, [], {}
        masked: list[tuple[int, int]] | None = None  # found on the first cue: most texts never need it
        for cue_class, gate, pattern in self._classes:
            if not gate and not counts:
                return Acuity(0, None, ())
            seen: list[str] = []
            for match in pattern.finditer(norm):
                term = match.group(0)
                if term in seen or any(term in s or s in term for s in seen):
                    continue  # "bleeding" and "blood" in one clause still count as different findings
                if cue_class.weight >= 0:  # a weight-0 class (high_with's) is masked alike
                    if masked is None:
                        masked = [m.span() for m in self._mask.finditer(norm)] if self._mask else []
                        if self._topics is not None:
                            masked += self._topics.spans(norm, whole_only=True)
                    if any(lo < match.end() and match.start() < hi for lo, hi in masked):
                        continue  # inside a neutral phrase or a dampener
                if cue_class.negatable and self._negated(norm, match.start()):
                    continue
                seen.append(term)
                if len(seen) >= cue_class.cap:
                    break
            if seen:
                counts[cue_class.name] = len(seen)
                total += cue_class.weight * len(seen)
                cues += [f"{cue_class.name}:{t.strip()}" for t in seen]
        if any(all(name in counts for name in needed) for needed in self.rules.undampened_by):
            dampened = {c.name: c.weight for c in self.rules.classes if c.weight < 0 and c.name in counts}
            total -= sum(weight * counts[name] for name, weight in dampened.items())
            cues = [cue for cue in cues if cue.split(":", 1)[0] not in dampened]
        level = None
        if any(all(name in counts for name in needed) for needed in self.rules.alarming):
            grave = counts.get("finding", 0) >= 2 or any(
                all(name in counts for name in needed) for needed in self.rules.critical_with
            )
            if total >= self.rules.critical and grave:
                level = "critical"
            elif total >= self.rules.high:
                level = "high"
        strong = any(all(name in counts for name in needed) for needed in self.rules.high_with)
        if (
            level is None
            and strong
            and not any(c.weight < 0 and c.name in counts for c in self.rules.classes)
        ):
            level = "high"  # one strong sign asked about now; a dampener ("a little") keeps the score's level
        return Acuity(total, level, tuple(cues))

    def _negated(self, norm: str, start: int) -> bool:
        """A negation cue shortly before the hit, in the same clause."""
        if self._negation is None:
            return False
        if self.lang == "zh":
            before = norm[max(0, start - self._window) : start]
        else:
            before = " ".join(norm[:start].split()[-self._window :]) + " "
        before = re.split(r"[,.;!?，。；！？]", before)[-1]
        return bool(self._negation.search(before))
