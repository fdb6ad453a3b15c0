"""The prose of the evaluation reports: which sets were used and that they were held out, whether the judge
was on, the tiny-profile caveat, and how rates and paired differences are read."""

from __future__ import annotations

import json
from typing import Any

from tasks.evaluate.helpfulness import LABEL as HELPFULNESS_LABEL

TINY_NOTE = (
    "Tiny profile: a tiny locally built model on sample data. These numbers prove the pipeline's mechanics, "
    "not medical quality."
)
JUDGE_OFF = "Judge: off — rules-only metrics (the safety rules, refusal rules and the helpfulness proxy)."


def sets_line(sets: list[dict[str, Any]]) -> str:
    """Which prompt sets were evaluated, their sizes, and that they were held out."""
    listed = ", ".join(
        f"{s['name']} ({s['rows']} prompts{', ' + s['note'] if s.get('note') else ''})" for s in sets
    )
    line = f"Evaluation sets: {listed}."
    if sets and not any("red_team" in s["name"] for s in sets):
        line += (
            " No red-team set was evaluated (no data/processed/red_team_eval.jsonl: re-run `medsafe data`; "
            "or --test-file replaced the sets)."
        )
    return line


def held_out_line(held_out: dict[str, Any] | None) -> str:
    if not held_out:
        return "Held out: not checked (no RL prompt file to check against)."
    if held_out.get("training_prompts") is None:
        return f"Held out: not checked ({held_out.get('reason', 'no RL prompt file')})."
    return (
        f"Held out: none of the {held_out['evaluated']} evaluated prompts is one of the "
        f"{held_out['rl_prompts']} RL training prompts ({held_out['training_prompts']}), checked by id "
        "and by question text."
    )


def judge_line(metrics: dict[str, Any]) -> str:
    if not metrics.get("judge_on"):
        return JUDGE_OFF
    judge = metrics.get("judge") or {}
    rubrics = ", ".join(f"{kind}: {version}" for kind, version in (judge.get("rubrics") or {}).items())
    return (
        f"Judge: on — {judge.get('model', 'an independent judge')} at {judge.get('base_url', '?')} "
        f"({judge.get('mode', 'rubrics')}; {rubrics or 'default rubrics'})"
        + (
            ". WARNING: it is the training teacher's model at the teacher's URL, so it is NOT independent of "
            "what RL optimised."
            if judge.get("same_as_teacher")
            else ", not the training teacher."
        )
    )


def run_intro(metrics: dict[str, Any]) -> list[str]:
    sets = metrics.get("sets") or [{"name": g, "rows": c["n"]} for g, c in metrics["views"]["set"].items()]
    teacher = (
        "on (its scores are shown, but RL optimised against it: not an independent grade)"
        if metrics["teacher"]
        else "off"
    )
    intro = [
        *([TINY_NOTE] if metrics.get("tiny_profile") else []),
        f"{metrics['n']} predictions. {sets_line(sets)}",
        held_out_line(metrics.get("held_out")),
        judge_line(metrics) + f" Training teacher {teacher}.",
        "Rates show (flagged / population, 95% Wilson interval); a rate over no rows is n/a, not 0% or 100%. "
        "Emergency referral coverage counts only prompts labelled 'emergency'; the over-refusal rate counts "
        "only the benign questions of the over-refusal set (a refusal with nothing useful besides). "
        f"The {HELPFULNESS_LABEL} is a rule-based proxy, not a judgement of the answer.",
    ]
    if gen := metrics.get("generation"):
        intro.append(
            f"Model {gen['model_path']} (base {gen['base_path']}); decoding {json.dumps(gen['decoding'])}."
        )
    return intro


def comparison_intro(table: dict[str, Any], named_metrics: dict[str, dict[str, Any]]) -> list[str]:
    """Runs, sets, the held-out check, the judge notice and how differences are read."""
    first = named_metrics[table["runs"][0]]
    runs = ", ".join(f"{r} ({named_metrics[r]['n']} predictions)" for r in table["runs"])
    steps = ", ".join(f"{a} → {b}" for a, b in table["steps"]) or "none (one run)"
    tiny = any(m.get("tiny_profile") for m in named_metrics.values())
    judge_on = all(m.get("judge_on") for m in named_metrics.values())
    return [
        *([TINY_NOTE] if tiny else []),
        f"Runs: {runs}. {sets_line(first.get('sets') or [])}",
        held_out_line(first.get("held_out")),
        judge_line(first) if judge_on else JUDGE_OFF,
        f"Paired differences ({steps}) are after − before over the prompts both runs answered, with a "
        "paired bootstrap 95% interval and, for flags, McNemar's exact p. A difference is called better or "
        "worse only when its interval excludes 0; otherwise 'no detectable change'. Each run's rate shows "
        f"its 95% Wilson interval. The {HELPFULNESS_LABEL} is a rule-based proxy.",
    ]
