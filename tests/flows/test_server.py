"""The CLI's temporary Prefect server (flows/server.py), started before the flow's modules are imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.server import ServerStartFailed, TemporaryServer, serving, start_temporary_server


def test_no_server_is_started_when_one_is_configured(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    assert start_temporary_server() is None
    monkeypatch.delenv("PREFECT_API_URL")
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_ENABLED", "false")
    assert start_temporary_server() is None
    with serving(None):  # nothing to wait for or stop
        assert os.environ.get("PREFECT_API_URL") is None


@pytest.mark.slow
def test_a_flow_runs_against_the_started_server_which_stops_after(tmp_path, monkeypatch):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))

    @flow(name="temporary-server-probe")
    def probe() -> str:
        return str(PREFECT_API_URL.value())

    # as in a fresh CLI process: no server configured, even when another test's harness set one in-process
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        server = TemporaryServer()
        process = server.process
        with serving(server):
            used, state = probe(), probe(return_state=True)
            with get_client(sync_client=True) as client:
                recorded = client.read_flow_run(state.state_details.flow_run_id)
            assert os.environ["PREFECT_API_URL"] == server.api_url
        assert used == server.api_url and recorded.state.is_completed()  # the run is on that server
        server.warmer.join(timeout=30)
        assert not server.warmer.is_alive()  # the warm-up request ended once the server answered
        assert process.poll() is not None and server.process is None  # stopped
        assert "PREFECT_API_URL" not in os.environ and PREFECT_API_URL.value() != server.api_url


@pytest.mark.slow
def test_a_server_that_cannot_start_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    # a database the server cannot open: it exits while starting (code 3, the port being free)
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", "sqlite+aiosqlite:////nonexistent/dir/x.db")
    server = TemporaryServer()
    with pytest.raises(ServerStartFailed, match="exited with code 3 while starting.*PREFECT_API_URL"):
        server.wait(timeout_s=120)
    server.stop()
    assert server.process is None


@pytest.mark.slow
def test_setup_creates_prefects_database_once_and_then_leaves_it(tmp_path):
    """`medsafe setup` as a user runs it (a fresh process, no server configured): it creates the temporary
    server's database on a fresh PREFECT_HOME, which a server then starts on as on any existing one."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    medsafe = [str(Path(sys.executable).with_name("medsafe")), "--json", "setup"]

    def setup() -> dict:
        done = subprocess.run(medsafe, env=env, capture_output=True, text=True, timeout=300, check=True)
        return json.loads(done.stdout)

    first = setup()
    database = tmp_path / "home" / "prefect.db"
    assert first["status"] == "created" and str(database) in first["detail"]
    assert database.stat().st_size > 100_000  # migrated: Prefect's tables, not an empty file
    assert setup()["status"] == "ready"
    env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # a configured server: its database is not ours
    assert setup()["status"] == "not_needed"
