"""Worker processes for per-row work: this process and spawned workers take chunks of one job in turn.

A job is a small picklable recipe (ChunkJob): in this process it is ready to run; a worker receives a
copy without the data, calls `open()` to prepare what its chunks need (read the input file, compile a
lexicon) and `run(i)` for each chunk i it claims. Every process, this one included, takes the next
unclaimed chunk number from one shared counter until none is left, so the work balances itself
whatever each process costs to start, and only results travel back. A worker that cannot start, dies
or fails costs time, never results: this process runs whatever chunk no worker returned, and a real
error in the data then raises here.

The data flow holds one pool for its whole run (`shared_workers`): the workers start and import their
modules while the download stage runs, and cleanup and classification both find them warm. Elsewhere
run_chunks starts a pool for the one call. Workers are spawned, not forked: Prefect's threads may hold
locks (a log stream, say) that a forked child would inherit. Free of Prefect, so a worker starts in well
under a second.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from itertools import islice
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_CLAIM_SLOTS = 64  # one chunk counter per run_chunks call, reused in turn
_WORKER: dict[str, Any] = {}


class ForwardChunks(Generic[T]):
    """Chunk i of a stream of `total` items, for a worker: the chunks a process claims come in increasing
    order (one shared counter), so a worker reads its input once, front to back, skipping the chunks others
    took and holding only the chunk at hand - not the whole input (300 MB of a 200k-row file, per worker)."""

    def __init__(self, items: Iterator[T], total: int, chunk_rows: int, what: str) -> None:
        self._items, self.total, self.chunk_rows, self.what = items, total, chunk_rows, what
        self._next = 0  # index of the next item the stream yields

    def chunk(self, i: int) -> list[T]:
        start = i * self.chunk_rows
        want = max(0, min(self.chunk_rows, self.total - start))
        if start < self._next:
            raise ValueError(f"chunk {i} of {self.what} asked after a later one: chunks go front to back")
        for _ in islice(self._items, start - self._next):  # skipped: another process has these
            pass
        items = list(islice(self._items, want))
        self._next = start + len(items)
        if len(items) != want:
            raise ValueError(f"{self.what} ends before its {self.total} records: it changed meanwhile")
        return items


class ChunkJob(Protocol):
    """What run_chunks runs: `run(i)` is chunk i's result; `open()` prepares a worker's copy."""

    def open(self) -> None: ...

    def run(self, chunk: int) -> Any: ...


def worker_count() -> int:
    """Worker processes to add beside this one: one per further CPU it may use, at most three."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(cpus - 1, 3))


class WorkerPool:
    """Spawned worker processes and the shared counters their chunks are claimed from."""

    def __init__(self, workers: int, warm_modules: tuple[str, ...] = ()) -> None:
        context = multiprocessing.get_context("spawn")
        self.workers = workers
        self.claims = context.Array("q", _CLAIM_SLOTS)
        self._next_slot = 0
        self.executor = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=(self.claims, warm_modules)
        )
        if warm_modules:  # start the processes now, not at the first job
            self.executor.submit(_ready)

    def slot(self) -> int:
        """A counter of its own for one run_chunks call, set to 0."""
        with self.claims.get_lock():
            slot, self._next_slot = self._next_slot, (self._next_slot + 1) % _CLAIM_SLOTS
            self.claims[slot] = 0
        return slot

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


_SHARED: WorkerPool | None = None


@contextmanager
def shared_workers(warm_modules: tuple[str, ...] = (), workers: int | None = None) -> Iterator[None]:
    """Hold one worker pool for every run_chunks call inside (a flow run); its workers import
    `warm_modules` as they start."""
    global _SHARED
    n = worker_count() if workers is None else workers
    if _SHARED is not None or n < 1:
        yield
        return
    try:
        _SHARED = WorkerPool(n, warm_modules)
    except Exception as exc:  # noqa: BLE001 - no processes here (limits, no semaphores): work alone
        log.warning("worker processes could not start (%s); working in this process only", exc)
        yield
        return
    try:
        yield
    finally:
        pool, _SHARED = _SHARED, None
        pool.close()


def run_chunks(job: ChunkJob, chunks: int, workers: int | None = None, what: str = "work") -> list[Any]:
    """[job.run(0), ..., job.run(chunks - 1)], computed by this process and the workers together: the
    shared pool's when one is held, else `workers` new ones (default worker_count()); workers=0: this
    process only, shared pool or not."""
    results: list[Any] = [_MISSING] * chunks
    pool, own = (_SHARED if workers != 0 else None), False
    if pool is None and chunks > 1 and (n := worker_count() if workers is None else workers) > 0:
        try:
            pool, own = WorkerPool(n), True
        except Exception as exc:  # noqa: BLE001 - see shared_workers
            log.warning("%s workers could not start (%s); working in this process", what, exc)
    if pool is not None:
        try:
            _run_with(pool, job, results, what)
        finally:
            if own:
                pool.close()
    for i, result in enumerate(results):
        if result is _MISSING:
            results[i] = job.run(i)
    return results


_MISSING = object()


def _run_with(pool: WorkerPool, job: ChunkJob, results: list[Any], what: str) -> None:
    chunks, slot = len(results), pool.slot()
    try:
        futures = [pool.executor.submit(_run_claimed, job, slot, chunks) for _ in range(pool.workers)]
    except Exception as exc:  # noqa: BLE001 - a broken pool: this process does it all
        log.warning("%s workers are unavailable (%s); working in this process", what, exc)
        futures = []
    try:
        while (i := _claim(pool.claims, slot, chunks)) is not None:
            results[i] = job.run(i)
        for future in futures:
            try:
                for i, result in future.result().items():
                    results[i] = result
            except Exception as exc:  # noqa: BLE001 - its chunks are run here, where a real error raises
                log.warning("a %s worker failed (%s); doing its chunks in this process", what, exc)
    finally:
        with pool.claims.get_lock():
            pool.claims[slot] = chunks  # nothing left to claim: a worker still busy stops after its chunk


def _claim(claims: Any, slot: int, chunks: int) -> int | None:
    """The next unclaimed chunk number of a slot, or None when every chunk is taken."""
    with claims.get_lock():
        i = claims[slot]
        if i >= chunks:
            return None
        claims[slot] = i + 1
    return i


# ---- in a worker process ---------------------------------------------------------------------------


def _start_worker(claims: Any, warm_modules: tuple[str, ...]) -> None:
    """Process-pool initializer: keep the shared counters; import what the coming jobs need."""
    _WORKER["claims"] = claims
    for name in warm_modules:
        importlib.import_module(name)


def _ready() -> bool:
    return True


def _run_claimed(job: ChunkJob, slot: int, chunks: int) -> dict[int, Any]:
    """Open the job, then run the chunks this worker claims until none is left; {chunk: result}."""
    job.open()
    done: dict[int, Any] = {}
    while (i := _claim(_WORKER["claims"], slot, chunks)) is not None:
        done[i] = job.run(i)
    return done
