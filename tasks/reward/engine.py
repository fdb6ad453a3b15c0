"""The reward engine: the rule score of one response, and rules plus the teacher over batches.

`total = clip(w_rules * rules + w_teacher * teacher, -3, 2)`; with the teacher off its weight is 0.
The rules read the answer clause by clause, so a warning ("不建议自行购买", "do not take it") is
never mistaken for advice. No torch and no Prefect here: `medsafe score` stays light.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.core.config import RewardConfig
from tasks.core.text import split_think
from tasks.reward.rules import SafetyRules
from tasks.reward.safety_checks import prompt_contexts, safety_violations
from tasks.reward.word_lists import ScannedText

if TYPE_CHECKING:
    from tasks.reward.teacher import Teacher


_UNIT_RUNS = re.compile(r"[\u4e00-\u9fff]+|[A-Za-z0-9]+")


_DEFAULT_SAFETY_WEIGHT = RewardConfig.model_fields["safety_weight"].default


@dataclass
class RuleScore:
    """The rule half of one reward, with its evidence and the evaluation flags."""

    rule_score: float
    violations: list[dict[str, str]]
    positives: list[str]
    has_think: bool
    hedged: bool
    emergency_referral: bool
    emergency_prompt: bool = False
    violation: bool = field(init=False)

    def __post_init__(self) -> None:
        self.violation = len(self.violations) > 0


def _length_term(a: ScannedText, unclosed: bool, rules: SafetyRules) -> float:
    cfg = rules.length
    units = sum(
        len(r) if r[0] >= "\u4e00" else 1 for r in _UNIT_RUNS.findall(a.text)
    )  # CJK chars + latin words
    if (
        unclosed
        or units > cfg["max_units"]
        or (units > 3 * cfg["min_units"] and _repetitive(a, cfg["max_repeat_share"]))
    ):
        return float(cfg["runaway_penalty"])
    return float(cfg["too_short_penalty"]) if units < cfg["min_units"] else 0.0


def _repetitive(a: ScannedText, max_share: float) -> bool:
    """A generation stuck in a loop: many sentences, most of them repeats."""
    bounds = a.sentences
    sentences = [
        t
        for t in (a.text[lo:hi].strip() for lo, hi in zip(bounds, [*bounds[1:], len(a.text)], strict=True))
        if t
    ]
    return len(sentences) >= 6 and 1 - len(set(sentences)) / len(sentences) > max_share


def score_rules(
    question: str,
    response: str,
    *,
    rules: SafetyRules,
    risk_level: str | None = None,
    safety_categories: list[str] | None = None,
    lang: str | None = None,
    safety_weight: float | None = None,
) -> RuleScore:
    """Score one response by the rules. `lang` is a hint only: every list is matched in zh and en at once."""
    del lang
    weight = _DEFAULT_SAFETY_WEIGHT if safety_weight is None else safety_weight
    parts = split_think(response)
    has_think, answer, unclosed = parts.has_think, parts.answer, parts.unclosed
    a, q = ScannedText(answer, rules.answer_lexicon), ScannedText(question, rules.prompt_lexicon)
    ctx = prompt_contexts(q, set(safety_categories or ()), risk_level, rules)
    referred = bool(a.affirmed("emergency.referral"))
    violations = safety_violations(a, q, ctx, rules, referred)
    negatable = ("referral", "emergency_action")
    positives = [
        n for n in rules.signals if (a.affirmed(f"signal.{n}") if n in negatable else a.of(f"signal.{n}"))
    ]
    score = (
        float(rules.format["think_bonus"] if has_think else rules.format["no_think_penalty"])
        + _length_term(a, unclosed, rules)
        + min(rules.bonus * len(positives), rules.bonus_cap)
        + weight * sum(rules.penalties[v["category"]] for v in violations)
    )
    return RuleScore(
        round(score, 4), violations, positives, has_think, "hedge" in positives, referred, ctx["emergency"]
    )


class RewardEngine:
    """Scores batches of (question, response) by the rules and, when given, the teacher."""

    def __init__(self, rules: SafetyRules, reward_cfg: RewardConfig, teacher: Teacher | None = None) -> None:
        self.rules, self.cfg, self.teacher = rules, reward_cfg, teacher

    def total(self, rule_score: float, teacher_score: float | None) -> float:
        """clip(w_rules * rules + w_teacher * teacher); an absent teacher has weight 0."""
        w_teacher = self.cfg.w_teacher if teacher_score is not None else 0.0
        raw = self.cfg.w_rules * rule_score + w_teacher * (teacher_score or 0.0)
        return round(min(max(raw, self.cfg.clip_min), self.cfg.clip_max), 4)

    def score_batch(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score items {id?, question, response, risk_level?, safety_categories?}; one dict per item."""
        scores = [
            score_rules(
                it["question"],
                it["response"],
                rules=self.rules,
                risk_level=it.get("risk_level"),
                safety_categories=it.get("safety_categories"),
                safety_weight=self.cfg.safety_weight,
            )
            for it in items
        ]
        judged = (
            self.teacher.judge_many([(it["question"], it["response"]) for it in items])
            if self.teacher
            else None
        )
        return [
            self._row(it, s, judged[i].overall if judged else None)
            for i, (it, s) in enumerate(zip(items, scores, strict=True))
        ]

    def _row(self, item: dict[str, Any], s: RuleScore, teacher_score: float | None) -> dict[str, Any]:
        """One item's breakdown: the rule score and its evidence, the teacher's score, the total."""
        return {
            "id": item.get("id"),
            "rule_score": s.rule_score,
            "violations": s.violations,
            "positives": s.positives,
            "teacher_score": teacher_score,
            "total": self.total(s.rule_score, teacher_score),
            "violation": s.violation,
            "emergency_referral": s.emergency_referral,
            "hedged": s.hedged,
            "has_think": s.has_think,
            "emergency_prompt": s.emergency_prompt,
        }

    def breakdown_fn(self) -> Callable[[list[str], list[str], list[dict]], list[dict[str, Any]]]:
        """A plain (questions, responses, metas) -> score rows callable, for the trainers' per-component
        logs."""

        def score(questions: list[str], responses: list[str], metas: list[dict]) -> list[dict[str, Any]]:
            items = [
                {**m, "question": q, "response": r}
                for q, r, m in zip(questions, responses, metas, strict=True)
            ]
            return self.score_batch(items)

        return score

    def as_reward_fn(self) -> Callable[[list[str], list[str], list[dict]], list[float]]:
        """A plain (prompts, responses, metas) -> totals callable for the RL trainers; a meta may carry the
        raw question.
        """

        def reward_fn(
            prompts: list[str], responses: list[str], metas: list[dict] | None = None
        ) -> list[float]:
            metas = metas or [{}] * len(prompts)
            items = [
                {**(m or {}), "question": (m or {}).get("question") or p, "response": r}
                for p, r, m in zip(prompts, responses, metas, strict=True)
            ]
            return [row["total"] for row in self.score_batch(items)]

        return reward_fn
