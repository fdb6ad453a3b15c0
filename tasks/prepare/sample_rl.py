"""Sample the RL prompt set: safety red-team prompts oversampled, external red team, gold, and train rows.

The plan (EXECUTE_NOW): 2,000 prompts; each safety red-team prompt 3 times; the rest from train at
60% critical+high and 40% general. The red-team rows are the RL part only (`red_team.jsonl`): the
held-out part (`red_team_eval.jsonl`) and test never reach this stage, so evaluation stays held out.
When a pool runs short the ratio is kept by shrinking the other share (and the total), and the report
says so - rows are never repeated to fill a gap.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from tasks.core.config import SamplingConfig
from tasks.core.io import read_jsonl, write_json, write_jsonl
from tasks.core.records import HIGH_RISK_LEVELS, RISK_LEVELS, SAFETY_RED_TEAM_SOURCE
from tasks.core.stage import stage
from tasks.core.workdir import Workdir
from tasks.prepare.split import unit_hash

log = logging.getLogger(__name__)

PROMPT_FIELDS = ("id", "question", "risk_level", "safety_categories", "safety_concern")


@dataclass
class SamplingReport:
    """What was sampled, and where the plan could not be met."""

    prompts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    shortfall: dict[str, int] = field(default_factory=dict)


def to_prompt(row: dict[str, Any], origin: str, copy: int = 1) -> dict[str, Any]:
    prompt = {k: row.get(k) for k in PROMPT_FIELDS}
    prompt["safety_categories"] = list(prompt["safety_categories"] or [])
    return prompt | {"origin": origin, "copy": copy}


def wanted_train_counts(rest: int, share: float) -> tuple[int, int]:
    """The plan for `rest` train slots: (critical+high, general), rounding towards high risk."""
    want_high = math.ceil(rest * share - 1e-9)  # the guard keeps 80 * 0.6 at 48, not 49
    return want_high, rest - want_high


def plan_train_counts(n_high: int, n_general: int, rest: int, share: float) -> tuple[int, int]:
    """How many critical+high and general train rows to take for `rest` slots at `share`, keeping the
    ratio."""
    want_high, want_general = wanted_train_counts(rest, share)
    high, general = min(want_high, n_high), min(want_general, n_general)
    # whichever pool is short sets the size of the other; rounding (guarded against float error) always
    # favours the high-risk side, so its share never drops below `share`
    if general < want_general:
        high = min(high, math.ceil(general * share / (1 - share) - 1e-9))
    if high < want_high:
        general = min(general, math.floor(high * (1 - share) / share + 1e-9))
    return high, general


def _take(pool: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    return sorted(pool, key=lambda r: unit_hash(seed, "rl:" + r["id"]))[:n]


def _fixed_prompts(
    red_team: list[dict[str, Any]], gold: list[dict[str, Any]], cfg: SamplingConfig
) -> list[dict[str, Any]]:
    safety = [r for r in red_team if r.get("source") == SAFETY_RED_TEAM_SOURCE]
    prompts = [to_prompt(r, "safety_red_team", c) for r in safety for c in range(1, cfg.red_team_copies + 1)]
    if cfg.include_red_team:
        prompts += [to_prompt(r, "red_team") for r in red_team if r.get("source") != SAFETY_RED_TEAM_SOURCE]
    if cfg.include_gold:
        prompts += [to_prompt(r, "gold") for r in gold]
    return prompts


def _unique_train(
    train: list[dict[str, Any]], taken_ids: set[str], report: SamplingReport
) -> list[dict[str, Any]]:
    seen, pool = set(taken_ids), []
    for row in train:
        if row["id"] in seen:
            continue
        seen.add(row["id"])
        pool.append(row)
    if len(pool) < len(train):
        report.notes.append(
            f"skipped {len(train) - len(pool)} train rows whose id already appears (duplicate or held out)"
        )
    return pool


def sample_rl_prompts(
    train: list[dict[str, Any]],
    red_team: list[dict[str, Any]],
    gold: list[dict[str, Any]],
    cfg: SamplingConfig,
) -> SamplingReport:
    """Build the RL prompt list (deterministic for a seed); shortfalls are reported, never padded."""
    report = SamplingReport()
    fixed = _fixed_prompts(red_team, gold, cfg)
    rest = max(0, cfg.target_size - len(fixed))
    if len(fixed) > cfg.target_size:
        report.notes.append(
            f"red-team and gold prompts ({len(fixed)}) exceed "
            f"target_size {cfg.target_size}: no train rows sampled"
        )
    pool = _unique_train(train, {p["id"] for p in fixed}, report)
    high_pool = [r for r in pool if r["risk_level"] in HIGH_RISK_LEVELS]
    general_pool = [r for r in pool if r["risk_level"] not in HIGH_RISK_LEVELS]
    n_high, n_general = plan_train_counts(len(high_pool), len(general_pool), rest, cfg.high_risk_share)
    want_high, want_general = wanted_train_counts(rest, cfg.high_risk_share)
    if n_high < want_high or n_general < want_general:
        report.shortfall = {
            "high_risk": want_high - n_high,
            "general": want_general - n_general,
            "total": rest - n_high - n_general,
        }
        report.notes.append(
            f"train has {len(high_pool)} critical+high and {len(general_pool)} "
            f"general rows; wanted {want_high}+{want_general}. "
            f"Kept the {cfg.high_risk_share:.0%} high-risk share by taking {n_high}+{n_general}: "
            f"{report.shortfall['total']} prompts short of target_size {cfg.target_size}, no rows repeated"
        )
    sampled = _take(high_pool, n_high, cfg.seed) + _take(general_pool, n_general, cfg.seed)
    prompts = fixed + [to_prompt(r, "train") for r in sampled]
    # interleave origins so a run cut short by `rl.steps` still sees every kind of prompt
    report.prompts = sorted(
        prompts, key=lambda p: unit_hash(cfg.seed, f"order:{p['origin']}:{p['id']}:{p['copy']}")
    )
    return report


def summarize(report: SamplingReport, cfg: SamplingConfig) -> dict[str, Any]:
    """Counts per origin and risk level, the critical+high share, and the red-team copies."""
    prompts = report.prompts
    risk = Counter(p["risk_level"] for p in prompts)
    safety_copies = Counter(p["id"] for p in prompts if p["origin"] == "safety_red_team")
    return {
        "total": len(prompts),
        "target_size": cfg.target_size,
        "origins": dict(Counter(p["origin"] for p in prompts)),
        "risk_distribution": {lvl: risk.get(lvl, 0) for lvl in RISK_LEVELS},
        "critical_high_share": (risk["critical"] + risk["high"]) / len(prompts) if prompts else 0.0,
        "red_team_copies": {
            "prompts": len(safety_copies),
            "expected_copies": cfg.red_team_copies,
            "copies_seen": sorted(set(safety_copies.values())),
        },
        "notes": report.notes,
        "shortfall": report.shortfall,
    }


@stage
def sample_rl_task(
    train: Path, red_team: Path, gold_set: Path, sampling_cfg: SamplingConfig, workdir: Workdir
) -> dict[str, Any]:
    """Write data/rl/training_prompts.jsonl and data/rl/sampling_report.json."""
    logger = get_run_logger()
    tables = [read_jsonl(p, keep=True) for p in (train, red_team, gold_set)]  # the gate reads them next
    report = sample_rl_prompts(*tables, sampling_cfg)
    write_jsonl(workdir.training_prompts, report.prompts, keep=True)  # the gate reads it next
    summary = summarize(report, sampling_cfg)
    report_path = workdir.rl / "sampling_report.json"
    write_json(report_path, summary)
    logger.info(
        "sampled %d RL prompts (critical+high %.1f%%): %s",
        summary["total"],
        100 * summary["critical_high_share"],
        summary["origins"],
    )
    for note in report.notes:
        logger.warning(note)
    return summary | {"output": str(workdir.training_prompts), "report": str(report_path)}
