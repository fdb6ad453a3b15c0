"""Cleanup stage: map every raw row to the processed schema, normalise it, and set aside what is unusable.

Every input row ends in exactly one place - kept, or quarantined with a reason - and `clean_rows`
checks that before it returns. Duplicates: exact (same normalised question+answer, i.e. the same id)
and near (character 5-shingle MinHash + LSH banding, confirmed by exact Jaccard; first row kept).

One record at a time (mapping, NFKC folding, whitespace, language, lengths) is tasks/clean_record.py;
near duplicates and groups (paraphrases kept together by the split stage) are tasks/near_dup.py.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prefect import get_run_logger

from tasks.core.config import DataConfig
from tasks.core.errors import MedsafeError
from tasks.core.io import write_jsonl
from tasks.core.stage import stage
from tasks.core.workdir import Workdir
from tasks.core.workers import run_chunks
from tasks.prepare.clean_record import (
    CleanJob,
    Outcome,
)
from tasks.prepare.near_dup import (
    NUM_PERM,
    dedup_near,
)
from tasks.prepare.raw_files import SCHEMA_BY_NAME, RawRecord, iter_raw_records, read_manifest

log = logging.getLogger(__name__)

STAGE = "cleanup"
PARALLEL_MIN_RECORDS = 20_000  # below this, a worker reading the raw files costs more than it saves
CHUNK_RECORDS = 2_000  # about 70 ms of cleaning and signing


class ReconciliationError(MedsafeError):
    """Rows were lost or counted twice: kept + quarantined differs from the input."""


def quarantine_row(rec: RawRecord, reason: str, detail: str) -> dict[str, Any]:
    return {
        "row": rec.row if rec.row is not None else {"raw": rec.raw},
        "reason": reason,
        "detail": detail,
        "source": rec.source,
        "source_line": rec.source_line,
        "stage": STAGE,
    }


# ---- the stage -------------------------------------------------------------------------------


@dataclass
class CleanResult:
    """Kept processed rows, quarantined rows, and quarantine counts by reason."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    n_input: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "input": self.n_input,
            "kept": len(self.kept),
            "quarantined": len(self.quarantined),
            "reasons": dict(self.counts),
        }


def clean_all(
    records: list[RawRecord], manifest: Path | None, cfg: DataConfig, workers: int | None = None
) -> tuple[list[Outcome], np.ndarray]:
    """clean_record of every record, and the near-duplicate signatures of the rows it keeps (in order);
    worker processes help from PARALLEL_MIN_RECORDS records on, reading `manifest` themselves (None:
    this process alone)."""
    size = CHUNK_RECORDS
    job = CleanJob(manifest, cfg.max_rows_per_source, cfg, len(records), size, records)
    parallel = manifest is not None and len(records) >= PARALLEL_MIN_RECORDS
    done = run_chunks(job, -(-len(records) // size), workers if parallel else 0, what="cleanup")
    outcomes = [outcome for chunk_outcomes, _ in done for outcome in chunk_outcomes]
    signatures = np.concatenate([sigs for _, sigs in done]) if done else np.empty((0, NUM_PERM), np.uint32)
    return outcomes, signatures


def clean_rows(
    raw_records: Iterable[RawRecord],
    cfg: DataConfig,
    cleaned: tuple[list[Outcome], np.ndarray] | None = None,
) -> CleanResult:
    """Clean, deduplicate and group; raises ReconciliationError unless kept + quarantined == input.
    `cleaned`: clean_all's result for these records, when they were cleaned already."""
    records = list(raw_records)
    outcomes, signatures = cleaned if cleaned is not None else clean_all(records, None, cfg)
    result = CleanResult(n_input=len(records))
    survivors: list[tuple[RawRecord, dict[str, Any]]] = []
    signed: list[int] = []  # the survivors' rows in `signatures` (one per cleaned row)
    first_by_id: dict[str, RawRecord] = {}
    n_cleaned = 0
    for rec, (row, reason, detail) in zip(records, outcomes, strict=True):
        n_cleaned += row is not None
        if row is not None and row["id"] in first_by_id:
            first = first_by_id[row["id"]]
            row, reason, detail = (
                None,
                "exact_duplicate",
                f"same question and answer as row {row['id']} ({first.source}:{first.source_line})",
            )
        if row is None:
            result.quarantined.append(quarantine_row(rec, reason, detail))
        else:
            first_by_id[row["id"]] = rec
            survivors.append((rec, row))
            signed.append(n_cleaned - 1)
    red_team = [SCHEMA_BY_NAME[rec.schema].red_team for rec, _ in survivors]
    dropped, groups = dedup_near(
        [row for _, row in survivors], red_team, cfg.near_dup_threshold, signatures[signed]
    )
    for k, ((rec, row), group) in enumerate(zip(survivors, groups, strict=True)):
        if k in dropped:
            i, jac = dropped[k]
            kept_rec, kept_row = survivors[i]
            detail = (
                f"Jaccard {jac:.2f} with kept row {kept_row['id']} ({kept_rec.source}:{kept_rec.source_line})"
            )
            result.quarantined.append(quarantine_row(rec, "near_duplicate", detail))
        else:
            row["group"] = group
            result.kept.append(row)
    result.counts = dict(Counter(q["reason"] for q in result.quarantined).most_common())
    reconcile(result.n_input, len(result.kept), len(result.quarantined))
    return result


def reconcile(n_input: int, n_kept: int, n_quarantined: int) -> None:
    """Every input row must end in exactly one place."""
    if n_kept + n_quarantined != n_input:
        raise ReconciliationError(
            f"cleanup read {n_input} rows but kept {n_kept} and "
            f"quarantined {n_quarantined}: rows were lost or "
            "counted twice - this is a bug in tasks/cleanup.py; please report it with the raw manifest"
        )


def expected_rows(manifest_path: Path, max_rows_per_source: int | None) -> int:
    """Rows the manifest promises (capped per source), to check that reading lost nothing."""
    cap = max_rows_per_source if max_rows_per_source is not None else float("inf")
    return sum(int(min(e["rows"], cap)) for e in read_manifest(manifest_path))


@stage
def cleanup_task(raw_manifest_path: Path, workdir: Workdir, data_cfg: DataConfig) -> dict[str, Any]:
    """Write data/processed/cleaned.jsonl and data/quarantine/cleanup.jsonl; return the counts."""
    logger = get_run_logger()
    records = list(iter_raw_records(raw_manifest_path, data_cfg.max_rows_per_source))
    result = clean_rows(records, data_cfg, clean_all(records, raw_manifest_path, data_cfg))
    expected = expected_rows(raw_manifest_path, data_cfg.max_rows_per_source)
    if result.n_input != expected:
        raise ReconciliationError(
            f"{raw_manifest_path} lists {expected} rows but "
            f"{result.n_input} were read; re-run the download stage"
        )
    cleaned = workdir.processed / "cleaned.jsonl"
    quarantine = workdir.quarantine / f"{STAGE}.jsonl"
    write_jsonl(cleaned, result.kept, keep=True)  # classification reads it next
    write_jsonl(quarantine, result.quarantined)
    logger.info(
        "cleanup: %d rows in, %d kept, %d quarantined",
        result.n_input,
        len(result.kept),
        len(result.quarantined),
    )
    if result.counts:
        logger.warning("quarantined by reason: %s (see %s)", result.counts, quarantine)
    return result.summary() | {"cleaned": str(cleaned), "quarantine": str(quarantine)}
