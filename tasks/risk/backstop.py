"""A learned backstop for harmful intent: logistic regression over word and character n-grams.

The intent rules (tasks/risk/intent.py) fire on compositions of cue classes; a fresh writer still finds
phrasings no class lists. The backstop scores a question by the weights of its n-grams (en: words and
word pairs; zh: character pairs, plus any ascii words), trained by tasks/risk/train_backstop.py on
written harmful requests and benign look-alikes (data/rules/intent_backstop_train.jsonl), the public
MedSafetyBench training split when present, and benign medical questions (the over-refusal set, the
medical-o1 samples). It raises a question to high harmful_intent only when no rule fired, no rights,
safety or myth frame is present, and its probability reaches the language's threshold (chosen on the dev
probe sets for at most 5% false alarms on benign questions). Its evidence names the n-grams that weighed
most, so a label can be explained. Pure: no numpy at inference, only a dict of weights.

The same model, trained on critical versus mild patient questions (data/rules/acuity_backstop.json), backs
up the acuity scorer (tasks/risk/acuity.py): it raises a patient's question the rules left below high to
high, or to critical above a second threshold (`critical_thresholds`).
"""

from __future__ import annotations

import math
import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

_EN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+")
_ZH_RUN = re.compile(r"[\u4e00-\u9fff]+")
_ASCII_WORD = re.compile(r"[a-z]{2,}")
# en function words: as unigrams they say more about a source's style than about intent (word pairs keep them)
_STOP = frozenset(
    "a an the and or but if of to in on at for from by with as is are was were be been am it its this that "  # noqa: SIM905
    "these those there here i me my we our you your he him his she her they them their what which who how "
    "when where why do does did can could would should will so than then too very just also about into up "
    "out not no any some all".split()
)
# zh question frames: "how", "can", "what" say nothing about intent, and harmful requests in the training
# data are questions far more often than the benign ones
_ZH_STOP = frozenset(
    "怎么 么才 才能 如何 怎样 么样 什么 么药 可以 以吗 能不 不能 能否 有没 没有 有什 吗? 请问 "  # noqa: SIM905
    "一下 应该 该怎 么办 是不 不是 多少 少量 哪些 哪种 哪里 为什 么会 我想 想问 问一 帮我 给我".split()
)


def features(norm: str, lang: str) -> list[str]:
    """The distinct n-gram features of a normalized text, in first-seen order."""
    out: dict[str, None] = {}
    if lang == "en":
        words = [w.replace("'", "") for w in _EN_WORD.findall(norm)]
        for i, word in enumerate(words):
            if word not in _STOP:
                out[f"w:{word}"] = None
            if i and not (word in _STOP and words[i - 1] in _STOP):  # "how can", "do i": a frame
                out[f"b:{words[i - 1]} {word}"] = None
    else:
        for run in _ZH_RUN.findall(norm):
            for i in range(len(run) - 1):
                if (pair := run[i : i + 2]) not in _ZH_STOP and pair[0] != "么":  # 怎么让, 怎么把: a frame
                    out[f"c:{pair}"] = None
        for word in _ASCII_WORD.findall(norm):
            out[f"w:{word}"] = None
    return list(out)


class BackstopWeights(BaseModel):
    """The trained model as shipped (data/rules/intent_backstop.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trained_by: str = Field(description="The command that reproduces this file.")
    sources: dict[str, int] = Field(description="Training rows per source.")
    bias: float
    thresholds: dict[str, float] = Field(description="Probability from which a question is raised, per lang.")
    critical_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Probability from which a question is raised to critical, per lang (the acuity "
        "backstop; none: never critical).",
    )
    weights: dict[str, float] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> BackstopWeights:
        if bad := sorted(set(self.thresholds) - {"zh", "en"}):
            raise ValueError(f"backstop thresholds name unknown language(s) {bad}")
        if any(not 0.0 < t <= 1.0 for t in self.thresholds.values()):
            raise ValueError(f"backstop thresholds must lie in (0, 1]: {self.thresholds}")
        for lang, t in self.critical_thresholds.items():
            if not self.thresholds.get(lang, 2.0) <= t <= 1.0:
                raise ValueError(
                    f"backstop critical threshold for {lang!r} ({t}) must lie between its threshold "
                    f"({self.thresholds.get(lang)}) and 1"
                )
        return self


class Backstop:
    """Scores a normalized question; `explain` gives the n-grams that pushed it up most."""

    def __init__(self, model: BackstopWeights) -> None:
        self.model = model
        self._weights = model.weights

    def probability(self, norm: str, lang: str) -> tuple[float, list[tuple[str, float]]]:
        """The probability of harmful intent and each known feature's contribution (largest first)."""
        feats = features(norm, lang)
        if not feats:
            return 0.0, []
        scale = 1.0 / math.sqrt(len(feats))  # rows are L2-normalized binary vectors, as in training
        weights = self._weights
        parts = [(f, w * scale) for f in feats if (w := weights.get(f))]
        z = self.model.bias + sum(p for _, p in parts)
        p = 1.0 / (1.0 + math.exp(-z)) if z > -50 else 0.0
        return p, sorted(parts, key=lambda fp: fp[1], reverse=True)

    def fires(self, norm: str, lang: str) -> tuple[float, str] | None:
        """(probability, "top+n+grams") when the question reaches its language's threshold, else None."""
        threshold = self.model.thresholds.get(lang)
        if threshold is None:
            return None
        p, parts = self.probability(norm, lang)
        if p < threshold:
            return None
        top = [f.split(":", 1)[1] for f, c in parts[:3] if c > 0]
        return p, "+".join(top)

    def level(self, norm: str, lang: str) -> tuple[str, str] | None:
        """("critical" or "high", "top+n+grams") when the question reaches a threshold, else None."""
        fired = self.fires(norm, lang)
        if fired is None:
            return None
        critical = self.model.critical_thresholds.get(lang)
        return ("critical" if critical is not None and fired[0] >= critical else "high"), fired[1]
