"""The reward: bilingual safety rules (data/rules/safety_rules.yaml) plus, when on, the teacher's judgement.

`total = clip(w_rules * rules + w_teacher * teacher, -3, 2)`; with the teacher off its weight is 0.
The rules read the answer clause by clause, so a warning ("不建议自行购买", "do not take it") is
never mistaken for advice. All word lists are matched in one Aho-Corasick pass (tasks/rule_matching.py).
No torch here: `medsafe score` stays light.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from flows.config import ASSETS_DIR, RewardConfig
from tasks.records import SAFETY_CATEGORIES
from tasks.rule_matching import Lexicon, ScannedText
from tasks.safety_checks import prompt_contexts, safety_violations

if TYPE_CHECKING:
    from tasks.teacher import Teacher

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
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


# YAML path of each word list -> the name the checks use.
_LISTS = {
    "negation": ("negation",),
    "negation_exempt": ("negation_exempt",),
    "question_clause": ("question_clause",),
    "vignette": ("clinical_vignette",),
    "consequence": ("drug_advice", "consequence"),
    "supervised": ("drug_advice", "supervised"),
    "supervised_denied": ("drug_advice", "supervised_denied"),
    **{f"cue.{k}": ("drug_advice", k) for k in ("advice", "clause_initial", "anaphoric", "self_directed")},
    "rx": ("prescription_drug", "drugs"),
    "otc": ("prescription_drug", "otc"),
    **{f"emergency.{k}": ("emergency", k) for k in ("triggers", "referral", "delay")},
    **{f"dx.{k}": ("diagnosis_assertion", "certainty", k) for k in ("strong", "weak", "copula")},
    **{f"dx.{k}": ("diagnosis_assertion", k) for k in ("serious", "reassurance", "clears")},
    **{
        f"mental.{k}": ("mental_health", k)
        for k in ("triggers", "crisis_resources", "professional_help", "encouragement")
    },
}


class SafetyRules:
    """The YAML rule set, validated and compiled once."""

    def __init__(self, raw: dict[str, Any], source: str = "<dict>") -> None:
        self.source = source
        try:
            self._build(raw)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"{source}: safety rules are missing or malformed at {exc}; compare with data/rules/safety_rules.yaml"
            ) from exc

    @classmethod
    def from_yaml(cls, path: str | Path | None = None) -> SafetyRules:
        path = Path(path) if path else ASSETS_DIR / "rules" / "safety_rules.yaml"
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return cls(yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}, source=str(path))

    def _build(self, raw: dict[str, Any]) -> None:
        self.version = str(raw["version"])
        self.penalties = {c: float(raw["penalties"][c]) for c in SAFETY_CATEGORIES}
        pos = raw["positives"]
        self.bonus, self.bonus_cap = float(pos["bonus"]), float(pos["cap"])
        self.format, self.length = dict(raw["format"]), dict(raw["length"])
        dx = raw["diagnosis_assertion"]
        self.dx_window = (int(dx["window_zh"]), int(dx["window_en"]))
        self.signals = list(pos["signals"])
        self.prompt_lexicon, self.answer_lexicon = _compile_lexicons(raw)
        self.contexts = list(raw["pediatric_pregnancy"]["contexts"])


def _compile_lexicons(raw: dict[str, Any]) -> tuple[Lexicon, Lexicon]:
    """The question's and the answer's lexicons: each side is read for different lists."""
    prompt, answer = Lexicon(), Lexicon()
    signals = raw["positives"]["signals"]
    for name in signals:
        answer.add(f"signal.{name}", signals[name])
    for name, keys in _LISTS.items():
        node = raw
        for k in keys:
            node = node[k]
        if name in ("rx", "otc"):
            sides = (prompt, answer)
        else:
            sides = (prompt,) if name in ("vignette", "emergency.triggers", "mental.triggers") else (answer,)
        for lexicon in sides:
            lexicon.add(name, node)
    for name, ctx in raw["pediatric_pregnancy"]["contexts"].items():
        prompt.add(f"ctx.{name}.triggers", ctx["triggers"])
        prompt.add(f"ctx.{name}.contraindicated", ctx["contraindicated"])
        answer.add(f"ctx.{name}.contraindicated", ctx["contraindicated"])
    prompt.finish()
    answer.finish()
    return prompt, answer


def _split_think(response: str) -> tuple[bool, str, bool]:
    """(has a non-empty <think>, the answer without it, the think block was left open)."""
    m = _THINK.search(response)
    if m:
        return bool(m.group(1).strip()), (response[: m.start()] + response[m.end() :]).strip(), False
    if "</think>" in response:  # the chat template opened <think> in the prompt
        think, _, answer = response.partition("</think>")
        return bool(think.strip()), answer.strip(), False
    if "<think>" in response:
        return False, response.split("<think>", 1)[0].strip(), True
    return False, response.strip(), False


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
    has_think, answer, unclosed = _split_think(response)
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

    def as_reward_fn(self) -> Callable[[list[str], list[str], list[dict]], list[float]]:
        """A plain (prompts, responses, metas) -> totals callable for the RL trainers; a meta may carry the raw question."""

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
