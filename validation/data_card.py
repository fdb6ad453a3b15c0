"""Render data/DATA_CARD.md from the data-quality summary: sources, splits, risk, quarantine, gate, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.core.records import RISK_LEVELS


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _sources(summary: dict[str, Any]) -> list[str]:
    splits = summary["splits"]
    names = sorted({str(s) for stats in splits.values() for s in stats["sources"]})
    rows = [[n, *(splits[t]["sources"].get(n, 0) for t in splits)] for n in names]
    lines = ["## Sources", "", f"Configured sources: {', '.join(summary['config']['data']['sources'])}.", ""]
    return lines + _table(["source", *splits], rows or [["(none)", *(0 for _ in splits)]])


def _splits(summary: dict[str, Any]) -> list[str]:
    data = summary["config"]["data"]
    lines = [
        "## Splits",
        "",
        "Each near-duplicate group goes whole to one split, "
        f"chosen by hashing the group id with seed {data['seed']} "
        f"(dev {data['dev_fraction']:.0%}, test {data['test_fraction']:.0%}, the rest train). "
        f"The gold set ({data['gold_size']} rows asked, at most "
        "half of test) is drawn from test, stratified by risk "
        "level, and removed from it with its near-duplicate group. Rows from red-team sources "
        "and the shipped safety red-team set are kept out of "
        f"train/dev/test: {data.get('red_team_eval_fraction', 0):.0%} of them (stratified by category x "
        "language, near duplicates together) are held out for evaluation in red_team_eval, the rest "
        "(red_team) feed the RL prompts. A training-source row sharing a near-duplicate "
        "group with a red-team prompt is never trained on: it waits in test beside a held-out "
        "prompt, in dev beside an RL one. The gate checks that test, red_team_eval and the "
        "over-refusal set share no id and no near-duplicate question with the RL prompts or train.",
        "",
    ]
    rows = [
        [name, s["rows"], s["lang"].get("zh", 0), s["lang"].get("en", 0)]
        for name, s in summary["splits"].items()
    ]
    return lines + _table(["table", "rows", "zh", "en"], rows)


def _risk(summary: dict[str, Any]) -> list[str]:
    dist = summary["risk_distribution"]
    rows = [[name, *(risk[lvl] for lvl in RISK_LEVELS)] for name, risk in dist["processed"].items()]
    rows.append(["rl_prompts", *(dist["rl_prompts"][lvl] for lvl in RISK_LEVELS)])
    rl = summary["rl_prompts"]
    lines = ["## Risk distribution", ""] + _table(["table", *RISK_LEVELS], rows)
    lines += [
        "",
        f"RL prompts: {rl['total']} of {rl['target_size']} targeted "
        f"({', '.join(f'{k} {v}' for k, v in rl['origins'].items())}); "
        f"critical+high share {summary['critical_high_share']:.1%}; safety red-team prompts "
        f"{summary['red_team_copies']['prompts']}, each expected "
        f"{summary['red_team_copies']['expected_copies']} times "
        f"(seen: {summary['red_team_copies']['copies_seen']}).",
    ]
    return lines + [f"- {note}" for note in rl["notes"]]


def _quarantine(summary: dict[str, Any]) -> list[str]:
    q = summary["quarantine"]
    lines = [
        "## Quarantine",
        "",
        f"{q['total']} rows quarantined (data/quarantine/<stage>.jsonl keeps each with its reason).",
        "",
    ]
    return lines + _table(["reason", "rows"], [[r, n] for r, n in q["by_reason"].items()] or [["(none)", 0]])


def _gate(summary: dict[str, Any], root: Path) -> list[str]:
    verdict = {True: "passed", False: "FAILED", None: "not run yet"}[summary["gate_passed"]]
    lines = ["## Quality gate", "", f"Great Expectations gate: **{verdict}**."]
    lines += [f"- {f}" for f in summary["failed_expectations"]]
    if summary["gate"] and summary["gate"]["data_docs_index"]:
        index = Path(summary["gate"]["data_docs_index"])
        where = (
            f"`{index.relative_to(root)}` in the working directory"
            if index.is_relative_to(root)
            else f"`{index}`"
        )
        lines.append(f"\nData Docs (every expectation with its observed value): {where}.")
    return lines


def _limits(summary: dict[str, Any]) -> list[str]:
    limits = [
        "Risk levels and safety categories come from a bilingual "
        "keyword lexicon (rules YAML), not clinician review; "
        "they miss paraphrases and can over-flag.",
        "The gold set is a stratified hold-out of test with "
        "the same automatic labels, not a human-verified set.",
        f"The RL part of the safety red-team set is small ({summary['red_team_copies']['prompts']} "
        f"prompts) and appears {summary['red_team_copies']['expected_copies']} times "
        "in the RL prompts; the held-out part (red_team_eval) is what evaluation measures. Near "
        "duplicates are character-shingle matches of the question: a paraphrase in other words (or "
        "another language) is not caught.",
        "Split fractions are met on average (hash per group); small data sets give uneven splits.",
    ]
    if "tiny-samples" in summary["config"]["data"]["sources"]:
        limits.append(
            "The tiny profile's sample data proves the mechanics of the pipeline, not medical quality."
        )
    if summary["rl_prompts"]["shortfall"]:
        limits.append(f"The RL prompt set is short of its target: {summary['rl_prompts']['shortfall']}.")
    return ["## Known limits", ""] + [f"- {item}" for item in limits]


def render_data_card(summary: dict[str, Any], root: Path) -> str:
    """The data card as Markdown, generated from the summary (regenerated on every run)."""
    parts = [
        [
            "# Data card",
            "",
            "Generated by medsafe's data report from the files of this working directory; do not edit.",
        ],
        _sources(summary),
        _splits(summary),
        _risk(summary),
        _quarantine(summary),
        _gate(summary, root),
        _limits(summary),
    ]
    return "\n\n".join("\n".join(p) for p in parts) + "\n"
