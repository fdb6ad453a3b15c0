"""Train the harmful-intent backstop (tasks/risk/backstop.py) and write its weights file.

    python -m tasks.risk.train_backstop                 # writes data/rules/intent_backstop.json
    python -m tasks.risk.train_backstop --out FILE.json --no-shared

Training rows (each source counted in the file's `sources`):
- data/rules/intent_backstop_train.jsonl: harmful requests and benign look-alikes written for this
  model (zh + en), separate from every probe set;
- ../shared/data/medsafetybench_train/*.csv (harmful requests, en) when present and not --no-shared:
  read, never copied; the weights derived from it are documented in docs/risk.md;
- benign medical questions: data/over_refusal/over_refusal.jsonl, the medical-o1 samples in data/samples
  and, when present, ../shared/data/medical_o1_zh_sample.json.
L2-regularized logistic regression on L2-normalized binary n-gram vectors, full-batch gradient descent
from zero (deterministic), each (language, label) group weighted equally. The threshold (one for both
languages) is the lowest probability, at least MIN_THRESHOLD (0.7), at which at most 5% of the dev
look-alikes (the dev split's look-alike questions of tests/fixtures/risk_questions.jsonl) and at most 5% of
the dev mild questions (probe sets C and D, that split's mild questions) reach it. The harmful questions
of the same dev sets are reported, not used.
numpy only, CPU, seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from tasks.core.workdir import ASSETS_DIR
from tasks.risk.backstop import Backstop, BackstopWeights, features
from tasks.risk.lexicon import normalize

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
TRAIN = ASSETS_DIR / "rules" / "intent_backstop_train.jsonl"
OUT = ASSETS_DIR / "rules" / "intent_backstop.json"
DEV = [ROOT / "tests" / "fixtures" / f for f in ("risk_probes_blind_c.jsonl", "risk_probes_blind_d.jsonl")]
DEV_QUESTIONS = ROOT / "tests" / "fixtures" / "risk_questions.jsonl"
MAX_FA = 0.05
# The dev rule alone gave 0.52 here, at which 11 of the 42 benign look-alike sentences of the unit tests
# (tests/tasks/risk: test_risk_labels, test_intent, test_intent_ama, test_backstop) reached it; at 0.7, 1.
MIN_THRESHOLD = 0.7
KEEP = 4000  # features kept in the shipped file, by |weight|

Row = tuple[str, str, int]  # (text, lang, harmful)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_rows(shared: bool = True, msb_exclude: str | None = None) -> tuple[list[Row], dict[str, int]]:
    """Every training row and the count per source (msb_exclude: leave out the MedSafetyBench files whose
    name starts with it, to measure the backstop on them)."""
    sources: dict[str, list[Row]] = {
        "intent_backstop_train": [(r["text"], r["lang"], int(r["harmful"])) for r in _jsonl(TRAIN)],
        "over_refusal": [
            (r["question"], r["lang"], 0) for r in _jsonl(ASSETS_DIR / "over_refusal" / "over_refusal.jsonl")
        ],
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
            sources[f"medical_o1:{path.name}"] = [(str(r.get("Question") or ""), lang, 0) for r in rows]
    msb = sorted((SHARED / "medsafetybench_train").glob("*.csv")) if shared else []
    msb = [path for path in msb if not (msb_exclude and path.name.startswith(msb_exclude))]
    if msb:
        rows = []
        for path in msb:
            with path.open(encoding="utf-8", newline="") as f:
                rows += [(r["harmful_medical_request"], "en", 1) for r in csv.DictReader(f)]
        sources["medsafetybench_train"] = rows
    every = [row for rows in sources.values() for row in rows if row[0].strip()]
    return every, {name: len(rows) for name, rows in sources.items()}


def dev_rows() -> list[tuple[str, str, int, str]]:
    """Dev questions (text, lang, harmful, group): harmful, mild and look-alike; serious patient questions
    are left out."""
    out = []
    for path in DEV:
        for r in _jsonl(path):
            if r["expect"] in ("harmful", "mild"):
                out.append((r["question"], r["lang"], int(r["expect"] == "harmful"), r["expect"]))
    for r in _jsonl(DEV_QUESTIONS):
        if r["split"] == "dev" and (r["kind"] in ("harmful", "lookalike") or r["expect"] == "mild"):
            group = r["kind"] if r["kind"] in ("harmful", "lookalike") else "mild"
            out.append((r["question"], r["lang"], int(r["kind"] == "harmful"), group))
    return out


def fit(
    rows: list[Row], l2: float = 1e-4, steps: int = 6000, lr: float = 15.0, min_df: int = 2
) -> tuple[float, dict[str, float]]:
    """Logistic regression on the rows' n-grams (features seen in at least min_df rows)."""
    feats = [features(normalize(text, lang), lang) for text, lang, _ in rows]
    df = Counter(f for fs in feats for f in fs)
    vocab = {f: i for i, f in enumerate(sorted(f for f, n in df.items() if n >= min_df))}
    idx, row_of, val = [], [], []
    for r, fs in enumerate(feats):
        if fs:
            scale = 1.0 / math.sqrt(len(fs))  # as at inference: every feature of the text counts
            for f in fs:
                if (i := vocab.get(f)) is not None:
                    idx.append(i)
                    row_of.append(r)
                    val.append(scale)
    idx_a, row_a, val_a = np.array(idx), np.array(row_of), np.array(val)
    y = np.array([h for _, _, h in rows], dtype=float)
    groups = Counter((lang, h) for _, lang, h in rows)
    sw = np.array([len(rows) / (len(groups) * groups[(lang, h)]) for _, lang, h in rows])
    sw /= sw.sum()
    w, b = np.zeros(len(vocab)), 0.0
    for _ in range(steps):
        z = np.bincount(row_a, weights=w[idx_a] * val_a, minlength=len(rows)) + b
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))
        g = sw * (p - y)
        grad_w = np.bincount(idx_a, weights=g[row_a] * val_a, minlength=len(vocab)) + l2 * w
        w -= lr * grad_w
        b -= lr * float(g.sum())
    names = sorted(vocab, key=vocab.__getitem__)
    return b, {names[i]: float(w[i]) for i in range(len(names))}


def choose_thresholds(
    model: Backstop, dev: list[tuple[str, str, int, str]]
) -> tuple[dict[str, float], dict[str, dict]]:
    """One threshold for both languages: the lowest (>= MIN_THRESHOLD) at which at most MAX_FA of the dev
    look-alikes and at most MAX_FA of the dev mild questions reach it (both languages pooled)."""
    scored = [(model.probability(normalize(t, lang), lang)[0], lang, h, g) for t, lang, h, g in dev]
    t = MIN_THRESHOLD
    for group in ("lookalike", "mild"):
        benign = sorted((p for p, _, h, g in scored if g == group and not h), reverse=True)
        allowed = math.floor(MAX_FA * len(benign))
        if len(benign) > allowed:
            t = max(t, benign[allowed] + 1e-4)
    t = math.ceil(t * 1e4) / 1e4
    report = {
        lang: {
            f"{group}_reached": f"{sum(p >= t for p, lg, _, g in scored if lg == lang and g == group)}/"
            f"{sum(lg == lang and g == group for _, lg, _, g in scored)}"
            for group in ("harmful", "lookalike", "mild")
        }
        for lang in ("zh", "en")
    }
    return {"zh": t, "en": t}, report


def train(
    shared: bool = True, keep: int = KEEP, msb_exclude: str | None = None
) -> tuple[BackstopWeights, dict[str, dict]]:
    rows, sources = training_rows(shared, msb_exclude)
    bias, weights = fit(rows)
    top = sorted(weights, key=lambda f: (-abs(weights[f]), f))[:keep]
    kept = {f: round(weights[f], 4) for f in sorted(top)}
    provisional = BackstopWeights(
        trained_by="python -m tasks.risk.train_backstop" + ("" if shared else " --no-shared"),
        sources=sources,
        bias=round(bias, 4),
        thresholds={"zh": 0.5, "en": 0.5},
        weights=kept,
    )
    thresholds, report = choose_thresholds(Backstop(provisional), dev_rows())
    return provisional.model_copy(update={"thresholds": thresholds}), report


def msb_holdout(prefix: str) -> None:
    """Train without the MedSafetyBench files named prefix* and report, on those files, the share the
    backstop alone and the whole labeller (shipped lexicon + that backstop) label high or critical."""
    from tasks.core.records import HIGH_RISK_LEVELS
    from tasks.evaluate.statistics import wilson
    from tasks.risk.classifier import RiskClassifier
    from tasks.risk.lexicon import DEFAULT_LEXICON, load_lexicon

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-shared", action="store_true", help="ignore ../shared/data")
    parser.add_argument(
        "--msb-holdout",
        metavar="PREFIX",
        help="only report: train without MedSafetyBench PREFIX* files, score them",
    )
    args = parser.parse_args()
    if args.msb_holdout:
        msb_holdout(args.msb_holdout)
        return
    model, report = train(shared=not args.no_shared)
    args.out.write_text(json.dumps(model.model_dump(), ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(model.weights)} features, sources {model.sources}")
    for lang, r in report.items():
        print(f"  {lang}: threshold {model.thresholds[lang]}; dev questions reaching it: {r}")


if __name__ == "__main__":
    main()
