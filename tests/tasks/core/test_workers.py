"""Chunks of one job shared between this process and spawned workers (tasks/workers.py)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.core.workers import run_chunks, shared_workers


@dataclass
class SquareJob:
    """Chunk i: the squares of its numbers, and who computed them; fails in a worker when told to."""

    numbers: list[int]
    size: int = 3
    fail_in_worker: bool = False
    opened: bool = False

    def open(self) -> None:
        self.opened = True
        if self.fail_in_worker:
            raise RuntimeError("this worker cannot read its input")

    def run(self, chunk: int) -> tuple[list[int], int]:
        part = self.numbers[chunk * self.size : (chunk + 1) * self.size]
        return [n * n for n in part], os.getpid()


def _chunks(job: SquareJob) -> int:
    return -(-len(job.numbers) // job.size)


def test_workers_and_this_process_give_the_serial_result():
    job = SquareJob(list(range(200)))
    results = run_chunks(job, _chunks(job), workers=1)
    assert [n for squares, _ in results for n in squares] == [n * n for n in range(200)]
    assert not job.opened  # this process's copy is used as it is; only workers open theirs


def test_no_workers_means_this_process_alone():
    job = SquareJob(list(range(30)))
    assert {pid for _, pid in run_chunks(job, _chunks(job), workers=0)} == {os.getpid()}
    with shared_workers(workers=1):  # even when a shared pool is there
        assert {pid for _, pid in run_chunks(job, _chunks(job), workers=0)} == {os.getpid()}


def test_a_failing_worker_costs_time_not_results(caplog: pytest.LogCaptureFixture):
    job = SquareJob(list(range(60)), fail_in_worker=True)
    results = run_chunks(job, _chunks(job), workers=1, what="squaring")
    assert [n for squares, _ in results for n in squares] == [n * n for n in range(60)]
    assert "a squaring worker failed" in caplog.text and "cannot read its input" in caplog.text


@dataclass
class WaitForWorkerJob:
    """Chunk i: the process that ran it. This process holds on to its first chunk until a worker has
    opened its copy (it leaves a marker file), so a worker always takes part."""

    marker: Path
    opened: bool = False

    def open(self) -> None:
        self.opened = True
        self.marker.touch()

    def run(self, chunk: int) -> int:
        deadline = time.monotonic() + 60
        while not self.opened and not self.marker.exists():
            assert time.monotonic() < deadline, "no worker started within a minute"
            time.sleep(0.01)
        return os.getpid()


def test_a_shared_pool_serves_every_call_inside_it(tmp_path):
    with shared_workers(("tasks.prepare.clean_record",), workers=1):
        first = set(run_chunks(WaitForWorkerJob(tmp_path / "first"), 50)) - {os.getpid()}
        second = set(run_chunks(WaitForWorkerJob(tmp_path / "second"), 50)) - {os.getpid()}
    assert len(first) == 1 and second == first  # one worker process, still there for the next call


def test_forward_chunks_skip_what_others_took_and_keep_only_the_chunk_at_hand():
    from tasks.core.workers import ForwardChunks

    read: list[int] = []

    def items():
        for n in range(10):
            read.append(n)
            yield n

    stream = ForwardChunks(items(), total=10, chunk_rows=3, what="numbers")
    assert stream.chunk(1) == [3, 4, 5]
    assert stream.chunk(3) == [9]  # the last, short chunk; chunk 2 was another process's
    assert read == list(range(10))  # read once, front to back
    with pytest.raises(ValueError, match="asked after a later one"):
        stream.chunk(2)
    short = ForwardChunks(iter(range(7)), total=10, chunk_rows=3, what="numbers.jsonl")
    with pytest.raises(ValueError, match="numbers.jsonl ends before its 10 records: it changed meanwhile"):
        short.chunk(2)
