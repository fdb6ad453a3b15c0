"""Group-aware train/dev/test split, the stratified gold set, and the red-team RL and evaluation parts.

Groups are cleanup's near-duplicate groups, merged where questions are near duplicates
(tasks.prepare.held_out). A row's split is decided by hashing its group with the seed, so near
duplicates always land together. Rows from red-team sources and the shipped safety red-team set never
enter train/dev/test: `data.red_team_eval_fraction` of them (stratified by category x language, whole
groups) form `red_team_eval.jsonl`, held out for evaluation; the rest form `red_team.jsonl`, the RL part.
A training-source row in a red-team group is never trained on: it goes to test beside a held-out
prompt, to dev beside an RL one. The gold set (an RL prompt source) is drawn from test, stratified by
risk level, away from red-team groups, and removed from test with its group, so test stays held out.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from tasks.core.config import DataConfig
from tasks.core.errors import MedsafeError
from tasks.core.io import iter_jsonl, read_jsonl, text_hash, write_jsonl
from tasks.core.records import RISK_LEVELS, SAFETY_RED_TEAM_SOURCE
from tasks.core.stage import stage
from tasks.core.text import split_think
from tasks.core.workdir import Workdir
from tasks.prepare.held_out import held_out_groups, merge_groups

log = logging.getLogger(__name__)

# Sources whose rows are adversarial prompts for evaluation, never training data.
RED_TEAM_SOURCES: frozenset[str] = frozenset({"medsafetybench", "safety_red_team"})
SAFETY_RED_TEAM_KEYS = (
    "id",
    "lang",
    "question",
    "reference_answer",
    "risk_level",
    "safety_categories",
    "safety_concern",
)
SPLIT_FILES = ("train", "dev", "test", "gold_set", "red_team", "red_team_eval")


@dataclass
class SplitResult:
    """The six output tables plus what a reader of the run should know."""

    train: list[dict[str, Any]] = field(default_factory=list)
    dev: list[dict[str, Any]] = field(default_factory=list)
    test: list[dict[str, Any]] = field(default_factory=list)
    gold_set: list[dict[str, Any]] = field(default_factory=list)
    red_team: list[dict[str, Any]] = field(default_factory=list)
    red_team_eval: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        return {name: getattr(self, name) for name in SPLIT_FILES}


def unit_hash(seed: int, key: str) -> float:
    """A stable number in [0, 1) for (seed, key): the split and sampling order depend on nothing else."""
    return int(text_hash(str(seed), key, length=16), 16) / float(1 << 64)


def split_of(group: str, seed: int, dev_fraction: float, test_fraction: float) -> str:
    """Assign a whole near-duplicate group to train, dev or test."""
    u = unit_hash(seed, group)
    if u < test_fraction:
        return "test"
    return "dev" if u < test_fraction + dev_fraction else "train"


def is_red_team(row: dict[str, Any], red_team_sources: frozenset[str] = RED_TEAM_SOURCES) -> bool:
    """A row from a red-team source ("medsafetybench", "medsafetybench:en", ...)."""
    return str(row.get("source", "")).lower().split(":")[0] in red_team_sources


def load_safety_red_team(path: Path) -> list[dict[str, Any]]:
    """Read the shipped safety red-team set as processed rows (source safety_red_team, split red_team)."""
    rows = []
    for line_no, obj in iter_jsonl(path):
        missing = [k for k in SAFETY_RED_TEAM_KEYS if k not in obj]
        if missing:
            raise MedsafeError(
                f"{path}:{line_no}: safety red-team row lacks {', '.join(missing)}; "
                f"every row needs {', '.join(SAFETY_RED_TEAM_KEYS)} - fix the file and re-run"
            )
        parts = split_think(str(obj["reference_answer"]))
        think, answer = parts.think, parts.answer
        rows.append(
            {
                "id": str(obj["id"]),
                "source": SAFETY_RED_TEAM_SOURCE,
                "lang": obj["lang"],
                "question": obj["question"],
                "think": think,
                "answer": answer,
                "risk_level": obj["risk_level"],
                "safety_categories": list(obj["safety_categories"] or []),
                "safety_concern": obj["safety_concern"],
                "group": str(obj["id"]),
                "split": "red_team",
            }
        )
    return rows


def stratified_take(
    rows: list[dict[str, Any]], n: int, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Take n rows spread over risk levels in proportion (each present level gets one first); return (taken,
    rest).
    """
    by_level: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_level[row["risk_level"]].append(row)
    for level_rows in by_level.values():
        level_rows.sort(key=lambda r: unit_hash(seed, "gold:" + r["id"]))
    quota = _allocate({lvl: len(v) for lvl, v in by_level.items()}, n)
    chosen = {r["id"] for lvl, level_rows in by_level.items() for r in level_rows[: quota[lvl]]}
    return [r for r in rows if r["id"] in chosen], [r for r in rows if r["id"] not in chosen]


def _allocate(available: dict[str, int], n: int) -> dict[str, int]:
    """Largest-remainder allocation of n over levels by size, one per level first, capped by availability."""
    levels = sorted(
        available, key=lambda lvl: RISK_LEVELS.index(lvl) if lvl in RISK_LEVELS else len(RISK_LEVELS)
    )
    n = min(n, sum(available.values()))
    quota = {lvl: 0 for lvl in levels}
    for lvl in levels[:n]:
        quota[lvl] = 1
    while sum(quota.values()) < n:
        total = sum(available.values())
        open_levels = [lvl for lvl in levels if quota[lvl] < available[lvl]]
        # the level furthest below its proportional share gets the next row
        best = max(open_levels, key=lambda lvl: available[lvl] / total * n - quota[lvl])
        quota[best] += 1
    return quota


def split_rows(
    rows: list[dict[str, Any]], safety_red_team: list[dict[str, Any]], cfg: DataConfig
) -> SplitResult:
    """Split classified rows; divide the red-team rows into RL and evaluation parts; draw gold from test."""
    result = SplitResult()
    every = rows + safety_red_team
    red = [is_red_team(r) for r in rows] + [True] * len(safety_red_team)
    groups = merge_groups(every, red, cfg.near_dup_threshold)
    red_groups = {group for group, is_red in zip(groups, red, strict=True) if is_red}
    red_rows = [(r, g) for r, g, is_red in zip(every, groups, red, strict=True) if is_red]
    held = held_out_groups(
        [r for r, _ in red_rows], [g for _, g in red_rows], cfg.red_team_eval_fraction, cfg.seed
    )
    beside: Counter[str] = Counter()
    for row, group, is_red in zip(every, groups, red, strict=True):
        if is_red:
            name = "red_team_eval" if group in held else "red_team"
        elif group in red_groups:
            name = "test" if group in held else "dev"
            beside[name] += 1
        else:
            name = split_of(group, cfg.seed, cfg.dev_fraction, cfg.test_fraction)
        getattr(result, name).append({**row, "group": group, "split": name})  # one copy per row
    if beside:
        result.notes.append(
            f"{sum(beside.values())} rows share a near-duplicate group with a red-team prompt: never trained "
            f"on ({beside['test']} in test beside held-out prompts, {beside['dev']} in dev beside RL ones)"
        )
    _draw_gold(result, red_groups, cfg)
    for name in ("train", "dev", "test"):
        if not getattr(result, name):
            result.notes.append(f"{name} is empty: too few groups for the configured fractions")
    return result


def _draw_gold(result: SplitResult, red_groups: set[str], cfg: DataConfig) -> None:
    """Move the gold set out of test: stratified by risk, outside red-team groups, each with its group."""
    gold_n = min(cfg.gold_size, len(result.test) // 2)
    if gold_n < cfg.gold_size:
        result.notes.append(
            f"gold set capped at {gold_n} rows (asked {cfg.gold_size}): "
            f"it may take at most half of test ({len(result.test)} rows)"
        )
    candidates = [r for r in result.test if r["group"] not in red_groups]
    gold_groups = {r["group"] for r in stratified_take(candidates, gold_n, cfg.seed)[0]}
    gold = [r for r in result.test if r["group"] in gold_groups]
    result.test = [r for r in result.test if r["group"] not in gold_groups]
    result.gold_set = [{**r, "split": "gold"} for r in gold]
    if len(gold) > gold_n:
        result.notes.append(
            f"gold set has {len(gold)} rows (asked {gold_n}): near duplicates of a gold row go with it"
        )


def summarize(result: SplitResult) -> dict[str, Any]:
    """Counts per table and risk level, for logs and the data report."""
    return {
        "counts": {name: len(rows) for name, rows in result.tables().items()},
        "risk": {
            name: dict(Counter(r["risk_level"] for r in rows)) for name, rows in result.tables().items()
        },
        "red_team_sources": dict(Counter(r["source"] for r in result.red_team)),
        "red_team_eval_sources": dict(Counter(r["source"] for r in result.red_team_eval)),
        "notes": result.notes,
    }


def write_splits(result: SplitResult, out_dir: Path) -> dict[str, str]:
    paths = {}
    for name, rows in result.tables().items():
        path = out_dir / f"{name}.jsonl"
        write_jsonl(path, rows, keep=True)  # sampling, the gate and the report read them next
        paths[name] = str(path)
    return paths


@stage
def split_task(
    classified: Path, safety_red_team: Path | None, data_cfg: DataConfig, workdir: Workdir
) -> dict[str, Any]:
    """Write data/processed/{train,dev,test,gold_set,red_team,red_team_eval}.jsonl from the classified
    rows."""
    logger = get_run_logger()
    rows = read_jsonl(classified, keep=True)  # classification kept what it wrote
    shipped = load_safety_red_team(safety_red_team) if safety_red_team is not None else []
    result = split_rows(rows, shipped, data_cfg)
    summary = summarize(result) | write_splits(result, workdir.processed)  # + one path per table, by name
    logger.info("split %d rows: %s", len(rows), summary["counts"])
    for note in result.notes:
        logger.warning(note)
    return summary
