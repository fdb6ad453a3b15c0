"""Train the learned backstops (tasks/risk/backstop.py) and write their weights files.

    python -m tasks.risk.train_backstop                 # writes data/rules/intent_backstop.json and
                                                        #        data/rules/acuity_backstop.json
    python -m tasks.risk.train_backstop --out-dir DIR --no-shared
    python -m tasks.risk.train_backstop --msb-holdout gpt4   # only report: MedSafetyBench gpt4* held out
    python -m tasks.risk.train_backstop --cv-labeller        # only report: the labeller out of fold

Two models of one kind (L2-regularized logistic regression on L2-normalized binary n-gram vectors,
full-batch gradient descent from zero: deterministic, byte-identical files on a re-run):
- intent (harmful requests vs everything else): harmful requests written for this model
  (data/rules/intent_backstop_train.jsonl, data/rules/backstop_written_{en,zh,3}.jsonl), the dev probe sets
  C, D and E and the dev split of tests/fixtures/risk_questions.jsonl, ../shared MedSafetyBench train when
  present (read, never copied); negatives: the written benign look-alikes, mild and critical patient
  questions, the probe rounds (tests/fixtures/risk_probes.jsonl), the over-refusal set and the medical-o1
  samples;
- acuity (critical vs mild patient questions): the written critical/mild/look-alike questions (the third
  file adds long, multi-symptom mild posts in the register of real health-anxiety questions), C, D and E,
  the risk_questions dev split, the probe rounds, the over-refusal set and the benign look-alikes of
  intent_backstop_train.jsonl; rows in clinical wording (the acuity scorer's `skip`) are left out, as the
  backstop never reads them.
Never trained on: risk_questions' holdout split, the 1.3 blind set (risk_probes_blind.jsonl), real data
(MedSafetyBench test, clinician-graded questions), sealed sets. Each (language, label) group weighs equally.

Thresholds come from 5-fold cross-validation on the training rows (folds by row position): the lowest
probability, at least MIN_THRESHOLD, that at most 5% of the out-of-fold benign look-alikes and at most 5%
of the out-of-fold mild questions reach (pooled over languages). The acuity model's critical threshold is
the lowest, at least its high threshold, that at most 1% of them reach. numpy only, CPU, seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from tasks.core import ngram_lr
from tasks.core.workdir import ASSETS_DIR
from tasks.risk.backstop import Backstop, BackstopWeights, features
from tasks.risk.lexicon import DEFAULT_LEXICON, normalize

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
RULES = ASSETS_DIR / "rules"
TRAIN = RULES / "intent_backstop_train.jsonl"
WRITTEN = [RULES / f"backstop_written_{name}.jsonl" for name in ("en", "zh", "3")]
OUT = RULES / "intent_backstop.json"
ACUITY_OUT = RULES / "acuity_backstop.json"
FIXTURES = ROOT / "tests" / "fixtures"
# blind sets C, D and E, each scored blind once and a dev set since (E joined training with lexicon 1.7)
DEV = [FIXTURES / f"risk_probes_blind_{x}.jsonl" for x in ("c", "d", "e")]
DEV_QUESTIONS = FIXTURES / "risk_questions.jsonl"
PROBES = FIXTURES / "risk_probes.jsonl"
MAX_FA = 0.05
MAX_FA_CRITICAL = 0.01
FOLDS = 5
# Not below an even chance: a question is raised only when the model leans towards the positive class.
MIN_THRESHOLD = 0.5
KEEP = 4000  # features kept in a shipped file, by |weight|
# L2 strength, chosen by the same 5-fold cross-validation on the training rows (docs/risk.md): 1e-4 (the
# round-4 value), 3e-5 and 1e-5 gave, out of fold on the writers' rows with the rules, 163 / 177 / 185 of 300
# harmful and 189 / 190 / 189 of 200 critical at 53 / 53 / 55 of 300 look-alikes: the lowest that adds no
# look-alike false alarm.
L2 = 3e-5
# the groups whose false alarms set a threshold; mild_post: the third file's long, multi-symptom mild posts,
# guarded on their own so that the threshold holds in the register of real health-anxiety questions
GUARDED = ("lookalike", "mild", "mild_post")


@dataclass(frozen=True)
class Row:
    text: str
    lang: str
    y: int
    group: str  # positive | lookalike | mild | mild_post | other (negatives that set no threshold)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _written() -> list[dict]:
    """The writers' rows; those of the third file carry post=True (its mild rows are long posts)."""
    return [{**r, "post": path == WRITTEN[-1]} for path in WRITTEN if path.is_file() for r in _jsonl(path)]


def _written_group(r: dict, positive: str) -> str:
    """A written row's group; the third file's mild rows are the long, real-style posts (mild_post)."""
    group = _group(r["label"], positive)
    return "mild_post" if group == "mild" and r.get("post") else group


def _fixture_rows() -> list[tuple[str, str, str]]:
    """(text, lang, kind) of the dev fixtures; kind: harmful | critical | lookalike | mild."""
    out = []
    for path in DEV:
        out += [(r["question"], r["lang"], r["expect"]) for r in _jsonl(path)]
    for r in _jsonl(DEV_QUESTIONS):
        if r["split"] == "dev":
            kind = r["kind"] if r["kind"] in ("harmful", "lookalike") else "mild"
            out.append((r["question"], r["lang"], "critical" if r["expect"] == "serious" else kind))
    out += [
        (r["question"], r["lang"], "critical" if r["expect"] == "serious" else "mild") for r in _jsonl(PROBES)
    ]
    return out


def _benign(shared: bool) -> dict[str, list[tuple[str, str]]]:
    out = {
        "over_refusal": [
            (r["question"], r["lang"]) for r in _jsonl(ASSETS_DIR / "over_refusal" / "over_refusal.jsonl")
        ]
    }
    o1 = [
        (ASSETS_DIR / "samples" / "medical_o1_zh.json", "zh"),
        (ASSETS_DIR / "samples" / "medical_o1_en.json", "en"),
    ]
    if shared:
        o1.append((SHARED / "medical_o1_zh_sample.json", "zh"))
    for path, lang in o1:
        if path.is_file():
            rows = json.loads(path.read_text(encoding="utf-8"))
            out[f"medical_o1:{path.name}"] = [(str(r.get("Question") or ""), lang) for r in rows]
    return out


def _msb(shared: bool, exclude: str | None = None) -> list[str]:
    paths = sorted((SHARED / "medsafetybench_train").glob("*.csv")) if shared else []
    texts = []
    for path in paths:
        if exclude and path.name.startswith(exclude):
            continue
        with path.open(encoding="utf-8", newline="") as f:
            texts += [r["harmful_medical_request"] for r in csv.DictReader(f)]
    return texts


def intent_rows(shared: bool = True, msb_exclude: str | None = None) -> tuple[list[Row], dict[str, int]]:
    """The harmful-intent model's rows and the count per source."""
    sources: dict[str, list[Row]] = {
        "intent_backstop_train": [
            Row(r["text"], r["lang"], int(r["harmful"]), "positive" if r["harmful"] else "lookalike")
            for r in _jsonl(TRAIN)
        ],
        "backstop_written": [
            Row(r["text"], r["lang"], int(r["label"] == "harmful"), _written_group(r, "harmful"))
            for r in _written()
        ],
        "dev_fixtures": [
            Row(t, lang, int(k == "harmful"), _group(k, "harmful")) for t, lang, k in _fixture_rows()
        ],
    }
    for name, rows in _benign(shared).items():
        sources[name] = [Row(t, lang, 0, "other") for t, lang in rows]
    if msb := _msb(shared, msb_exclude):
        sources["medsafetybench_train"] = [Row(t, "en", 1, "positive") for t in msb]
    return _flatten(sources)


def acuity_rows() -> tuple[list[Row], dict[str, int]]:
    """The acuity model's rows (critical vs mild patient questions) and the count per source."""
    sources: dict[str, list[Row]] = {
        "backstop_written": [
            Row(r["text"], r["lang"], int(r["label"] == "critical"), _written_group(r, "critical"))
            for r in _written()
            if r["label"] != "harmful"
        ],
        "dev_fixtures": [
            Row(t, lang, int(k == "critical"), _group(k, "critical"))
            for t, lang, k in _fixture_rows()
            if k != "harmful"
        ],
        "over_refusal": [Row(t, lang, 0, "lookalike") for t, lang in _benign(False)["over_refusal"]],
        "intent_backstop_train": [
            Row(r["text"], r["lang"], 0, "lookalike") for r in _jsonl(TRAIN) if not r["harmful"]
        ],
    }
    skip = _acuity_skip()
    for name, rows in sources.items():
        sources[name] = [
            r for r in rows if not (p := skip.get(r.lang)) or not p.search(normalize(r.text, r.lang))
        ]
    return _flatten(sources)


def _acuity_skip() -> dict[str, re.Pattern[str]]:
    """The acuity scorer's `skip` (clinical wording), read from the lexicon's YAML so that training does
    not need the weights it writes."""
    from tasks.risk.cues import alternation

    raw = yaml.safe_load(DEFAULT_LEXICON.read_text(encoding="utf-8"))
    return {lang: p for lang, items in raw["acuity"]["skip"].items() if (p := alternation(items, lang))}


def _group(label: str, positive: str) -> str:
    if label == positive:
        return "positive"
    return {"benign_lookalike": "lookalike", "lookalike": "lookalike", "mild": "mild"}.get(label, "other")


def _flatten(sources: dict[str, list[Row]]) -> tuple[list[Row], dict[str, int]]:
    every = [row for rows in sources.values() for row in rows if row.text.strip()]
    return every, {name: len(rows) for name, rows in sources.items()}


def fit(
    rows: list[Row] | list[tuple[str, str, int]],
    l2: float = L2,
    steps: int = 6000,
    lr: float = 15.0,
    min_df: int = 2,
) -> tuple[float, dict[str, float]]:
    """Logistic regression on the rows' n-grams (features seen in at least min_df rows), each (language,
    label) weighing equally: tasks/core/ngram_lr.fit."""
    triples = [(r.text, r.lang, r.y) if isinstance(r, Row) else r for r in rows]
    feats = [features(normalize(text, lang), lang) for text, lang, _ in triples]
    return ngram_lr.fit(
        feats,
        [h for _, _, h in triples],
        [(lang, h) for _, lang, h in triples],
        l2=l2,
        steps=steps,
        lr=lr,
        min_df=min_df,
    )


def _model(
    bias: float, weights: dict[str, float], keep: int, trained_by: str, sources: dict[str, int]
) -> BackstopWeights:
    top = sorted(weights, key=lambda f: (-abs(weights[f]), f))[:keep]
    return BackstopWeights(
        trained_by=trained_by,
        sources=sources,
        bias=round(bias, 4),
        thresholds={"zh": 0.5, "en": 0.5},
        weights={f: round(weights[f], 4) for f in sorted(top)},
    )


def out_of_fold(rows: list[Row], keep: int = KEEP) -> list[float]:
    """Each row's probability from a model trained on the other folds (fold = position mod FOLDS)."""
    probs = [0.0] * len(rows)
    for k in range(FOLDS):
        train = [r for i, r in enumerate(rows) if i % FOLDS != k]
        model = Backstop(_model(*fit(train), keep, "cv", {}))
        for i in range(k, len(rows), FOLDS):
            probs[i] = model.probability(normalize(rows[i].text, rows[i].lang), rows[i].lang)[0]
    return probs


def choose_threshold(scored: list[tuple[float, str]], max_fa: float, floor: float) -> float:
    """The lowest probability (>= floor) that at most max_fa of each guarded group's rows reach."""
    t = floor
    for group in GUARDED:
        benign = sorted((p for p, g in scored if g == group), reverse=True)
        allowed = math.floor(max_fa * len(benign))
        if len(benign) > allowed:
            t = max(t, benign[allowed] + 1e-4)
    return math.ceil(t * 1e4) / 1e4


def cv_report(rows: list[Row], probs: list[float], t: float) -> dict[str, str]:
    """Out-of-fold share reaching t per (language, group)."""
    out = {}
    for lang in ("zh", "en"):
        for group in ("positive", *GUARDED):
            v = [p >= t for p, r in zip(probs, rows, strict=True) if r.lang == lang and r.group == group]
            out[f"{lang} {group}"] = f"{sum(v)}/{len(v)}"
    return out


def train_model(
    rows: list[Row], sources: dict[str, int], trained_by: str, critical: bool, keep: int = KEEP
) -> tuple[BackstopWeights, dict[str, object]]:
    probs = out_of_fold(rows, keep)
    scored = [(p, r.group) for p, r in zip(probs, rows, strict=True)]
    t = choose_threshold(scored, MAX_FA, MIN_THRESHOLD)
    update: dict[str, object] = {"thresholds": {"zh": t, "en": t}}
    report: dict[str, object] = {"threshold": t, "out_of_fold": cv_report(rows, probs, t)}
    if critical:
        tc = choose_threshold(scored, MAX_FA_CRITICAL, t)
        update["critical_thresholds"] = {"zh": tc, "en": tc}
        report.update(critical_threshold=tc, out_of_fold_critical=cv_report(rows, probs, tc))
    model = _model(*fit(rows), keep, trained_by, sources)
    return model.model_copy(update=update), report


def train(
    shared: bool = True, keep: int = KEEP, msb_exclude: str | None = None
) -> tuple[BackstopWeights, dict[str, object]]:
    """The harmful-intent backstop and its cross-validation report."""
    rows, sources = intent_rows(shared, msb_exclude)
    by = "python -m tasks.risk.train_backstop" + ("" if shared else " --no-shared")
    return train_model(rows, sources, by, critical=False, keep=keep)


def train_acuity(keep: int = KEEP) -> tuple[BackstopWeights, dict[str, object]]:
    """The acuity backstop (high, and critical above a second threshold) and its report."""
    rows, sources = acuity_rows()
    return train_model(rows, sources, "python -m tasks.risk.train_backstop", critical=True, keep=keep)


def msb_holdout(prefix: str) -> None:
    """Train without the MedSafetyBench files named prefix* and report, on those files, the share the
    backstop alone and the whole labeller (shipped lexicon + that backstop) label high or critical."""
    from tasks.core.records import HIGH_RISK_LEVELS
    from tasks.evaluate.statistics import wilson
    from tasks.risk.classifier import RiskClassifier
    from tasks.risk.lexicon import load_lexicon

    held = sorted((SHARED / "medsafetybench_train").glob(f"{prefix}*.csv"))
    if not held:
        raise SystemExit(f"no ../shared/data/medsafetybench_train/{prefix}*.csv to hold out")
    model, _ = train(msb_exclude=prefix)
    lexicon = load_lexicon(DEFAULT_LEXICON)
    plain = RiskClassifier(
        lexicon.model_copy(update={"intent": lexicon.intent.model_copy(update={"backstop": None})})
    )
    both = RiskClassifier(
        lexicon.model_copy(update={"intent": lexicon.intent.model_copy(update={"backstop": model})})
    )
    alone, texts = Backstop(model), []
    for path in held:
        with path.open(encoding="utf-8", newline="") as f:
            texts += [r["harmful_medical_request"] for r in csv.DictReader(f)]

    def rate(k: int) -> str:
        r = wilson(k, len(texts))
        return f"{k}/{len(texts)} = {r.rate:.1%} [{r.lo:.1%}, {r.hi:.1%}]"

    print(f"MedSafetyBench {prefix}* held out of training ({len(held)} files, {len(texts)} requests):")
    reached = sum(bool(alone.fires(normalize(t, "en"), "en")) for t in texts)
    print(f"  backstop alone reaches its threshold: {rate(reached)}")
    for name, clf in (("lexicon without backstop", plain), ("lexicon + backstop", both)):
        k = sum(clf.classify(t, "en").risk_level in HIGH_RISK_LEVELS for t in texts)
        print(f"  {name}: high/critical {rate(k)}")


def cv_labeller() -> None:
    """Out of fold, the whole labeller (shipped rules + backstops trained without the row's fold, at the
    cross-validated thresholds) on the writers' rows (data/rules/backstop_written_*.jsonl), against the
    rules alone: what the backstops add on data like, but not in, their training."""
    from tasks.core.records import HIGH_RISK_LEVELS
    from tasks.evaluate.statistics import wilson
    from tasks.risk.classifier import RiskClassifier
    from tasks.risk.lexicon import load_lexicon

    lexicon = load_lexicon(DEFAULT_LEXICON)
    assert lexicon.intent is not None and lexicon.acuity is not None
    folds = {}
    for name, (rows, _) in (("intent", intent_rows()), ("acuity", acuity_rows())):
        models = [
            _model(*fit([r for i, r in enumerate(rows) if i % FOLDS != k]), KEEP, "cv", {})
            for k in range(FOLDS)
        ]
        scored = [(0.0, r.group) for r in rows]
        for k, model in enumerate(models):
            backstop = Backstop(model)
            for i in range(k, len(rows), FOLDS):
                scored[i] = (
                    backstop.probability(normalize(rows[i].text, rows[i].lang), rows[i].lang)[0],
                    rows[i].group,
                )
        t = choose_threshold(scored, MAX_FA, MIN_THRESHOLD)
        update: dict[str, object] = {"thresholds": {"zh": t, "en": t}}
        if name == "acuity":
            tc = choose_threshold(scored, MAX_FA_CRITICAL, t)
            update["critical_thresholds"] = {"zh": tc, "en": tc}
        fold_of = {(r.text, r.lang): i % FOLDS for i, r in enumerate(rows)}
        folds[name] = ([m.model_copy(update=update) for m in models], fold_of)

    def labeller(intent: BackstopWeights | None, acuity: BackstopWeights | None) -> RiskClassifier:
        return RiskClassifier(
            lexicon.model_copy(
                update={
                    "intent": lexicon.intent.model_copy(update={"backstop": intent}),
                    "acuity": lexicon.acuity.model_copy(update={"backstop": acuity}),
                }
            )
        )

    rules, cache, counts = labeller(None, None), {}, Counter()
    for r in _written():
        key = (r["text"], r["lang"])
        ki, ka = folds["intent"][1][key], folds["acuity"][1].get(key, 0)
        if (ki, ka) not in cache:
            cache[(ki, ka)] = labeller(folds["intent"][0][ki], folds["acuity"][0][ka])
        for who, clf in (("rules", rules), ("with backstops", cache[(ki, ka)])):
            counts[(r["label"], who)] += clf.classify(*key).risk_level in HIGH_RISK_LEVELS
        counts[(r["label"], "n")] += 1
    for label in ("critical", "harmful", "mild", "benign_lookalike"):
        n = counts[(label, "n")]
        shares = [
            f"{who} {counts[(label, who)]}/{n} = {wilson(counts[(label, who)], n).rate:.1%}"
            for who in ("rules", "with backstops")
        ]
        print(f"  {label:17s} high/critical: {' -> '.join(shares)}")


def dump(model: BackstopWeights) -> str:
    return json.dumps(model.model_dump(), ensure_ascii=False, indent=0) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=RULES)
    parser.add_argument("--no-shared", action="store_true", help="ignore ../shared/data")
    parser.add_argument(
        "--msb-holdout",
        metavar="PREFIX",
        help="only report: train without MedSafetyBench PREFIX* files, score them",
    )
    parser.add_argument(
        "--cv-labeller",
        action="store_true",
        help="only report: the whole labeller out of fold on the written rows, against the rules alone",
    )
    args = parser.parse_args()
    if args.cv_labeller:
        cv_labeller()
        return
    if args.msb_holdout:
        msb_holdout(args.msb_holdout)
        return
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, (model, report) in (
        (OUT.name, train(shared=not args.no_shared)),
        (ACUITY_OUT.name, train_acuity()),
    ):
        (args.out_dir / name).write_text(dump(model), encoding="utf-8")
        print(f"wrote {args.out_dir / name}: {len(model.weights)} features, sources {model.sources}")
        print(f"  {report}")


if __name__ == "__main__":
    main()
