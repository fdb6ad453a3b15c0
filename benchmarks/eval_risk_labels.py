"""How often the risk labeller calls serious questions serious, and harmless ones not, with 95% intervals.

    python benchmarks/eval_risk_labels.py                      # the shipped lexicon
    python benchmarks/eval_risk_labels.py --lexicon old.yaml   # another lexicon, to compare
    python benchmarks/eval_risk_labels.py --split holdout      # only the held-out third of the written set
    python benchmarks/eval_risk_labels.py --questions FILE.jsonl   # only a labelled file of your own

--questions FILE (repeatable): JSONL, one question a line: {"question": "...", "lang": "en" | "zh"
(default en), "group": "..."}, group being any label of yours (say critical / serious / harmful-request);
reports, per group, the share labelled high or critical and the level distribution. With it, only those files
are reported.

Reports (each rate as k/n with a Wilson 95% interval):
- MedSafetyBench training split (../shared/data/medsafetybench_train/*.csv, 900 harmful requests, en):
  share labelled high or critical, overall and per AMA category; skipped when ../shared is absent;
- tests/fixtures/risk_questions.jsonl (written for this project; zh + en): serious patient questions and
  harmful-intent requests labelled high/critical, mild patient questions labelled high/critical (false
  alarms), per split (dev: tuned against; holdout: not looked at while tuning) and language;
- tests/fixtures/risk_probes.jsonl: rounds of fresh patient questions (zh + en), each measured once before
  the lexicon was changed for it;
- tests/fixtures/risk_probes_blind.jsonl: 48 serious and 48 mild patient questions (zh + en) written before
  the acuity classes of lexicon 1.3 and never tuned on; totals only, per language (no question is printed);
- tests/fixtures/risk_probes_blind_c.jsonl … _m.jsonl: blind sets C to M, each scored once and a dev set
  since (C for 1.4, D for 1.5, E for 1.7, F for 1.8, G for 1.9, H for 1.10, I once with 1.10, J once with
  1.11, K and L once with drafts of 1.12, M once with 1.12); totals only;
- tests/fixtures/risk_probes_heldout_18.jsonl: 36 questions written with lexicon 1.8's mechanisms and held
  out from tuning them; totals only;
- tests/fixtures/risk_probes_heldout_19.jsonl: 19 questions written with lexicon 1.9's mechanisms and held
  out from tuning them; totals only;
- tests/fixtures/risk_probes_written_19.jsonl: 51 questions written for lexicon 1.9 and tuned on (30 of them
  scored once before that); in-sample, totals only;
- tests/fixtures/risk_probes_heldout_110.jsonl / _written_110.jsonl: 16 held-out and 24 tuned-on questions
  written for lexicon 1.10 (mild look-alikes and their dangerous counterparts); totals only;
- tests/fixtures/risk_probes_heldout_111.jsonl / _written_111.jsonl: 18 held-out and 20 tuned-on short
  title-style questions written for lexicon 1.11 (a strong sign asked about now, look-alikes); totals only;
- the level distribution on the shipped medical-o1 samples (data/samples, ../shared sample);
- labelling speed: microseconds a row for the data flow's labelling call on the medical-o1 sample rows
  (question, reasoning, answer), each row's fastest of --repeat runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from tasks.core.records import HIGH_RISK_LEVELS, RISK_LEVELS
from tasks.core.workdir import ASSETS_DIR
from tasks.evaluate.statistics import wilson
from tasks.risk.classifier import RiskClassifier
from tasks.risk.lexicon import DEFAULT_LEXICON
from tasks.risk.parallel_label import label_rows

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FIXTURE = ROOT / "tests" / "fixtures" / "risk_questions.jsonl"
PROBES = ROOT / "tests" / "fixtures" / "risk_probes.jsonl"
BLIND = ROOT / "tests" / "fixtures" / "risk_probes_blind.jsonl"
BLIND_C = ROOT / "tests" / "fixtures" / "risk_probes_blind_c.jsonl"
BLIND_D = ROOT / "tests" / "fixtures" / "risk_probes_blind_d.jsonl"
BLIND_E = ROOT / "tests" / "fixtures" / "risk_probes_blind_e.jsonl"
BLIND_F = ROOT / "tests" / "fixtures" / "risk_probes_blind_f.jsonl"
BLIND_G = ROOT / "tests" / "fixtures" / "risk_probes_blind_g.jsonl"
BLIND_H = ROOT / "tests" / "fixtures" / "risk_probes_blind_h.jsonl"
BLIND_I = ROOT / "tests" / "fixtures" / "risk_probes_blind_i.jsonl"
BLIND_J = ROOT / "tests" / "fixtures" / "risk_probes_blind_j.jsonl"
BLIND_K = ROOT / "tests" / "fixtures" / "risk_probes_blind_k.jsonl"
BLIND_L = ROOT / "tests" / "fixtures" / "risk_probes_blind_l.jsonl"
BLIND_M = ROOT / "tests" / "fixtures" / "risk_probes_blind_m.jsonl"
# written with lexicon 1.8's mechanisms, by their author, and never tuned on (docs/risk.md)
HELDOUT_18 = ROOT / "tests" / "fixtures" / "risk_probes_heldout_18.jsonl"
HELDOUT_19 = ROOT / "tests" / "fixtures" / "risk_probes_heldout_19.jsonl"
WRITTEN_19 = ROOT / "tests" / "fixtures" / "risk_probes_written_19.jsonl"
# lexicon 1.10 (false alarms on mild posts): written for it; the held-out part never tuned on
HELDOUT_110 = ROOT / "tests" / "fixtures" / "risk_probes_heldout_110.jsonl"
WRITTEN_110 = ROOT / "tests" / "fixtures" / "risk_probes_written_110.jsonl"
# lexicon 1.11 (short title-style posts: one strong sign asked about now); the held-out part never tuned on
HELDOUT_111 = ROOT / "tests" / "fixtures" / "risk_probes_heldout_111.jsonl"
WRITTEN_111 = ROOT / "tests" / "fixtures" / "risk_probes_written_111.jsonl"


def _rate(k: int, n: int) -> str:
    r = wilson(k, n)
    if not n:
        return "n=0"
    return f"{k}/{n} = {r.rate:.1%} [{r.lo:.1%}, {r.hi:.1%}]"


def medsafetybench(clf: RiskClassifier) -> None:
    files = sorted((SHARED / "medsafetybench_train").glob("*.csv"))
    if not files:
        print("MedSafetyBench train: skipped (../shared/data/medsafetybench_train absent)")
        return
    hits: dict[str, list[bool]] = defaultdict(list)
    cats: Counter[str] = Counter()
    for path in files:
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                label = clf.classify(row["harmful_medical_request"], "en")
                hits[path.stem.rsplit("_", 1)[-1]].append(label.risk_level in HIGH_RISK_LEVELS)
                cats.update(label.safety_categories)
    every = [h for v in hits.values() for h in v]
    print(f"MedSafetyBench train (en, {len(files)} files): high/critical {_rate(sum(every), len(every))}")
    for cat, v in sorted(hits.items()):
        print(f"  AMA category {cat}: {_rate(sum(v), len(v))}")
    print(f"  categories assigned: {dict(cats)}")


def fixture(clf: RiskClassifier, split: str | None) -> None:
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]
    groups: dict[tuple, list[bool]] = defaultdict(list)
    misses = []
    for row in rows:
        if split and row["split"] != split:
            continue
        label = clf.classify(row["question"], row["lang"])
        high = label.risk_level in HIGH_RISK_LEVELS
        what = (
            (row["kind"] if row["kind"] == "lookalike" else "mild") + " (false alarm)"
            if row["expect"] == "mild"
            else row["kind"]
        )
        for key in ((row["split"], what, "all"), (row["split"], what, row["lang"])):
            groups[key].append(high)
        if high != (row["expect"] == "serious") and row["split"] == "dev":  # holdout misses: counted only
            misses.append(f"    {row['id']} {label.risk_level:8s} {row['question']}")
    print(f"{FIXTURE.relative_to(ROOT)}: share labelled high/critical")
    for key in sorted(groups):
        v = groups[key]
        print(f"  {key[0]:7s} {key[1]:18s} {key[2]:3s} {_rate(sum(v), len(v))}")
    if misses:
        print("  dev misses (holdout misses are counted, not shown):")
        print("\n".join(misses))


def probes(clf: RiskClassifier) -> None:
    """Rounds of fresh patient questions (tests/fixtures/risk_probes.jsonl): each round was first measured
    before the lexicon was changed for it; the rounds after it show how far those changes carried."""
    rows = [json.loads(line) for line in PROBES.read_text(encoding="utf-8").splitlines() if line.strip()]
    groups: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for row in rows:
        high = clf.classify(row["question"], row["lang"]).risk_level in HIGH_RISK_LEVELS
        groups[(row["round"], "serious" if row["expect"] == "serious" else "mild (false alarm)")].append(high)
    print(f"{PROBES.relative_to(ROOT)}: share labelled high/critical")
    for key in sorted(groups):
        v = groups[key]
        print(f"  {key[0]:7s} {key[1]:18s} {_rate(sum(v), len(v))}")


def blind(clf: RiskClassifier, path: Path = BLIND) -> None:
    """A blind probe set: totals only, so that reading the report does not turn it into a tuning set.

    `expect` is serious/critical/harmful (should be labelled high or critical) or mild (a false alarm if so).
    """
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    groups: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for row in rows:
        high = clf.classify(row["question"], row["lang"]).risk_level in HIGH_RISK_LEVELS
        what = "mild (false alarm)" if row["expect"] == "mild" else row["expect"]
        groups[(what, "all")].append(high)
        groups[(what, row["lang"])].append(high)
    print(f"{path.relative_to(ROOT)}: share labelled high/critical (totals only)")
    for key in sorted(groups):
        v = groups[key]
        print(f"  {key[0]:18s} {key[1]:3s} {_rate(sum(v), len(v))}")


def questions_file(clf: RiskClassifier, path: Path) -> None:
    """A labelled file of questions: per group, the share labelled high/critical and the level counts."""
    groups: dict[str, list[str]] = defaultdict(list)
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not str(row.get("question") or "").strip():
            raise SystemExit(f"{path}:{i}: needs a non-empty 'question'")
        label = clf.classify(str(row["question"]), str(row.get("lang") or "en"))
        groups[str(row.get("group") or "all")].append(label.risk_level)
    print(f"{path}: share labelled high/critical")
    for group in sorted(groups):
        levels = groups[group]
        counts = Counter(levels)
        high = sum(lv in HIGH_RISK_LEVELS for lv in levels)
        dist = ", ".join(f"{lv}: {counts[lv]}" for lv in RISK_LEVELS)
        print(f"  {group:18s} {_rate(high, len(levels))}  {{{dist}}}")


def _sample_rows() -> list[tuple[str, list[dict]]]:
    out = []
    for path, lang in (
        (ASSETS_DIR / "samples" / "medical_o1_zh.json", "zh"),
        (ASSETS_DIR / "samples" / "medical_o1_en.json", "en"),
        (SHARED / "medical_o1_zh_sample.json", "zh"),
    ):
        if not path.is_file():
            continue
        rows = [
            {
                "id": f"{lang}{i}",
                "lang": lang,
                "question": str(r.get("Question") or ""),
                "think": str(r.get("Complex_CoT") or ""),
                "answer": str(r.get("Response") or ""),
            }
            for i, r in enumerate(json.loads(path.read_text(encoding="utf-8")))
        ]
        out.append((path.name if path.parent.name == "samples" else f"shared/{path.name}", rows))
    return out


def samples_and_speed(clf: RiskClassifier, repeat: int) -> None:
    every = []
    for name, rows in _sample_rows():
        labels = label_rows(rows, clf)
        counts = Counter(label.risk_level for label in labels if label)
        cats = Counter(c for label in labels if label for c in label.safety_categories)
        print(f"{name} ({len(rows)} rows): {{{', '.join(f'{lv}: {counts[lv]}' for lv in RISK_LEVELS)}}}")
        print(f"  categories: {dict(sorted(cats.items()))}")
        every += rows
    if not every:
        return
    label_rows(every, clf)  # warm: cut automatons are built on first use
    total = 0.0
    for row in every:  # each row's fastest of `repeat` runs: robust to a machine shared with other jobs
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            label_rows([row], clf)
            best = min(best, time.perf_counter() - t)
        total += best
    print(
        f"speed: {total / len(every) * 1e6:.1f} µs a row (the data flow's labelling call; sum of each "
        f"row's fastest of {repeat} runs over {len(every)} sample rows)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lexicon", type=Path, default=DEFAULT_LEXICON)
    parser.add_argument("--split", choices=("dev", "holdout"), default=None)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--questions", type=Path, action="append", default=[], metavar="FILE.jsonl")
    args = parser.parse_args()
    for path in args.questions:
        if not path.is_file():
            raise SystemExit(f"{path}: no such file; pass a JSONL file of questions (see --help)")
    clf = RiskClassifier.from_yaml(args.lexicon)
    print(f"lexicon {clf.lexicon.version} ({args.lexicon})")
    if args.questions:
        for path in args.questions:
            questions_file(clf, path)
        return
    medsafetybench(clf)
    fixture(clf, args.split)
    probes(clf)
    blind(clf)
    # C to M: scored once blind, dev sets since; the held-out and written sets of 1.8 to 1.11
    for path in (
        BLIND_C,
        BLIND_D,
        BLIND_E,
        BLIND_F,
        BLIND_G,
        BLIND_H,
        BLIND_I,
        BLIND_J,
        BLIND_K,
        BLIND_L,
        BLIND_M,
        HELDOUT_18,
        HELDOUT_19,
        WRITTEN_19,
        HELDOUT_110,
        WRITTEN_110,
        HELDOUT_111,
        WRITTEN_111,
    ):
        if path.is_file():
            blind(clf, path)
    if not args.no_speed:
        samples_and_speed(clf, args.repeat)


if __name__ == "__main__":
    main()
