"""One run at a time per workdir: real processes holding, waiting for, refusing and taking over the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.io import write_jsonl
from tasks.core.lock import WorkdirBusy, lock_path, workdir_lock

REPO = Path(__file__).resolve().parents[3]
HOLD = """
import sys, time
from tasks.core.lock import workdir_lock
with workdir_lock(sys.argv[1], "medsafe data", wait=True, notify=lambda m: print(m, flush=True)):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def _start(workdir: Path, hold_s: float, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DEEPSEEK_API_KEY"}
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, str(workdir), str(hold_s)],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {text!r} from the process; it wrote: {log.read_text(errors='replace')}")
        time.sleep(0.05)


def test_holder_is_named_in_the_file_and_the_lock_is_reentrant(tmp_path: Path) -> None:
    with workdir_lock(tmp_path, "medsafe sft") as path:
        assert path == lock_path(tmp_path) == tmp_path.resolve() / ".medsafe" / "run.lock"
        info = json.loads(path.read_text())
        assert (info["pid"], info["command"]) == (os.getpid(), "medsafe sft") and info["started_at"]
        with workdir_lock(tmp_path, "medsafe eval"):  # the flow inside a command that already locked
            assert json.loads(path.read_text())["command"] == "medsafe sft"
    assert path.read_text() == ""  # released: the file names no one


def test_a_second_run_refuses_with_no_wait_in_one_line_naming_the_holder(tmp_path: Path) -> None:
    log = tmp_path / "holder.log"
    holder = _start(tmp_path, 600, log)
    try:
        _wait_for_line(log, "locked", holder)
        result = CliRunner().invoke(
            app, ["data", "--no-wait", "--profile", "tiny", "--workdir", str(tmp_path)]
        )
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert f"is in use by `medsafe data` (pid {holder.pid}" in lines[0] and "--workdir" in lines[0]
    assert not (tmp_path / "data").exists()  # it wrote nothing


def test_a_waiting_run_says_who_it_waits_for_and_goes_on_when_free(tmp_path: Path) -> None:
    log = tmp_path / "waiter.log"
    with workdir_lock(tmp_path, "medsafe rl"):
        waiter = _start(tmp_path, 0, log)
        _wait_for_line(log, "waiting for it to finish", waiter)
        assert f"in use by `medsafe rl` (pid {os.getpid()}" in log.read_text()
        assert "locked" not in log.read_text()
    assert waiter.wait(timeout=60) == 0
    assert log.read_text().splitlines()[-2:] == ["locked", "released"]


def test_a_killed_holder_blocks_no_one_and_reading_commands_are_never_blocked(tmp_path: Path) -> None:
    log = tmp_path / "holder.log"
    holder = _start(tmp_path, 600, log)
    try:
        _wait_for_line(log, "locked", holder)
        busy = pytest.raises(WorkdirBusy, match=f"`medsafe data` \\(pid {holder.pid} ")
        with busy, workdir_lock(tmp_path, "medsafe run", wait=False):
            pass
        # read-only commands run beside a holder: profiles, and score into another file
        preds = tmp_path / "preds.jsonl"
        write_jsonl(
            preds, [{"id": "a", "question": "头痛怎么办？", "response": "多休息，持续不缓解请就医。"}]
        )
        runner = CliRunner()
        assert runner.invoke(app, ["profiles"]).exit_code == 0
        scored = runner.invoke(
            app,
            ["score", "--predictions", str(preds), "--out", str(tmp_path / "s.jsonl"), "--no-teacher"]
            + ["--workdir", str(tmp_path)],
        )
        assert scored.exit_code == 0, scored.output
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # no clean-up runs: the kernel drops its flock
        holder.wait(timeout=30)
    notes: list[str] = []
    started = time.monotonic()
    with workdir_lock(tmp_path, "medsafe run", wait=False, notify=notes.append) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert time.monotonic() - started < 5
    assert len(notes) == 1 and f"taking over the lock left by `medsafe data` (pid {holder.pid}" in notes[0]
