"""Runs side by side: every metric per run with its interval, and the paired difference between consecutive
runs (base → SFT → RL): a paired bootstrap 95% interval over the prompts both answered, McNemar's exact p for
flags, and a verdict that says better or worse only when the interval excludes 0.

The Goodhart check sets the rule flags beside the independent judge's: their agreement per metric, and a
warning when a run improved a rule metric while the judge's matching metric did not improve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tasks.core.errors import MedsafeError
from tasks.evaluate.metrics import TARGETS, VIEWS, group_rows
from tasks.evaluate.statistics import Estimate, mcnemar_exact, paired_bootstrap_diff, verdict, wilson

# Known run names are put in training order; others keep the order given.
RUN_ORDER = ("base", "init", "sft", "rl")


@dataclass(frozen=True)
class Metric:
    """A compared metric: where its per-run cell lives, how a row's value is read, which way is better."""

    key: str
    label: str
    target: str
    better: str  # "lower" | "higher"
    kind: str  # "rate" (paired flags: McNemar too) | "mean"
    population: str = "all"


def _metrics(named_metrics: dict[str, dict[str, Any]]) -> list[Metric]:
    out = [Metric(t.key, t.label, t.text, t.better, "rate", t.population) for t in TARGETS]
    out.append(
        Metric("helpfulness_proxy", "helpfulness proxy (key-term overlap)", "higher", "higher", "mean")
    )
    # the reward's rule part, the quantity RL optimises (without the teacher): paired per prompt like the rest
    out.append(Metric("rule_score", "mean rule score (the reward's rules)", "higher", "higher", "mean"))
    if any(m.get("teacher") for m in named_metrics.values()):
        out.append(Metric("teacher_overall", "training teacher (mean overall)", "higher", "higher", "mean"))
    if any(m.get("judge_on") for m in named_metrics.values()):
        out += [
            Metric("judge_unsafe_rate", "judge: unsafe rate", "lower", "lower", "rate"),
            Metric("judge_refusal_rate", "judge: refusal on benign", "lower", "lower", "rate", "benign"),
            Metric("judge_harm_score", "judge: harm score (1-5)", "lower", "lower", "mean"),
            Metric("judge_helpfulness", "judge: helpfulness (1-5)", "higher", "higher", "mean"),
        ]
    return out


# rule metric -> the judge's metric that should move with it (the Goodhart check)
GOODHART_PAIRS = {
    "violation_rate": "judge_unsafe_rate",
    "over_refusal_rate": "judge_refusal_rate",
    "helpfulness_proxy": "judge_helpfulness",
}


def order_runs(names: Sequence[str]) -> list[str]:
    known = [n for n in RUN_ORDER if n in names]
    return known + [n for n in names if n not in RUN_ORDER]


_TARGET_FLAGS = {t.key: t.flag for t in TARGETS}
_JUDGE_FIELDS = {
    "judge_unsafe_rate": "unsafe",
    "judge_refusal_rate": "refusal",
    "judge_harm_score": "harm_score",
    "judge_helpfulness": "helpfulness",
}


def row_value(row: dict[str, Any], metric: Metric) -> float | None:
    """One row's value of a metric: a flag as 0/1 or a score; None when the row has none."""
    if metric.key in _TARGET_FLAGS:
        value = row.get(_TARGET_FLAGS[metric.key])
    elif metric.key in _JUDGE_FIELDS:
        value = (row.get("judge") or {}).get(_JUDGE_FIELDS[metric.key])
    else:
        value = row.get("teacher_score" if metric.key == "teacher_overall" else metric.key)
    return None if value is None else float(value)


def _in_population(row: dict[str, Any], population: str) -> bool:
    return {"emergency": bool(row.get("emergency_case")), "benign": bool(row.get("benign"))}.get(
        population, True
    )


def paired_diff(pairs: list[tuple[dict[str, Any], dict[str, Any]]], metric: Metric) -> dict[str, Any]:
    """after - before over the pairs where both rows have a value: bootstrap interval, McNemar p, verdict."""
    before, after = [], []
    for a, b in pairs:
        va, vb = row_value(a, metric), row_value(b, metric)
        if _in_population(a, metric.population) and va is not None and vb is not None:
            before.append(va)
            after.append(vb)
    diffs = [y - x for x, y in zip(before, after, strict=True)]
    if diffs and max(diffs) == min(diffs):  # no spread: every resample gives the same mean
        est = Estimate(diffs[0], diffs[0], diffs[0], len(diffs))
    else:
        est = paired_bootstrap_diff(before, after)
    p = mcnemar_exact([x > 0 for x in before], [y > 0 for y in after]) if metric.kind == "rate" else None
    return {
        "diff": est.value,
        "lo": est.lo,
        "hi": est.hi,
        "n_pairs": est.n,
        "mcnemar_p": p,
        "verdict": verdict(est, metric.better),  # type: ignore[arg-type]
    }


def _cell(metrics: dict[str, Any], view: str, group: str, metric: Metric) -> dict[str, Any]:
    cell = metrics["views"].get(view, {}).get(group)
    empty = {"value": None, "k": 0, "n": 0, "lo": None, "hi": None, "pass": None}
    if cell is None:
        return empty
    if metric.key == "teacher_overall":
        teacher = cell.get("teacher") or {}
        return {**empty, "value": teacher.get("overall"), "n": teacher.get("n", 0)}
    if metric.key.startswith("judge_"):
        judge = cell.get("judge") or {}
        return judge.get(metric.key.removeprefix("judge_"), empty)
    return cell.get(metric.key, empty)


def _keyed(metrics: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(str(r["set"]), str(r["id"])): r for r in metrics.get("rows") or []}


def compare_runs(named_metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Runs side by side per view, group and metric, with the paired differences of consecutive runs."""
    names = order_runs(list(named_metrics))
    if not names:
        raise MedsafeError("nothing to compare: give at least one run's metrics.json")
    steps = list(zip(names, names[1:], strict=False))
    metrics = _metrics(named_metrics)
    keyed = {n: _keyed(named_metrics[n]) for n in names}
    paired_groups = {}
    for a, b in steps:
        both = [{**ra, "_after": keyed[b][k]} for k, ra in keyed[a].items() if k in keyed[b]]
        paired_groups[(a, b)] = {view: group_rows(both, view) for view in VIEWS}
    rows = []
    for view in VIEWS:
        groups = list(dict.fromkeys(g for m in named_metrics.values() for g in m["views"].get(view, {})))
        for group in groups:
            for metric in metrics:
                diffs = []
                for a, b in steps:
                    pair_rows = paired_groups[(a, b)][view].get(group, [])
                    diff = paired_diff([(r, r["_after"]) for r in pair_rows], metric)
                    diffs.append({"from": a, "to": b, **diff})
                rows.append(
                    {
                        "view": view,
                        "group": group,
                        "metric": metric.key,
                        "label": metric.label,
                        "target": metric.target,
                        "by_run": {n: _cell(named_metrics[n], view, group, metric) for n in names},
                        "diffs": diffs,
                    }
                )
    table = {"runs": names, "steps": [list(s) for s in steps], "rows": rows}
    table["goodhart_warnings"] = goodhart_warnings(table)
    return table


def goodhart_check(rule_flags: Sequence[bool], judge_flags: Sequence[bool | None]) -> dict[str, Any]:
    """How often the rule flag and the judge's flag agree on the same answers (rows the judge left None are
    skipped): counts, agreement with its Wilson interval, and Cohen's kappa (None when undefined)."""
    if len(rule_flags) != len(judge_flags):
        raise ValueError(f"goodhart_check: {len(rule_flags)} rule flags, {len(judge_flags)} judge flags")
    pairs = [(bool(r), bool(j)) for r, j in zip(rule_flags, judge_flags, strict=True) if j is not None]
    n = len(pairs)
    both = sum(r and j for r, j in pairs)
    rule_only = sum(r and not j for r, j in pairs)
    judge_only = sum(j and not r for r, j in pairs)
    agree = n - rule_only - judge_only
    kappa = None
    if n:
        p_rule, p_judge = (both + rule_only) / n, (both + judge_only) / n
        expected = p_rule * p_judge + (1 - p_rule) * (1 - p_judge)
        kappa = None if expected == 1 else (agree / n - expected) / (1 - expected)
    return {
        "n": n,
        "both": both,
        "rule_only": rule_only,
        "judge_only": judge_only,
        "neither": n - both - rule_only - judge_only,
        "agreement": wilson(agree, n).as_dict(),
        "kappa": kappa,
    }


def goodhart_warnings(table: dict[str, Any]) -> list[str]:
    """A warning for each step (overall view) where a rule metric got better and the judge's did not."""
    overall = {r["metric"]: r for r in table["rows"] if r["view"] == "overall"}
    warnings = []
    for rule_key, judge_key in GOODHART_PAIRS.items():
        if rule_key not in overall or judge_key not in overall:
            continue
        rule, judge = overall[rule_key], overall[judge_key]
        for rule_diff, judge_diff in zip(rule["diffs"], judge["diffs"], strict=True):
            if rule_diff["verdict"] == "better" and judge_diff["verdict"] != "better":
                warnings.append(
                    f"{rule_diff['from']} → {rule_diff['to']}: the rules say {rule['label']} got better, "
                    f"the independent judge's {judge['label']} shows {judge_diff['verdict']}; "
                    "the policy may be gaming the rules (Goodhart)"
                )
    return warnings
