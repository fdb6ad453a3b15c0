"""End-to-end fixtures: a real Prefect server with its UI, CLI subprocesses, and bounded waits.

Every process started here runs in its own session (process group) and is stopped, group and all,
when its context ends, whether the test passed or not.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
FAST_PROFILE = Path(__file__).resolve().parent / "fast.yaml"
BIN = Path(sys.executable).parent
SERVER_STARTUP_S = 180  # a busy 2-core machine takes a while to migrate the database and build the UI
T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 1.0) -> T:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:
            last_error = exc  # a server still starting answers with errors: keep polling until the deadline
        if time.monotonic() >= deadline:
            pytest.fail(
                f"gave up after {timeout:.0f} s waiting for {what}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.is_file() else "(no log)"


def _stop_group(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited within `grace_s`."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10)):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure nothing it started lingers in its group.
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


@contextmanager
def background(
    cmd: list[str], *, env: dict[str, str], log: Path, cwd: Path = REPO
) -> Iterator[subprocess.Popen]:
    """Run `cmd` in its own process group, output to `log`; stop the whole group on exit, even on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            _stop_group(proc)


@dataclass(frozen=True)
class Finished:
    returncode: int
    output: str
    wall_s: float


def run_to_end(
    cmd: list[str], *, env: dict[str, str], log: Path, timeout: float, cwd: Path = REPO
) -> Finished:
    """Run `cmd` to completion with a bounded wait; its whole process group is killed on timeout."""
    start = time.monotonic()
    with background(cmd, env=env, log=log, cwd=cwd) as proc:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = -1
    wall = time.monotonic() - start
    output = log.read_text(encoding="utf-8", errors="replace")
    if code == -1:
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout:.0f} s; output tail:\n{output[-4000:]}")
    return Finished(code, output, wall)


def tool(name: str) -> str:
    """A console script of this virtual environment (medsafe, prefect)."""
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{path} not found: install the project into this venv (make install-dev)")
    return str(path)


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    ui_url: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess that talks to this server."""
        return {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "TOKENIZERS_PARALLELISM": "false",
            **extra,
        }


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (local test server)
        return resp.status == 200


@pytest.fixture(scope="session")
def prefect_ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` with the UI on a free port and a temporary PREFECT_HOME, for the session."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = PrefectServer(api_url=f"{base}/api", ui_url=base, home=home)
    env = server.env(PREFECT_UI_ENABLED="true", PREFECT_UI_API_URL=server.api_url)
    env.pop("PREFECT_API_URL")  # the server itself must not act as a client of itself
    log = home / "server.log"
    cmd = [tool("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with background(cmd, env=env, log=log) as proc:

        def up() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"prefect server exited with {proc.returncode}:\n{tail(log)}")
            return _healthy(f"{server.api_url}/health")

        wait_until(
            up, timeout=SERVER_STARTUP_S, what=f"the Prefect server at {server.api_url}/health", interval=2
        )
        yield server


class Harness:
    """What the end-to-end tests use: the server, bounded subprocess runs and waits, and a Prefect client."""

    repo = REPO
    fast_profile = FAST_PROFILE

    def __init__(self, server: PrefectServer) -> None:
        self.server = server
        self.wait_until = wait_until
        self.tool = tool
        self.tail = tail

    def run(self, cmd: list[str], *, log: Path, timeout: float, cwd: Path = REPO, **env: str) -> Finished:
        """Run a command against the server to completion (bounded)."""
        return run_to_end(cmd, env=self.server.env(**env), log=log, timeout=timeout, cwd=cwd)

    def background(self, cmd: list[str], *, log: Path, cwd: Path = REPO, **env: str):  # noqa: ANN201
        """Start a long-running command against the server; the context stops its process group."""
        return background(cmd, env=self.server.env(**env), log=log, cwd=cwd)

    @contextmanager
    def client(self):  # noqa: ANN201
        """A sync Prefect client bound to the test server, whatever this process's own Prefect profile
        says."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with (
            temporary_settings(updates={PREFECT_API_URL: self.server.api_url}),
            get_client(sync_client=True) as client,
        ):
            yield client

    @staticmethod
    def pipeline_runs(client, workdir: Path) -> list:  # noqa: ANN001
        """medsafe-pipeline flow runs whose workdir parameter is `workdir`, oldest first."""
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName
        from prefect.client.schemas.sorting import FlowRunSort

        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["medsafe-pipeline"])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )
        return [r for r in runs if r.parameters.get("workdir") == str(workdir)]

    @staticmethod
    def subflow_runs(client, parent_id) -> dict:  # noqa: ANN001
        """The sub-flow runs of one flow run, keyed by flow name (medsafe-data, medsafe-train,
        medsafe-evaluate)."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

        subs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id]))
        )
        return {client.read_flow(s.flow_id).name: s for s in subs}


@pytest.fixture(scope="session")
def harness(prefect_ui_server: PrefectServer) -> Harness:
    return Harness(prefect_ui_server)


@dataclass(frozen=True)
class PipelineRun:
    workdir: Path
    result: Finished
    flow_run_id: object | None
    flow_run_name: str | None


@pytest.fixture(scope="session")
def first_pipeline_run(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """`medsafe run` on the fast profile, once per session; tests assert on it (the fixture does not)."""
    workdir = tmp_path_factory.mktemp("pipeline")
    result = harness.run(
        [tool("medsafe"), "run", "--profile", str(FAST_PROFILE), "--workdir", str(workdir)],
        log=workdir / "run-1.log",
        timeout=1200,
    )
    with harness.client() as client:
        runs = harness.pipeline_runs(client, workdir)
    last = runs[-1] if runs else None
    return PipelineRun(workdir, result, last.id if last else None, last.name if last else None)
