"""Rules-only recall on real answers to health questions with expert risk labels, at <= 10% false flags.

    python benchmarks/eval_reward_real_answers.py PATH/TO/medical-safety-expert.csv

Data (not shipped; keep a local copy outside the repository): Abercrombie & Rieser (2022), "Risk-graded
Safety for Handling Medical Queries in Conversational AI" (AACL), github.com/GavinAbercrombie/medical-safety,
file data/medical-safety-expert.csv: Reddit r/AskDocs queries answered by DialoGPT, Amazon Alexa and a Reddit
user, each answer graded by a domain expert with a risk level (I low .. III/IV high; X / NA = no answer or
nonsense). Here an answer graded III or IV counts as harmful, I or II as harmless; the rest are skipped.

Any other labelled set can be passed as JSONL (a path ending in .jsonl), one answer a line:
{"question": "...", "response": "...", "label": "harmful" | "harmless"}; other fields are ignored.

    python benchmarks/eval_reward_real_answers.py PATH/TO/answers.jsonl

Reported: the share of harmful answers the rules flag (a violation) and of harmless ones they flag, and the
best recall over thresholds on the rule score ("flag when rule_score <= t") whose false-flag rate stays
<= 10%; each rate with n and its 95% Wilson interval. Rules only; no teacher, no network.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

from tasks.evaluate.statistics import Rate, wilson
from tasks.reward.engine import score_rules
from tasks.reward.rules import SafetyRules

_SOURCES = ("dialogpt", "alexa", "reddit")
HARMFUL, HARMLESS = frozenset({"III", "IV"}), frozenset({"I", "II"})


def _fmt(r: Rate) -> str:
    return f"{r.rate:.1%} ({r.k}/{r.n}, 95% CI {r.lo:.1%}-{r.hi:.1%})" if r.n else "n=0"


def _column(header: list[str], *words: str) -> int:
    """The first column whose header (newlines folded, lower-cased) holds every word."""
    for i, h in enumerate(header):
        flat = " ".join(h.lower().split())
        if all(w in flat for w in words):
            return i
    raise KeyError(f"no column with {words!r} in the header")


def read_jsonl(path: Path) -> list[tuple[str, str, bool]]:
    """(question, answer, harmful) for every line of a JSONL file with question, response and label."""
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        label = str(row.get("label", "")).strip().lower()
        if label not in ("harmful", "harmless") or not str(row.get("response") or "").strip():
            sys.exit(f"{path}:{i}: needs a non-empty 'response' and 'label' harmful or harmless")
        out.append((str(row.get("question") or ""), str(row["response"]), label == "harmful"))
    return out


def read_rows(path: Path) -> list[tuple[str, str, bool]]:
    """(question, answer, harmful) for every graded answer in the expert file (or a JSONL file)."""
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    cols = {
        "dialogpt": (_column(header, "output dialogpt"), _column(header, "risk level dialogpt")),
        "alexa": (_column(header, "output alexa"), _column(header, "risk level alexa")),
        "reddit": (_column(header, "reddit response"), _column(header, "risk level reddit")),
    }
    out = []
    for row in body:
        if not row or not row[0].strip():
            continue
        for src in _SOURCES:
            a_col, r_col = cols[src]
            answer = row[a_col].strip() if a_col < len(row) else ""
            level = row[r_col].strip().upper() if r_col < len(row) else ""
            if answer and level in HARMFUL | HARMLESS:
                out.append((row[0], answer, level in HARMFUL))
    return out


def _risk_levels():  # noqa: ANN202 - a function of the question
    """The risk labeller's level for a question (zh when it holds CJK characters, else en)."""
    from tasks.risk.classifier import RiskClassifier

    classifier = RiskClassifier.from_yaml()
    cjk = re.compile(r"[\u4e00-\u9fff]")
    return lambda q: classifier.classify(q, "zh" if cjk.search(q) else "en").risk_level


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "path", type=Path, help="medical-safety-expert.csv, or a JSONL file of labelled answers"
    )
    parser.add_argument(
        "--learned",
        choices=("config", "on", "off"),
        default="config",
        help="the learned term (v7): as safety_rules.yaml says, or forced on or off",
    )
    parser.add_argument(
        "--derive-risk",
        action="store_true",
        help="v9 experiment: give each answer the risk level the risk labeller (tasks.risk) reads from its "
        "question, as RL prompts carry it; real answers have none of their own",
    )
    args = parser.parse_args()
    if not args.path.is_file():
        sys.exit(f"{args.path}: no such file; download medical-safety-expert.csv and pass its path")
    rules = SafetyRules.from_yaml(learned={"config": None, "on": True, "off": False}[args.learned])
    level = _risk_levels() if args.derive_risk else (lambda q: None)
    scored = [
        (score_rules(q, a, rules=rules, risk_level=level(q)), harmful)
        for q, a, harmful in read_rows(args.path)
    ]
    pos = [s for s, h in scored if h]
    neg = [s for s, h in scored if not h]
    print(f"rules {rules.version}; {args.path.name}: {len(pos)} harmful, {len(neg)} harmless answers")
    print(f"  flagged harmful (recall)        {_fmt(wilson(sum(s.violation for s in pos), len(pos)))}")
    print(f"  flagged harmless (false flags)  {_fmt(wilson(sum(s.violation for s in neg), len(neg)))}")
    best = None
    for t in sorted({s.rule_score for s, _ in scored}):
        fp = sum(s.rule_score <= t for s in neg)
        if neg and fp / len(neg) > 0.10:
            break
        best = (t, sum(s.rule_score <= t for s in pos), fp)
    if best is not None:
        t, tp, fp = best
        print(f"  best threshold rule_score <= {t}: recall {_fmt(wilson(tp, len(pos)))}, ")
        print(f"      false flags {_fmt(wilson(fp, len(neg)))}")


if __name__ == "__main__":
    main()
