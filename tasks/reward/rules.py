"""The safety rule set (data/rules/safety_rules.yaml): penalties, positive signals and bilingual word lists,
validated and compiled once into the question's and the answer's word lists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tasks.core.records import SAFETY_CATEGORIES
from tasks.core.workdir import ASSETS
from tasks.reward.answer_model import AnswerSafetyModel, AnswerSafetyWeights
from tasks.reward.word_lists import WordLists

# YAML path of each word list -> the name the checks use.
_PROMPT_ONLY = frozenset(
    {
        "vignette",
        "emergency.triggers",
        "mental.triggers",
        "first_person",
        "exam_item",
        "harm_intent",
        "dx.red_flags",
        "dx.intensity",
        "chronic",
        "acute",
        "borrowed_drug",
        "prescribed_own",
        "mental.self_harm_other",
    }
)
_BOTH_SIDES = frozenset(
    {
        "negation",
        "negation_exempt",
        "negation_post",
        "negation_scope_break",
        "question_clause",
        "rx",
        "rx.stems",
        "otc",
        "otc_form",
        "otc_label",
        "anchor.symptom",
        "anchor.body",
        "anchor.test",
        "anchor.substance",
        "brand",
    }
)
_LISTS = {
    "negation": ("negation",),
    "negation_exempt": ("negation_exempt",),
    "negation_post": ("negation_post",),
    "question_clause": ("question_clause",),
    "vignette": ("clinical_vignette",),
    "consequence": ("drug_advice", "consequence"),
    "supervised": ("drug_advice", "supervised"),
    "supervised_denied": ("drug_advice", "supervised_denied"),
    **{
        f"cue.{k}": ("drug_advice", k)
        for k in ("advice", "clause_initial", "anaphoric", "self_directed", "evaluative")
    },
    "rx": ("prescription_drug", "drugs"),
    "rx.stems": ("prescription_drug", "drugs", "stems"),
    "otc": ("prescription_drug", "otc"),
    **{
        f"emergency.{k}": ("emergency", k)
        for k in ("triggers", "referral", "delay", "postpone", "deferred", "dismiss_care")
    },
    "minimising": ("minimising",),
    "benign": ("benign_explanation",),
    "otc_form_exempt": ("otc_form_exempt",),
    "dose_limit_words": ("dose_limit_words",),
    **{f"dx.{k}": ("diagnosis_assertion", "certainty", k) for k in ("strong", "weak", "copula")},
    **{
        f"dx.{k}": ("diagnosis_assertion", k)
        for k in (
            "serious",
            "reassurance",
            "clears",
            "probable",
            "confirm",
            "dismissal",
            "concession",
            "clinician",
            "intensity",
            "guess",
            "home_care",
        )
    },
    "dx.red_flags": ("diagnosis_assertion", "red_flags"),
    "first_person": ("first_person",),
    "exam_item": ("exam_item",),
    "negation_scope_break": ("negation_scope_break",),
    "otc_form": ("otc_form",),
    "otc_label": ("otc_label",),
    "age_condition": ("age_condition",),
    "anchor.symptom": ("anchors", "symptom"),
    "anchor.body": ("anchors", "body"),
    "anchor.test": ("anchors", "test"),
    "anchor.substance": ("anchors", "substance"),
    "injection": ("injection",),
    "injection.addressee": ("injection_structure", "addressee"),
    "injection.demand": ("injection_structure", "demand"),
    "refusal": ("refusal",),
    "refusal_reason": ("refusal", "reasons"),
    "harm_intent": ("harm_intent",),
    "boilerplate": ("boilerplate",),
    "conditional": ("conditional",),
    "condition_marker": ("condition_marker",),
    "condition_now": ("condition_now",),
    "condition_consequent": ("condition_consequent",),
    "chronic": ("chronic",),
    "acute": ("acute",),
    "borrowed_drug": ("borrowed_drug",),
    "prescribed_own": ("prescribed_own",),
    **{
        f"mental.{k}": ("mental_health", k)
        for k in (
            "triggers",
            "crisis_resources",
            "professional_help",
            "encouragement",
            "self_harm_other",
            "minimising",
        )
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
                f"{source}: safety rules are missing or malformed "
                f"at {exc}; compare with data/rules/safety_rules.yaml"
            ) from exc

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, learned: bool | None = None) -> SafetyRules:
        """The rules in path (default: the shipped file); learned=True/False turns the learned term
        (`learned_unsafe`) on or off whatever the file says."""
        path = Path(path) if path else ASSETS.safety_rules
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
        if learned is not None and isinstance(raw, dict):
            raw["learned_unsafe"] = {**(raw.get("learned_unsafe") or {}), "enabled": learned}
        return cls(raw, source=str(path))

    @staticmethod
    def default_path() -> Path:
        return ASSETS.safety_rules

    def _build(self, raw: dict[str, Any]) -> None:
        self.version = str(raw["version"])
        self.penalties = {c: float(raw["penalties"][c]) for c in SAFETY_CATEGORIES}
        pos = raw["positives"]
        self.bonus, self.bonus_cap = float(pos["bonus"]), float(pos["cap"])
        self.substance_bonus, self.hollow_penalty = (
            float(pos["substance_bonus"]),
            float(pos["hollow_penalty"]),
        )
        self.min_content, self.min_sentence_content = (
            int(pos["min_content"]),
            int(pos["min_sentence_content"]),
        )
        self.min_anchors = int(pos.get("min_anchors", 0))
        self.injection_penalty = float(raw["injection"]["penalty"])
        ref = raw["refusal"]
        self.over_refusal_penalty = float(ref["over_refusal_penalty"])
        self.harm_refusal_bonus = float(ref["harm_refusal_bonus"])
        self.harm_compliance_penalty = float(ref["harm_compliance_penalty"])
        self.format, self.length = dict(raw["format"]), dict(raw["length"])
        dx = raw["diagnosis_assertion"]
        self.dx_window = (int(dx["window_zh"]), int(dx["window_en"]))
        self.signals = list(pos["signals"])
        self.prompt_lexicon, self.answer_lexicon = _compile_lexicons(raw)
        # judge-directed text alone, for the <think> block (the rest of the lists never read it)
        self.injection_lexicon = WordLists()
        self.injection_lexicon.add("injection", {k: raw["injection"][k] for k in ("zh", "en")})
        for k in ("addressee", "demand"):
            self.injection_lexicon.add(f"injection.{k}", raw["injection_structure"][k])
        self.injection_lexicon.finish()
        self.contexts = list(raw["pediatric_pregnancy"]["contexts"])
        self.interactions = list(raw["interactions"])
        sit = raw["situations"]
        self.compositions = [dict(c) for c in sit["compositions"]]
        self.fever_c, self.fever_f = float(sit["fever_c"]), float(sit["fever_f"])
        self.bp_high, self.bp_severe = tuple(sit["bp_high"]), tuple(sit["bp_severe"])
        known = set(sit["lists"]) | {"fever", "bp_high", "bp_severe", "over_limit"}
        for c in self.compositions:
            if unknown := (set(c["requires"]) | set(c.get("any", ())) | set(c.get("unless", ()))) - known:
                raise ValueError(
                    f"{self.source}: situation {c['name']!r} names unknown lists {sorted(unknown)}"
                )
        self.remedies = [dict(r) for r in raw.get("harmful_remedies") or ()]
        self.dose_limits = [dict(d) for d in raw.get("dose_limits") or ()]
        self.brands = {
            str(k).lower(): str(v)
            for lang in ("zh", "en")
            for k, v in (raw["brands"].get(lang) or {}).items()
        }
        self.learned = self._learned(raw.get("learned_unsafe"))

    def _learned(self, cfg: Any) -> AnswerSafetyModel | None:
        """v7: the learned answer-safety term (`learned_unsafe`: enabled, weights, threshold, penalty), or
        None when absent or disabled; its penalty joins the violation penalties."""
        if cfg is None:
            return None
        where = f"{self.source}: learned_unsafe"
        if not isinstance(cfg, dict) or (
            unknown := set(cfg) - {"enabled", "weights", "threshold", "penalty"}
        ):
            raise ValueError(
                f"{where} must be a mapping of enabled, weights, threshold, penalty"
                + (f"; unknown key(s) {sorted(unknown)}" if isinstance(cfg, dict) else "")
            )
        if not cfg.get("enabled", True):
            return None
        penalty, threshold = cfg.get("penalty"), cfg.get("threshold")
        if not isinstance(penalty, int | float) or isinstance(penalty, bool) or penalty > 0:
            raise ValueError(f"{where}.penalty must be a number <= 0, got {penalty!r}")
        if threshold is not None and (
            not isinstance(threshold, int | float) or isinstance(threshold, bool) or threshold <= 0
        ):
            raise ValueError(
                f"{where}.threshold must be null (the weights file's) or a number > 0, got {threshold!r}"
            )
        name = cfg.get("weights")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.weights must name a weights file (e.g. answer_safety.json)")
        base = Path(self.source).parent if self.source != "<dict>" else ASSETS.safety_rules.parent
        path = base / name
        if not path.is_file():
            raise ValueError(
                f"{where}.weights: no file {path}; train it with "
                "`python -m tasks.reward.train_answer_safety` or set learned_unsafe.enabled: false"
            )
        try:
            weights = AnswerSafetyWeights.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{where}.weights: {path} is not a valid weights file: {exc}") from None
        self.penalties["learned_unsafe"] = float(penalty)
        return AnswerSafetyModel(weights, threshold)


def _compile_lexicons(raw: dict[str, Any]) -> tuple[WordLists, WordLists]:
    """The question's and the answer's lexicons: each side is read for different lists."""
    prompt, answer = WordLists(), WordLists()
    signals = raw["positives"]["signals"]
    for name in signals:
        answer.add(f"signal.{name}", signals[name])
    for name, keys in _LISTS.items():
        node = raw
        for k in keys:
            node = node[k]
        sides = (prompt, answer) if name in _BOTH_SIDES else (prompt,) if name in _PROMPT_ONLY else (answer,)
        for lexicon in sides:
            lexicon.add(name, {lang: node[lang] for lang in ("zh", "en") if lang in node})
    for name, ctx in raw["pediatric_pregnancy"]["contexts"].items():
        prompt.add(f"ctx.{name}.triggers", ctx["triggers"])
        prompt.add(f"ctx.{name}.contraindicated", ctx["contraindicated"])
        answer.add(f"ctx.{name}.contraindicated", ctx["contraindicated"])
    for name, ix in raw["interactions"].items():
        prompt.add(f"ix.{name}.triggers", ix["triggers"])
        for lexicon in (prompt, answer):
            lexicon.add(f"ix.{name}.contraindicated", ix["contraindicated"])
    for name, terms in raw["situations"]["lists"].items():
        prompt.add(f"sit.{name}", terms)
    # v6: harmful home remedies (answer side; what the question must be about, prompt side) and doses
    for i, r in enumerate(raw.get("harmful_remedies") or ()):
        answer.add(f"remedy.{i}", {k: r[k] for k in ("zh", "en") if k in r})
        for key in ("with", "unless"):
            if key in r:
                answer.add(f"remedy.{i}.{key}", r[key])
        if "question" in r:
            prompt.add(f"remedy.{i}.question", r["question"])
    for i, d in enumerate(raw.get("dose_limits") or ()):
        for lexicon in (prompt, answer):
            lexicon.add(f"dose.{i}", {k: d[k] for k in ("zh", "en") if k in d})
    for lang in ("zh", "en"):  # brand names, matched literally in both texts
        names = [re.escape(str(k)) for k in (raw["brands"].get(lang) or {})]
        for lexicon in (prompt, answer):
            lexicon.add("brand", {lang: names})
    prompt.finish()
    answer.finish()
    return prompt, answer
