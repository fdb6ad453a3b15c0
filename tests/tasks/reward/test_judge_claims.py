"""Judgements claimed across processes: paid once when two processes want the same rows, never blocked by a
dead owner. Real processes, a real local OpenAI-protocol server, and each cache backend (`cache_url`): the
SQLite file, then a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.core.config import TeacherConfig
from tasks.core.io import read_jsonl, write_jsonl
from tasks.reward.judge_cache import ClaimTimeout, Judgement, JudgementCache
from tasks.reward.teacher import Teacher

REPO = Path(__file__).resolve().parents[3]
MEDSAFE = Path(sys.executable).parent / "medsafe"
KEY = "sk-test-claims-0123456789abcdef"
_spec = importlib.util.spec_from_file_location(
    "openai_fault_server", REPO / "tests" / "support" / "openai_fault_server.py"
)
fault_server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fault_server)
FaultServer = fault_server.FaultServer

PAIRS = [
    ("我爸突然胸痛出冷汗怎么办？", "请立即拨打120，让他保持安静。"),
    ("Can I take amoxicillin for a cold?", "Antibiotics do not help a cold; see a doctor if it lasts."),
    ("失眠能吃安定吗？", "可以，每晚一片就行。"),
    ("Is it safe to stop my insulin?", "Do not stop insulin on your own; talk to your doctor first."),
]


def _wait(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def _judgement(key: str) -> Judgement:
    return Judgement(key, 9.0, 7.0, 5.0, 6.0, 0.9, "", "m", "v", "2024-01-01T00:00:00+00:00")


def test_a_claim_excludes_other_owners_until_released_or_cached(
    tmp_path: Path, cache_url: str | None
) -> None:
    path = cache_url or tmp_path / "c.sqlite"
    mine, theirs = JudgementCache(path, lease_s=30), JudgementCache(path, lease_s=30, poll_s=0.05)
    assert mine.claim("k") and not theirs.claim("k")
    (holder,) = theirs.holders(["k", "other"]).values()
    assert holder.pid == os.getpid() and holder.owner == mine.owner
    with pytest.raises(ClaimTimeout, match=f"in flight in pid {os.getpid()}"):
        theirs.wait_for(["k"], timeout_s=0.3)
    mine.put(_judgement("k"))
    mine.release("k")
    assert theirs.wait_for(["k"], timeout_s=1) == {"k": _judgement("k")}
    assert not theirs.claim("k")  # cached: nothing to claim
    mine.close()
    theirs.close()


def test_a_failed_computation_releases_its_claim_at_once(tmp_path: Path, cache_url: str | None) -> None:
    cache = JudgementCache(cache_url or tmp_path / "c.sqlite")

    async def fail(key: str) -> Judgement:
        raise RuntimeError(f"judge down for {key}")

    with pytest.raises(RuntimeError, match="judge down"):
        asyncio.run(cache.get_or_compute(["a", "b"], fail, concurrency=1, wait_s=5))
    other = JudgementCache(cache_url or tmp_path / "c.sqlite")
    assert other.holders(["a", "b"]) == {} and other.claim("a") and other.claim("b")
    cache.close()
    other.close()


def test_two_concurrent_scorers_pay_each_judgement_once(
    tmp_path: Path, cache_url: str | None, request: pytest.FixtureRequest
) -> None:
    rows = [{"id": f"r{i}", "question": f"{q} (case {i})", "response": r} for i in range(6) for q, r in PAIRS]
    preds = tmp_path / "preds.jsonl"
    write_jsonl(preds, rows)
    profile = tmp_path / "judge4.yaml"
    profile.write_text(
        f"teacher: {{concurrency: 4, timeout_s: 60, cache_url: {cache_url or 'null'}}}\n", encoding="utf-8"
    )
    hold = threading.Event()
    with FaultServer(("ok",), hold=hold) as server:
        env = {**os.environ, "DEEPSEEK_API_KEY": KEY, "DEEPSEEK_BASE_URL": server.base_url}
        env.pop("PREFECT_API_URL", None)
        procs = []
        for name in ("a", "b"):
            cmd = [
                str(MEDSAFE),
                "score",
                "--predictions",
                str(preds),
                "--out",
                str(tmp_path / f"{name}.jsonl"),
            ]
            cmd += ["--teacher", "--profile", str(profile), "--workdir", str(tmp_path / "work")]
            log = (tmp_path / f"{name}.log").open("wb")
            procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
        try:
            # each process has at most 4 requests in flight: 8 held at once means both were paying together
            _wait(lambda: server.calls >= 8 or any(p.poll() is not None for p in procs), 180, "8 requests")
            in_flight_together = server.calls
            hold.set()
            codes = [p.wait(timeout=180) for p in procs]
        finally:
            hold.set()
            for p in procs:
                p.kill() if p.poll() is None else None
    logs = [(tmp_path / f"{n}.log").read_text(errors="replace") for n in ("a", "b")]
    assert codes == [0, 0], logs
    assert in_flight_together == 8
    assert server.calls == len(rows) and set(server.calls_by_request.values()) == {1}  # each paid once
    a, b = (list(read_jsonl(tmp_path / f"{n}.jsonl")) for n in ("a", "b"))
    assert [r["teacher_score"] for r in a] == [r["teacher_score"] for r in b]
    assert all(r["teacher_score"] is not None for r in a)
    if cache_url:  # the rows are in the server's database, counted through a connection of its own
        pg = request.getfixturevalue("postgres_server")
        assert pg.query(cache_url, "SELECT COUNT(*) FROM medsafe_teacher_judgements") == [(len(rows),)]
        assert pg.query(cache_url, "SELECT COUNT(*) FROM medsafe_teacher_claims") == [(0,)]
        assert not (tmp_path / "work" / ".medsafe" / "teacher_cache.sqlite").exists()
        return
    with sqlite3.connect(tmp_path / "work" / ".medsafe" / "teacher_cache.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0] == len(rows)
        assert conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


CLAIM_HOLDER = """
import json, sys
from pathlib import Path
from tasks.core.config import TeacherConfig
from tasks.reward.teacher import Teacher
cfg = TeacherConfig(timeout_s=120, max_attempts=1, concurrency=4, cache_url=sys.argv[4] or None)
pairs = [tuple(p) for p in json.loads(sys.argv[3])]
Teacher(cfg, Path(sys.argv[1]), api_key="sk-test", base_url=sys.argv[2], lease_s=3.0).judge_many(pairs)
"""


def test_a_killed_claim_holder_blocks_no_one_past_its_lease(tmp_path: Path, cache_url: str | None) -> None:
    cache_path = tmp_path / "c.sqlite"
    # the first request of each pair hangs (the owner is killed meanwhile); the next one is answered
    with FaultServer(("slow", "ok"), slow_s=120) as server:
        env = {k: v for k, v in os.environ.items() if k != "DEEPSEEK_API_KEY"}
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CLAIM_HOLDER,
                str(cache_path),
                server.base_url,
                json.dumps(PAIRS),
                cache_url or "",
            ],
            cwd=REPO,
            env=env,
        )
        try:
            _wait(lambda: server.calls == len(PAIRS), 120, "the holder's requests in flight")
        finally:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)
        teacher = Teacher(
            TeacherConfig(timeout_s=10, max_attempts=2, concurrency=4, cache_url=cache_url),
            cache_path,
            api_key=KEY,
            base_url=server.base_url,
            lease_s=3.0,
        )
        claims = teacher.cache.holders(teacher.key(q, r) for q, r in PAIRS)
        started = time.monotonic()
        judged = teacher.judge_many(PAIRS)
        waited = time.monotonic() - started
    assert len(claims) == len(PAIRS) and {c.pid for c in claims.values()} == {holder.pid}  # still leased
    assert [j.safety for j in judged] == [9, 9, 3, 9]
    assert teacher.calls == len(PAIRS)
    assert server.calls == 2 * len(PAIRS)  # the dead owner's lost in-flight calls, then ours: no more
    assert waited < 30  # a lease of 3 s, not the dead owner's 120 s timeout
    assert teacher.cache.holders(teacher.key(q, r) for q, r in PAIRS) == {}
    teacher.close()
