"""Label many rows with this process and spawned worker processes together, with the same result as one.

Rows are cut into chunks of CHUNK_ROWS; every process, this one included, takes the next unclaimed
chunk number from one shared counter until none is left, so the work balances itself whatever each
process costs to start. Rows are not shipped to the workers: a worker reads the chunks it claims from
the JSONL file the rows came from (or gets the rows once, when they exist only in memory), and sends
back only the labels, their evidence trimmed to high and critical. A worker that cannot start or dies
costs time, never labels: this process labels whatever no worker returned.

Free of Prefect, so a worker starts in well under a second.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tasks.io import JsonlLineError, jsonl_records, parse_jsonl_line
from tasks.risk_classifier import RiskClassifier, RiskLabel, label_row, trim
from tasks.risk_lexicon import Lexicon

log = logging.getLogger(__name__)

PARALLEL_MIN_ROWS = 20_000  # below this, starting worker processes costs more than it saves
CHUNK_ROWS = 1_000  # about a tenth of a second of labelling: small enough to balance, large enough to claim

Labels = list[RiskLabel | None]


def worker_count() -> int:
    """Worker processes to add beside this one: one per further CPU it may use, at most three."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(cpus - 1, 3))


def label_rows(rows: list[dict[str, Any]], classifier: RiskClassifier) -> Labels:
    """Labels of rows in this process (None: a curated row), evidence trimmed to high and critical."""
    return [trim(label_row(row, classifier, weak_evidence=False)) for row in rows]


def _claim(counter: Any, chunks: int) -> int | None:
    """The next unclaimed chunk number, or None when every chunk is taken."""
    with counter.get_lock():
        i = counter.value
        if i >= chunks:
            return None
        counter.value = i + 1
    return i


def label_all(
    rows: list[dict[str, Any]],
    classifier: RiskClassifier,
    workers: int | None = None,
    min_rows: int = PARALLEL_MIN_ROWS,
    source: Path | None = None,
) -> Labels:
    """Every row's label; worker processes help from `min_rows` rows on. `source`: the JSONL file
    `rows` were read from (read_jsonl), which workers then read for themselves."""
    workers = worker_count() if workers is None else workers
    if workers < 1 or len(rows) < min_rows:
        return label_rows(rows, classifier)
    size = CHUNK_ROWS
    chunks = -(-len(rows) // size)
    labels: list[Labels | None] = [None] * chunks
    # spawn, not fork: Prefect's threads may hold locks (a log stream, say) that a forked child inherits
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    shipped: Path | list[dict[str, Any]] = source if source is not None else rows
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(classifier.lexicon, counter)
    )
    try:
        try:
            futures = [pool.submit(_label_claimed, shipped, len(rows), size) for _ in range(workers)]
        except Exception as exc:  # noqa: BLE001 - no process to start here (limits, no semaphores): label alone
            log.warning("classification workers could not start (%s); labelling in this process", exc)
            futures = []
        while (i := _claim(counter, chunks)) is not None:
            labels[i] = label_rows(rows[i * size : (i + 1) * size], classifier)
        for future in futures:
            try:
                for i, chunk_labels in future.result().items():
                    labels[i] = chunk_labels
            except Exception as exc:  # noqa: BLE001 - a worker that cannot start, dies or fails costs
                # time, not the stage: its chunks are labelled below, and a real problem in them raises here
                log.warning("a classification worker failed (%s); labelling its rows in this process", exc)
    finally:
        with counter.get_lock():
            counter.value = chunks  # nothing left to claim: a worker still running stops after its chunk
        pool.shutdown(wait=True, cancel_futures=True)
    for i, chunk_labels in enumerate(labels):
        if chunk_labels is None:
            labels[i] = label_rows(rows[i * size : (i + 1) * size], classifier)
    return [label for chunk_labels in labels for label in chunk_labels or []]


# ---- in a worker process ---------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _start_worker(lexicon: Lexicon, counter: Any) -> None:
    """Process-pool initializer: compile the lexicon once; keep the shared chunk counter."""
    _WORKER.update(classifier=RiskClassifier(lexicon), counter=counter)


def _label_claimed(source: Path | list[dict[str, Any]], total: int, chunk_rows: int) -> dict[int, Labels]:
    """Label chunks claimed from the shared counter until none is left; {chunk number: labels}."""
    records = jsonl_records(source) if isinstance(source, Path) else None
    if records is not None and len(records) != total:
        raise ValueError(
            f"{source} has {len(records)} records, not the {total} labelled: it changed meanwhile"
        )
    done: dict[int, Labels] = {}
    while (i := _claim(_WORKER["counter"], -(-total // chunk_rows))) is not None:
        lo, hi = i * chunk_rows, min((i + 1) * chunk_rows, total)
        rows = source[lo:hi] if records is None else [_parsed(source, n, raw) for n, raw in records[lo:hi]]
        done[i] = label_rows(rows, _WORKER["classifier"])  # type: ignore[arg-type]
    return done


def _parsed(path: Path, line_no: int, raw: bytes) -> dict[str, Any]:
    obj = parse_jsonl_line(path, line_no, raw)
    if isinstance(obj, JsonlLineError):
        raise obj
    return obj
