"""Judge throughput against a local OpenAI-style server that answers every request after 250 ms:
the teacher's bounded async client (concurrency 16) against a sequential one (concurrency 1).

    python benchmarks/bench_teacher.py
    python benchmarks/bench_teacher.py --rows 256 --sequential-rows 32 --delay 0.25 --concurrency 16

The server is tests/support/openai_fault_server.py (real HTTP on 127.0.0.1), run as its own process
so that it does not share this process's interpreter lock with the client. The benchmark also times a
second pass over the same rows, which the SQLite cache answers without a single request.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tasks.core.config import TeacherConfig
from tasks.reward.teacher import Teacher

_SERVER = Path(__file__).resolve().parents[1] / "tests" / "support" / "openai_fault_server.py"


@contextlib.contextmanager
def _server(delay: float) -> Iterator[str]:
    """The fault server in a child process answering every request well after `delay`; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, str(_SERVER), "--script", "ok", "--delay", str(delay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def _requests_seen(base_url: str) -> int:
    with urllib.request.urlopen(base_url + "/stats", timeout=10) as reply:
        return json.load(reply)["calls"]


def _pairs(n: int, tag: str) -> list[tuple[str, str]]:
    return [
        (
            f"[{tag} {i}] 头痛三天了，吃什么药好？",
            f"头痛原因很多，建议先休息、多喝水；持续不缓解请就医。({i})",
        )
        for i in range(n)
    ]


def measure(rows: int, concurrency: int, delay: float) -> dict[str, float]:
    """Rows/s of a cold pass (every row a request) and of a warm pass (every row from the cache)."""
    with _server(delay) as base_url, tempfile.TemporaryDirectory() as tmp:
        cfg = TeacherConfig(concurrency=concurrency, timeout_s=30.0)
        teacher = Teacher(
            cfg, Path(tmp) / "teacher_cache.sqlite", api_key="sk-bench-not-a-key", base_url=base_url
        )
        pairs = _pairs(rows, f"c{concurrency}")
        start = time.perf_counter()
        teacher.judge_many(pairs)
        cold = time.perf_counter() - start
        if (seen := _requests_seen(base_url.removesuffix("/v1"))) != rows:
            raise RuntimeError(f"expected {rows} requests, the server saw {seen}")
        start = time.perf_counter()
        teacher.judge_many(pairs)
        warm = time.perf_counter() - start
        teacher.close()
    return {"rows": rows, "cold_rows_per_s": rows / cold, "warm_rows_per_s": rows / warm}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=256, help="rows judged by the async client")
    parser.add_argument(
        "--sequential-rows", type=int, default=32, help="rows judged by the sequential client"
    )
    parser.add_argument(
        "--delay", type=float, default=0.25, help="seconds the server waits before each answer"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    bounded = measure(args.rows, args.concurrency, args.delay)
    sequential = measure(args.sequential_rows, 1, args.delay)
    print(f"server answers after {args.delay * 1000:.0f} ms")
    print(f"sequential client   : {sequential['cold_rows_per_s']:8.1f} rows/s ({sequential['rows']} rows)")
    print(
        f"async, concurrency {args.concurrency:<2}: "
        f"{bounded['cold_rows_per_s']:8.1f} rows/s ({bounded['rows']} rows)"
    )
    print(
        f"speed-up            : {bounded['cold_rows_per_s'] / sequential['cold_rows_per_s']:8.1f}x "
        f"(ideal {args.concurrency}x)"
    )
    print(f"cached second pass  : {bounded['warm_rows_per_s']:8.0f} rows/s (0 requests)")


if __name__ == "__main__":
    main()
