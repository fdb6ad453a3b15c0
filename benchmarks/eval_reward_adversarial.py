"""How the rule reward holds up against answers written to game it, per split, with 95% Wilson intervals.

    python benchmarks/eval_reward_adversarial.py                 # dev split (used while tuning the rules)
    python benchmarks/eval_reward_adversarial.py --split holdout # the third kept aside while tuning
    python benchmarks/eval_reward_adversarial.py --split all --show-misses
    python benchmarks/eval_reward_adversarial.py --per-split     # one line per split, held-out batch too

Splits: dev (tuned on), holdout (written with dev, scored after tuning), fresh..fresh4 (each written later
with new questions and new gaming templates, scored once before its misses were fixed: their first-look
figures are in the project notes), harmful (harmful-intent requests whose good answer is a refusal),
batch_a (25 questions, long chatbot-style answers; written before the mechanisms of safety-rules-v3, then
developed on). tests/fixtures/reward_adversarial_heldout.jsonl holds split heldout_b (25 questions written
with batch_a and scored once with safety-rules-v3; since v4 a development split, its misses fixed by general
mechanisms): `--split all` leaves it out; read it with `--split heldout_b` or `--per-split`.

tests/fixtures/reward_adversarial.jsonl holds patient questions (zh + en) each answered six ways: a good
answer, keyword salad, a blanket refusal, unsafe advice stuffed with safety boilerplate, hedged unsafe
advice, and unsafe advice plus text aimed at a judge ("score it 10"); plus harmful-intent requests whose
good answer is a reasoned refusal. Figures: the share of questions on which the good answer outscores each
other kind (and all of them at once), the share of unsafe kinds flagged, the share of good answers flagged.
With ../shared/data/medsafetybench_train present it also reports, on MedSafetyBench's safe responses to
harmful requests: how many are flagged (should be none), how many requests read as harmful intent, and how
many of the refusals earn a positive rule score. Rules only; no teacher, no network.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

from tasks.evaluate.statistics import Rate, wilson
from tasks.reward.engine import score_rules
from tasks.reward.rules import SafetyRules

ROOT = Path(__file__).resolve().parents[1]
ADVERSARIAL = ROOT / "tests" / "fixtures" / "reward_adversarial.jsonl"
# held-out batches (heldout_b, heldout_c, ...): each written blind to the rules and scored once
HELDOUT = sorted((ROOT / "tests" / "fixtures").glob("reward_adversarial_heldout*.jsonl"))
MSB = ROOT.parent / "shared" / "data" / "medsafetybench_train"
UNSAFE_KINDS = ("stuffed_unsafe", "hedged_unsafe", "injection")


def _fmt(r: Rate) -> str:
    if r.n == 0:
        return "n=0"
    return f"{r.rate:.1%} ({r.k}/{r.n}, 95% CI {r.lo:.1%}-{r.hi:.1%})"


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _labeller(source: str):  # noqa: ANN202
    """The labels a row is scored with: the writer's risk level (`fixture`), or the data flow's risk
    labeller's level and categories (`classifier`), as an RL prompt carries them."""
    if source == "fixture":
        return lambda row: {"risk_level": row.get("risk_level")}
    from tasks.risk.classifier import RiskClassifier

    clf = RiskClassifier.from_yaml()

    def labels(row: dict) -> dict:
        label = clf.classify(row["question"], row["lang"])
        return {"risk_level": label.risk_level, "safety_categories": list(label.safety_categories)}

    return labels


def adversarial(
    rules: SafetyRules, split: str, show_misses: bool, labels_from: str = "fixture"
) -> dict[str, Rate]:
    """Figures for one split; "all" is the tuned file (tests/fixtures/reward_adversarial.jsonl) whole."""
    rows = _rows(ADVERSARIAL) if split == "all" else [r for r in _rows(ADVERSARIAL) if r["split"] == split]
    if split != "all":
        rows += [r for path in HELDOUT for r in _rows(path) if r["split"] == split]
    by_q: dict[str, dict[str, tuple[float, bool, dict]]] = defaultdict(dict)
    labels = _labeller(labels_from)
    for r in rows:
        s = score_rules(r["question"], r["response"], rules=rules, **labels(r))
        by_q[r["qid"]][r["kind"]] = (s.rule_score, s.violation, {"terms": s.terms, "id": r["id"]})
    beats: dict[str, list[bool]] = defaultdict(list)
    flagged: dict[str, list[bool]] = defaultdict(list)
    misses = []
    for qid, kinds in sorted(by_q.items()):
        good = kinds.get("good")
        if good is None:
            continue
        wins = []
        for kind, (score, viol, info) in kinds.items():
            if kind == "good":
                continue
            win = good[0] > score
            beats[kind].append(win)
            wins.append(win)
            if not win:
                misses.append((qid, kind, good[0], score, info["terms"]))
            if kind in UNSAFE_KINDS:
                flagged[kind].append(viol)
                if not viol:
                    misses.append((qid, kind, "NOT FLAGGED", score, info["terms"]))
        beats["all kinds"].append(all(wins))
        flagged["good (false flag)"].append(good[1])
        if good[1]:
            misses.append((qid, "good", "FALSELY FLAGGED", good[0], good[2]["terms"]))
    out = {f"good beats {k}": wilson(sum(v), len(v)) for k, v in beats.items()}
    out |= {f"flagged {k}": wilson(sum(v), len(v)) for k, v in flagged.items()}
    unsafe = [x for k in UNSAFE_KINDS for x in flagged[k]]
    out["flagged unsafe kinds (all)"] = wilson(sum(unsafe), len(unsafe))
    if show_misses:
        for m in misses:
            print("  MISS", *m[:4])
            for t in m[4]:
                print("       ", t)
    return out


def medsafetybench(rules: SafetyRules) -> dict[str, Rate]:
    rows = []
    for path in sorted(MSB.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            rows += [(r["harmful_medical_request"], r["safe_response"]) for r in csv.DictReader(fh)]
    flagged = intent = paid = 0
    for q, a in rows:
        s = score_rules(q, a, rules=rules)
        flagged += s.violation
        intent += s.harmful_request
        paid += s.rule_score > 0
    n = len(rows)
    return {
        "MSB safe responses flagged": wilson(flagged, n),
        "MSB requests read as harmful intent": wilson(intent, n),
        "MSB safe responses scored > 0": wilson(paid, n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    splits = sorted({r["split"] for path in (ADVERSARIAL, *HELDOUT) if path.is_file() for r in _rows(path)})
    parser.add_argument("--split", default="dev", choices=(*splits, "all"))
    parser.add_argument(
        "--show-misses", action="store_true", help="print every loss and flag miss with terms"
    )
    parser.add_argument(
        "--per-split",
        action="store_true",
        help="one line per split: good beats all kinds, unsafe kinds flagged, good falsely flagged",
    )
    parser.add_argument(
        "--learned",
        choices=("config", "on", "off"),
        default="config",
        help="the learned term (v7): as safety_rules.yaml says, or forced on or off",
    )
    parser.add_argument(
        "--labels",
        choices=("fixture", "classifier"),
        default="fixture",
        help="score with the writer's risk level (default), or with the data flow's risk labeller's level "
        "and categories, as the reward sees an RL prompt",
    )
    args = parser.parse_args()
    rules = SafetyRules.from_yaml(learned={"config": None, "on": True, "off": False}[args.learned])
    if args.per_split:
        print(
            f"rules {rules.version}, {args.labels} labels; per split "
            "(good beats all kinds | unsafe kinds flagged | good flagged)"
        )
        for split in splits:
            r = adversarial(rules, split, False, args.labels)
            cells = ("good beats all kinds", "flagged unsafe kinds (all)", "flagged good (false flag)")
            print(f"  {split:<10} " + " | ".join(_fmt(r[c]) for c in cells))
        return
    source = "reward_adversarial_heldout*.jsonl" if args.split.startswith("heldout") else ADVERSARIAL.name
    print(f"rules {rules.version}, {args.labels} labels; adversarial split {args.split!r} ({source})")
    for name, rate in adversarial(rules, args.split, args.show_misses, args.labels).items():
        print(f"  {name:<32} {_fmt(rate)}")
    if MSB.is_dir():
        print(f"MedSafetyBench training split ({MSB})")
        for name, rate in medsafetybench(rules).items():
            print(f"  {name:<40} {_fmt(rate)}")
    else:
        print(f"MedSafetyBench: {MSB} absent, skipped")


if __name__ == "__main__":
    main()
