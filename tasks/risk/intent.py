"""Intent: harmful requests and self-harm from a composition of cue classes, not from whole phrases.

The lexicon's harmful-intent groups name phrasings ("poison someone", 给同事的水里下药); a fresh writer
words the same request differently ("what can I put in my husband's drink so he doesn't notice"). The
intent scorer instead looks for small classes of cues and fires a rule when one cue of each of its slots
is present, in either language:

- an act against another person: giving, slipping or mixing something (`administer`), a sedating or
  harmful agent (`agent`), withholding a dependent's medicine or help (`withhold`), a covert cue ("she
  won't know", 尝不出来, "would anyone be able to tell") and a target (`person`: someone, my husband,
  a patient, 老人, 她);
- an act against a control: a control object (a prescription, a sick note, a lab report, the drug count)
  and a manipulation (edit, forge, PS, 改成, "make it look"), a detection check (a drug test, the
  system, autopsy) to get past, or a controlled drug to divert (sell, 多开, several doctors);
- deceiving or turning away patients: a script to stop treatment for a product, refusing or screening
  out a group (HIV, 乙肝, pregnancy);
- self-harm: a method (cut, how many pills) with hiding it or "not waking up"; passive suicidal ideation
  with a final preparation (giving things away, letters, 后事).

A role ("I'm a nurse"), fiction or "hypothetically" does not excuse a request. Exam vignettes (`skip`) are
left to the lexicon's groups. The classes and rules live in the lexicon (`intent:` in
data/rules/risk_lexicon.yaml) and are versioned with it. Pure and free of Prefect; texts arrive normalized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.core.records import RISK_CATEGORIES
from tasks.risk.backstop import Backstop, BackstopWeights
from tasks.risk.cues import alternation, check_cues

Lang = Literal["zh", "en"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntentClass(_Strict):
    name: str = Field(min_length=1)
    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)


class IntentRule(_Strict):
    name: str = Field(min_length=1)
    requires: list[list[str]] = Field(min_length=1, description="Slots: one class of each must be present.")
    unless: list[str] = Field(
        default_factory=list, description="Classes that stop the rule (a safety frame)."
    )
    category: str
    severity: Literal["high", "critical"]


class IntentRules(_Strict):
    skip: dict[Lang, list[str]] = Field(default_factory=dict, description="Exam wording: not scored.")
    classes: list[IntentClass] = Field(min_length=1)
    rules: list[IntentRule] = Field(min_length=1)
    excuses: list[str] = Field(
        default_factory=list,
        description="Classes (a rights or safety question, the person's own medicine) that, when no rule "
        "fires, turn the groups' harmful_intent evidence into a plain medium kind.",
    )
    myths: list[str] = Field(
        default_factory=list,
        description="Classes of a hearsay or myth question ('is it true that...', 真的假的): when no rule "
        "fires, the question is about a claim, not a presentation, and stays at most medium.",
    )
    backstop_unless: list[str] = Field(
        default_factory=list,
        description="Classes that keep the learned backstop from raising a question (a rights, safety, "
        "myth or study frame, a question about what caused an illness).",
    )
    lowers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Protective frames: a class (reporting wrongdoing, an ethics question, disposing of or "
        "storing medicines, giving a child its medicine) and the categories whose high evidence it turns "
        "into a plain medium kind, even when an intent rule fired. Never critical evidence, never "
        "mental_health or emergency.",
    )
    backstop: BackstopWeights | str | None = Field(
        default=None,
        description="A learned harmful-intent backstop (tasks/risk/backstop.py); in the YAML the name of "
        "its weights file next to the lexicon, which load_lexicon reads (a name left unread: no backstop).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> IntentRules:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"intent class names must be unique: {names}")
        if unknown := sorted(set(self.excuses) - set(names)):
            raise ValueError(f"intent excuses name unknown class(es) {unknown}")
        if unknown := sorted(set(self.myths) - set(names)):
            raise ValueError(f"intent myths name unknown class(es) {unknown}")
        if unknown := sorted(set(self.backstop_unless) - set(names)):
            raise ValueError(f"intent backstop_unless names unknown class(es) {unknown}")
        if unknown := sorted(set(self.lowers) - set(names)):
            raise ValueError(f"intent lowers names unknown class(es) {unknown}")
        for name, categories in self.lowers.items():
            if bad := sorted(set(categories) - (set(RISK_CATEGORIES) - {"mental_health", "emergency"})):
                raise ValueError(
                    f"intent lowers {name!r}: {bad} cannot be lowered (a category other than "
                    "mental_health and emergency)"
                )
        for rule in self.rules:
            used = {n for slot in rule.requires for n in slot} | set(rule.unless)
            if unknown := sorted(used - set(names)):
                raise ValueError(f"intent rule {rule.name!r} names unknown class(es) {unknown}")
            if rule.category not in RISK_CATEGORIES:
                raise ValueError(
                    f"intent rule {rule.name!r}: category {rule.category!r} is not one of {RISK_CATEGORIES}"
                )
        check_cues(
            "intent", [("skip", self.skip), *((c.name, {"zh": c.zh, "en": c.en}) for c in self.classes)]
        )
        return self


@dataclass(frozen=True)
class IntentHit:
    """A rule that fired: its category, severity and the cues of its slots ("put in+drink+husband")."""

    rule: str
    category: str
    severity: str
    term: str


class IntentScorer:
    """Finds the intent rules a normalized text in one language fires."""

    def __init__(self, rules: IntentRules, lang: str) -> None:
        self.rules = rules
        self._skip = alternation(rules.skip.get(lang, []), lang)
        self._classes = {
            c.name: pattern for c in rules.classes if (pattern := alternation(getattr(c, lang), lang))
        }
        self.lang = lang
        model = rules.backstop
        self._backstop = Backstop(model) if isinstance(model, BackstopWeights) else None

    def cues(self, norm: str) -> dict[str, str]:
        """Each class present in the text, with its first cue."""
        found = {}
        for name, pattern in self._classes.items():
            if match := pattern.search(norm):
                found[name] = match.group(0).strip()
        return found

    def hits(self, norm: str) -> list[IntentHit]:
        """The rules the text fires (none for exam wording), strongest first."""
        return self.read(norm)[0]

    def read(self, norm: str, excuses: bool = True) -> tuple[list[IntentHit], str | None]:
        """The rules the text fires, strongest first, and "myth" or "excused" when such a class is present
        (else None; excuses=False skips looking for excuses). Classes are searched lazily, slot by slot:
        most texts fail a rule's first slot, so most classes are never searched."""
        if not norm or (self._skip is not None and self._skip.search(norm)):
            return [], None
        seen: dict[str, str | None] = {}

        def cue(name: str) -> str | None:
            if name not in seen:
                pattern = self._classes.get(name)
                match = pattern.search(norm) if pattern is not None else None
                seen[name] = match.group(0).strip() if match else None
            return seen[name]

        out = []
        for rule in self.rules.rules:
            found = []
            for slot in rule.requires:
                term = next((t for n in slot if (t := cue(n))), None)
                if term is None:
                    break
                found.append(term)
            else:
                if not any(cue(name) for name in rule.unless):
                    out.append(IntentHit(rule.name, rule.category, rule.severity, "+".join(found)))
        frame = None
        if not out:
            if any(cue(name) for name in self.rules.myths):
                frame = "myth"
            elif excuses and any(cue(name) for name in self.rules.excuses):
                frame = "excused"
        return sorted(out, key=lambda h: h.severity == "critical", reverse=True), frame

    def lowered(self, norm: str) -> tuple[frozenset[str], str]:
        """The categories the text's protective frames lower (`lowers`) and the first frame's cue
        (empty when none; exam wording has none)."""
        if not self.rules.lowers or (self._skip is not None and self._skip.search(norm)):
            return frozenset(), ""
        categories: set[str] = set()
        first = ""
        for name, which in self.rules.lowers.items():
            pattern = self._classes.get(name)
            if pattern is not None and (match := pattern.search(norm)):
                categories.update(which)
                first = first or match.group(0).strip()
        return frozenset(categories), first

    def any_class(self, norm: str, names: tuple[str, ...] | list[str]) -> bool:
        """Whether any of the named classes is present in the text."""
        return any((p := self._classes.get(name)) is not None and p.search(norm) for name in names)

    def backstop(self, norm: str) -> IntentHit | None:
        """The learned backstop's hit (high harmful_intent, its top n-grams as the term) when it reaches its
        threshold on a question that is not exam wording and has no `backstop_unless` class."""
        if self._backstop is None or not norm or (self._skip is not None and self._skip.search(norm)):
            return None
        fired = self._backstop.fires(norm, self.lang)
        if fired is None:
            return None
        for name in self.rules.backstop_unless:
            pattern = self._classes.get(name)
            if pattern is not None and pattern.search(norm):
                return None
        return IntentHit("backstop", "harmful_intent", "high", fired[1] or "backstop")
