"""Train the learned answer-safety term (tasks/reward/answer_model.py) and write its weights file.

    python -m tasks.reward.train_answer_safety               # writes data/rules/answer_safety.json
    python -m tasks.reward.train_answer_safety --out FILE
    python -m tasks.reward.train_answer_safety --report      # also: grouped CV, rules alone vs + learned

Rows (each answer cleaned as the rules read it: no <think>, judge-directed passages cut out):
- the labelled adversarial answers (tests/fixtures/reward_adversarial*.jsonl)
  and the writers' answers (data/rules/answer_safety_written_*.jsonl, same keys): good answers and blanket
  refusals are safe (a refusal says nothing unsafe, and flagging one would be a false flag on real text);
  boilerplate-stuffed, hedged and injected unsafe advice are unsafe; keyword salad is left out (it is
  neither advice nor safe, and the rules' hollow-words term already prices it);
- tests/fixtures/reward_regressions.jsonl: `clean` sentences safe, those expected to raise a safety
  category unsafe; the injection, refusal and over-refusal rows are left out (no label of this kind).
Never trained on real human-labelled answers nor on any sealed batch.

Model: tasks/core/ngram_lr.py (L2 logistic regression on L2-normalized binary n-gram rows, full-batch
gradient descent from zero: byte-identical file on a re-run); each (language, label) stratum weighs equally.
Scored one-sidedly (answer_model.py: only n-grams weighing towards unsafe count, a text scored as having at
least MIN_LEN features). Threshold: 5-fold cross-validation with folds by batch (every answer of one
batch, and so of one question, in one fold; see fold_of): the lowest score, at least MIN_THRESHOLD, that
at most MAX_FA of the out-of-fold good answers and of the out-of-fold sample answers reach. numpy only, CPU,
under a minute.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

from tasks.core.ngram_lr import choose_threshold, fit, top_weights
from tasks.core.text import detect_lang
from tasks.core.workdir import ASSETS_DIR
from tasks.reward.answer_model import AnswerSafetyModel, AnswerSafetyWeights, answer_features
from tasks.reward.engine import clean_answer, score_rules
from tasks.reward.rules import SafetyRules

ROOT = Path(__file__).resolve().parents[2]
RULES = ASSETS_DIR / "rules"
SAMPLES = ASSETS_DIR / "samples"
GUARDED = ("good", "sample")  # the safe kinds whose false flags set the threshold
OUT = RULES / "answer_safety.json"
FIXTURES = ROOT / "tests" / "fixtures"
# Named, not globbed: a new held-out batch must be scored once before anyone trains on it (F was sealed and
# scored against these weights; add it here, retrain and bump the rules version to train on it).
ADVERSARIAL = [
    FIXTURES / "reward_adversarial.jsonl",
    *(FIXTURES / f"reward_adversarial_heldout{part}.jsonl" for part in ("", "_c", "_d", "_e")),
]
WRITTEN = sorted(RULES.glob("answer_safety_written_*.jsonl"))
REGRESSIONS = FIXTURES / "reward_regressions.jsonl"
# The regression lines trained on: the file's first lines as they stood for the shipped weights (v7). Lines
# added later (v8: delays, dose attribution, verdicts …) test the rules and are not training data until the
# next retrain (raise this, retrain, and the byte-for-byte test pins the new weights).
REGRESSION_LINES = 209
SAFE_KINDS, UNSAFE_KINDS = ("good", "refusal"), ("stuffed_unsafe", "hedged_unsafe", "injection")
REGRESSION_UNSAFE = (
    "prescription_drug",
    "emergency",
    "pediatric_pregnancy",
    "diagnosis_assertion",
    "mental_health",
)
FOLDS = 5
MAX_FA = 0.05
MIN_THRESHOLD = 0.5  # a floor on the one-sided score
MIN_LEN = 30  # a text is scored as having at least this many features
# A gate on the fitted (two-sided) probability: 0.0 is off. 0.5 was tried: it let the cross-validated
# threshold fall to 0.64 and false flags on real answers rose to 17-20% (docs/reward.md, "Learned term").
MIN_PROBABILITY = 0.0
KEEP = 6000  # features kept in the shipped file, by |weight|
L2 = 1e-4
TRAINED_BY = "python -m tasks.reward.train_answer_safety"


@dataclass(frozen=True)
class Row:
    group: str  # the question: every answer to it falls in one fold
    kind: str  # good | refusal | stuffed_unsafe | hedged_unsafe | injection | salad | clean | <category>
    question: str
    response: str
    risk_level: str | None
    y: int | None  # 1 unsafe, 0 safe, None: not trained on (salad; kept for the scored comparison)
    text: str  # the cleaned answer


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def base_rules() -> SafetyRules:
    """The shipped rules with the learned term off (training must not need the file it writes)."""
    return SafetyRules.from_yaml(learned=False)


def rows(rules: SafetyRules) -> tuple[list[Row], dict[str, int]]:
    """Every row (salad included, unlabelled) and the trained rows per source."""
    out: list[Row] = []
    sources: dict[str, int] = {}
    for path in [*ADVERSARIAL, *WRITTEN]:
        before = len(out)
        for r in _jsonl(path):
            y = 1 if r["kind"] in UNSAFE_KINDS else 0 if r["kind"] in SAFE_KINDS else None
            text = clean_answer(r["response"], rules)
            group = f"{path.stem}:{r.get('split') or ''}:{r['qid']}"  # batch (file, split), question
            out.append(Row(group, r["kind"], r["question"], r["response"], r.get("risk_level"), y, text))
        sources[path.stem] = sum(r.y is not None for r in out[before:])
    for name, pairs in _samples().items():
        for i, (question, answer) in enumerate(pairs):
            out.append(Row(f"{name}::{i}", "sample", question, answer, None, 0, clean_answer(answer, rules)))
        sources[name] = len(pairs)
    before = len(out)
    for r in _jsonl(REGRESSIONS)[:REGRESSION_LINES]:
        y = 0 if r["expect"] == "clean" else 1 if r["expect"] in REGRESSION_UNSAFE else None
        if y is not None:
            text = clean_answer(r["response"], rules)
            out.append(
                Row(f"regression::{r['id']}", r["expect"], r["question"], r["response"], None, y, text)
            )
    sources[REGRESSIONS.stem] = len(out) - before
    return out, sources


def _samples() -> dict[str, list[tuple[str, str]]]:
    """Safe answers in ordinary chatbot and textbook style (the shipped samples, data/samples): without
    them the model learns "not written like the good adversarial answers" rather than "unsafe"."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name in ("medical_o1_zh.json", "medical_o1_en.json"):
        path = SAMPLES / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            out[path.stem] = [
                (str(r.get("Question") or ""), r["Response"])
                for r in data
                if isinstance(r, dict) and isinstance(r.get("Response"), str) and r["Response"].strip()
            ]
    path = SAMPLES / "delicate_medical_r1.jsonl"
    if path.is_file():
        pairs = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue  # the samples keep deliberate defects for the cleanup stage
            if isinstance(r, dict) and isinstance(r.get("answer"), str) and r["answer"].strip():
                pairs.append((str(r.get("question") or ""), r["answer"]))
        out[path.stem] = pairs
    path = SAMPLES / "medsafetybench.csv"
    if path.is_file():
        with path.open(encoding="utf-8", newline="") as f:
            out[path.stem] = [
                (r.get("harmful_medical_request") or "", r["safe_response"])
                for r in csv.DictReader(f)
                if (r.get("safe_response") or "").strip()
            ]
    return out


def _fit(train: list[Row], l2: float) -> tuple[float, dict[str, float]]:
    labelled = [r for r in train if r.y is not None]
    return fit(
        [answer_features(r.text) for r in labelled],
        [r.y for r in labelled],
        [(detect_lang(r.question, r.text), r.y) for r in labelled],
        l2=l2,
    )


def _weights(
    bias: float, weights: dict[str, float], threshold: float, sources: dict[str, int]
) -> AnswerSafetyWeights:
    return AnswerSafetyWeights(
        trained_by=TRAINED_BY,
        sources=sources,
        bias=round(bias, 4),
        min_len=MIN_LEN,
        min_probability=MIN_PROBABILITY,
        threshold=threshold,
        weights=top_weights(weights, KEEP),
    )


def batch(row: Row) -> str:
    """The batch a row came from: its file and split (one writer, one round of questions and templates)."""
    return row.group.rsplit(":", 1)[0]


def fold_of(data: list[Row]) -> dict[str, int]:
    """Each row group's fold: whole batches, in first-seen order, dealt round the folds. Folds by batch,
    not only by question: answers written in one batch share their writer's style across questions, and
    with question folds the out-of-fold false flags on good answers were a quarter of what a whole unseen
    batch got (D held out: 7/30 good answers flagged at a threshold set for 5%)."""
    order = list(dict.fromkeys(batch(r) for r in data))
    fold = {b: i % FOLDS for i, b in enumerate(order)}
    return {r.group: fold[batch(r)] for r in data}


def out_of_fold(data: list[Row], l2: float = L2) -> tuple[list[float], list[AnswerSafetyWeights]]:
    """Each row's one-sided score from a model trained on the other folds, and the fold models."""
    folds = fold_of(data)
    probs, models = [0.0] * len(data), []
    for k in range(FOLDS):
        model = _weights(*_fit([r for r in data if folds[r.group] != k], l2), 0.5, {})
        models.append(model)
        scorer = AnswerSafetyModel(model)
        for i, r in enumerate(data):
            if folds[r.group] == k:
                probs[i] = scorer.score(r.text)[0]
    return probs, models


def threshold(data: list[Row], probs: list[float]) -> float:
    """The lowest score that at most MAX_FA of each guarded kind's out-of-fold rows reach."""
    return max(
        choose_threshold(
            [p for p, r in zip(probs, data, strict=True) if r.kind == kind], MAX_FA, MIN_THRESHOLD
        )
        for kind in GUARDED
    )


def train(l2: float = L2) -> tuple[AnswerSafetyWeights, dict[str, object]]:
    """The shipped model (all rows) at the cross-validated threshold, and the out-of-fold figures."""
    rules = base_rules()
    data, sources = rows(rules)
    probs, _ = out_of_fold(data, l2)
    t = threshold(data, probs)
    report: dict[str, object] = {"threshold": t}
    for kind in ("good", "sample", "refusal", "clean", "salad", *UNSAFE_KINDS):
        hits = [p >= t for p, r in zip(probs, data, strict=True) if r.kind == kind]
        report[kind] = f"{sum(hits)}/{len(hits)}"
    hits = [p >= t for p, r in zip(probs, data, strict=True) if r.kind in REGRESSION_UNSAFE]
    report["regression unsafe"] = f"{sum(hits)}/{len(hits)}"
    return _weights(*_fit(data, l2), t, sources), report


def dump(model: AnswerSafetyWeights) -> str:
    return json.dumps(model.model_dump(), ensure_ascii=False, indent=0) + "\n"


def compare(l2: float = L2) -> list[str]:
    """Out of fold, on every question with a good answer: good beats all other kinds, unsafe kinds flagged,
    good flagged, for the rules alone and the rules + the learned term (each fold's model at the
    cross-validated threshold)."""
    from tasks.evaluate.statistics import wilson

    rules = base_rules()
    data, _ = rows(rules)
    probs, models = out_of_fold(data, l2)
    t = threshold(data, probs)
    folds = fold_of(data)
    with_learned = []
    for model in models:
        fold_rules = copy.copy(rules)
        fold_rules.penalties = {**rules.penalties, "learned_unsafe": _penalty()}
        fold_rules.learned = AnswerSafetyModel(model, t)
        with_learned.append(fold_rules)
    scored: dict[str, dict[str, dict[str, tuple[float, bool]]]] = {
        "rules": defaultdict(dict),
        "learned": defaultdict(dict),
    }
    for r in data:
        if r.kind not in ("good", "salad", *SAFE_KINDS, *UNSAFE_KINDS):
            continue
        s = score_rules(r.question, r.response, rules=rules, risk_level=r.risk_level)
        scored["rules"][r.group][r.kind] = (s.rule_score, s.violation)
        s2 = score_rules(r.question, r.response, rules=with_learned[folds[r.group]], risk_level=r.risk_level)
        scored["learned"][r.group][r.kind] = (s2.rule_score, s2.violation)

    lines = [
        f"batch-grouped {FOLDS}-fold CV, threshold {t} "
        f"(<= {MAX_FA:.0%} of out-of-fold good and sample answers)"
    ]
    for name, by_q in scored.items():
        lines.append(f"{name:8s} " + _figures(by_q, wilson))
    return lines


def batch_holdout(stem: str, l2: float = L2) -> list[str]:
    """Train without one whole file of answers (e.g. reward_adversarial_heldout_e: another writer, other
    questions), threshold by grouped CV on the rest, and score that file with the rules alone and with the
    rules + that model: how the term carries to a batch none of its training came from."""
    from tasks.evaluate.statistics import wilson

    rules = base_rules()
    data, _ = rows(rules)
    held = [r for r in data if r.group.startswith(f"{stem}:")]
    if not held:
        raise SystemExit(f"no rows from {stem}; files: {', '.join(p.stem for p in [*ADVERSARIAL, *WRITTEN])}")
    rest = [r for r in data if not r.group.startswith(f"{stem}:")]
    probs, _ = out_of_fold(rest, l2)
    t = threshold(rest, probs)
    learned = copy.copy(rules)
    learned.penalties = {**rules.penalties, "learned_unsafe": _penalty()}
    learned.learned = AnswerSafetyModel(_weights(*_fit(rest, l2), t, {}))
    lines = [f"{stem} held out of training; threshold {t} by batch-grouped CV on the rest"]
    for name, r_set in (("rules", rules), ("learned", learned)):
        by_q: dict[str, dict[str, tuple[float, bool]]] = defaultdict(dict)
        for r in held:
            s = score_rules(r.question, r.response, rules=r_set, risk_level=r.risk_level)
            by_q[r.group][r.kind] = (s.rule_score, s.violation)
        lines.append(f"{name:8s} " + _figures(by_q, wilson))
    return lines


def _figures(by_q: dict[str, dict[str, tuple[float, bool]]], wilson: object) -> str:
    def fmt(k: int, n: int) -> str:
        w = wilson(k, n)  # type: ignore[operator]
        return f"{w.rate:.1%} ({k}/{n}, 95% CI {w.lo:.1%}-{w.hi:.1%})" if n else "n=0"

    beats = [
        all(kinds["good"][0] > s for k, (s, _) in kinds.items() if k != "good")
        for kinds in by_q.values()
        if "good" in kinds and len(kinds) > 1
    ]
    unsafe = [v for kinds in by_q.values() for k, (_, v) in kinds.items() if k in UNSAFE_KINDS]
    good = [kinds["good"][1] for kinds in by_q.values() if "good" in kinds]
    return (
        f"good beats all {fmt(sum(beats), len(beats))}; unsafe flagged {fmt(sum(unsafe), len(unsafe))}; "
        f"good flagged {fmt(sum(good), len(good))}"
    )


def _penalty() -> float:
    raw = yaml.safe_load(SafetyRules.default_path().read_text(encoding="utf-8"))
    return float((raw.get("learned_unsafe") or {}).get("penalty", -1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--l2", type=float, default=L2)
    parser.add_argument("--report", action="store_true", help="also print the grouped-CV comparison")
    parser.add_argument(
        "--hold-out-batch", metavar="STEM", help="only report: train without one answers file, score it"
    )
    args = parser.parse_args()
    if args.hold_out_batch:
        print("\n".join(batch_holdout(args.hold_out_batch, args.l2)))
        return
    model, report = train(args.l2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump(model), encoding="utf-8")
    print(
        f"wrote {args.out}: {len(model.weights)} features, threshold {model.threshold}, "
        f"sources {model.sources}"
    )
    print(f"  out of fold at the threshold: {report}")
    if args.report:
        print("\n".join(compare(args.l2)))


if __name__ == "__main__":
    main()
