"""Two `medsafe data` runs started together on one workdir: the second waits for the first (naming it),
and the workdir ends with exactly the files one run leaves."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_GATE_RUN = re.compile(r"/\d{8}T\d{6}\.\d+Z/")  # Data Docs name each validation folder by its time


def _tree(workdir: Path) -> tuple[dict[str, str], set[str]]:
    """data/ by content hash (it holds no times or paths), and the names of every report file."""
    data = {
        str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((workdir / "data").rglob("*"))
        if p.is_file()
    }
    reports = {
        _GATE_RUN.sub("/<run>/", str(p.relative_to(workdir)))
        for p in (workdir / "reports").rglob("*")
        if p.is_file()
    }
    return data, reports


def test_two_data_runs_on_one_workdir_end_as_one_run(harness, tmp_path: Path) -> None:  # noqa: ANN001
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    cmd = lambda w: [harness.tool("medsafe"), "data", "--profile", "tiny", "--workdir", str(w)]  # noqa: E731
    logs = [tmp_path / f"{name}.log" for name in ("first", "second", "alone")]
    with (
        harness.background(cmd(shared), log=logs[0]) as first,
        harness.background(cmd(shared), log=logs[1]) as second,
        harness.background(cmd(alone), log=logs[2]) as reference,
    ):
        codes = [p.wait(timeout=1200) for p in (first, second, reference)]
    out = [log.read_text(errors="replace") for log in logs]
    assert codes == [0, 0, 0], "\n---\n".join(o[-3000:] for o in out)
    waited = [o for o in out[:2] if "waiting for it to finish" in o]
    assert len(waited) == 1, "exactly one of the two runs on the shared workdir waits for the other"
    assert "is in use by `medsafe data` (pid " in waited[0]
    assert "waiting for it to finish" not in out[2]  # another workdir is never blocked

    shared_data, shared_reports = _tree(shared)
    alone_data, alone_reports = _tree(alone)
    assert shared_data and shared_data == alone_data
    assert shared_reports == alone_reports
    gate = [
        json.loads((w / "reports" / "data_quality" / "gate_result.json").read_text()) for w in (shared, alone)
    ]
    assert gate[0]["passed"] is gate[1]["passed"] is True
    assert (shared / ".medsafe" / "run.lock").read_text() == ""  # released
