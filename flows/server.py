"""The temporary Prefect server of a CLI command, started before the command imports its flow.

Left to itself, Prefect starts its temporary server when a flow first calls the API: after the command
has imported the flow (Great Expectations, pandas, Prefect: ~5 CPU-s), and after importing the server's
own code into this process (~2 CPU-s) only to start a subprocess, which then takes seconds to start (its
imports, its database). `medsafe data` starts the same server process (the same command and settings
as Prefect's temporary server) before it imports anything heavy, so on a 2-core machine the server
starts while the command imports; this process never imports the server's code, and the flow runs
against it as against any server (PREFECT_API_URL, for this command only). When the flow ends, the log
and event workers are flushed while the server still answers, then the server stops.

Nothing changes when a server is configured (PREFECT_API_URL in the environment or a Prefect profile) or
the temporary server is off (PREFECT_SERVER_EPHEMERAL_ENABLED=false): Prefect then does as it always does.

The first time the temporary server starts on a PREFECT_HOME it creates and migrates its SQLite database
(Prefect's 116 Alembic migrations: ~4 s on 2 cores, more than the rest of its start). `medsafe setup`
(prepare_database, run by `make install`) does that once ahead, so a user's first `medsafe data` does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.core.errors import MedsafeError

# what Prefect's SubprocessASGIServer sets for its server process (no UI; an ephemeral server)
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
_PORT_IN_USE = 3  # uvicorn's exit code when the port was taken meanwhile


class ServerStartFailed(MedsafeError):
    """The temporary server exited or did not answer in time."""


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class TemporaryServer:
    """Prefect's temporary server as a process of its own: started at once, waited for when needed."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.process: subprocess.Popen | None = self._spawn()
        # the server's first API request costs ~0.3 s (its lazy start-up) whatever it asks: made here, as
        # soon as the server answers, it is paid while this process still imports, not by the flow's start
        # (A/B of 4 interleaved pairs, 50k rows: 0.36 s less before the flow, docs/performance.md)
        self.warmer = threading.Thread(target=self._warm, name="medsafe-server-warmup", daemon=True)
        self.warmer.start()

    def _warm(self, timeout_s: float = 120.0) -> None:
        """Wait for /health, then make one read-only API request (best effort: failures are wait()'s)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process is not None and self.process.poll() is None:
            if self.healthy():
                with (
                    contextlib.suppress(urllib.error.URLError, OSError),
                    urllib.request.urlopen(f"{self.api_url}/admin/version", timeout=10),
                ):
                    pass
                return
            time.sleep(0.1)

    def healthy(self) -> bool:
        """Whether the server answers /health now."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _spawn(self) -> subprocess.Popen:
        spec = importlib.util.find_spec("prefect")  # where Prefect is, without importing it
        app_dir = Path(spec.origin).parent.parent if spec and spec.origin else Path(".")
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory"]
        command += ["prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--log-level", "error", "--lifespan", "on"]
        return subprocess.Popen(command, env={**os.environ, **SERVER_ENV})

    def wait(self, timeout_s: float) -> None:
        """Until the server answers /health; ServerStartFailed when it exits or does not answer in time."""
        deadline, respawns = time.monotonic() + timeout_s, 3
        while time.monotonic() < deadline:
            code = self.process.poll() if self.process else -1
            if code == _PORT_IN_USE and respawns and not _bindable(self.port):
                # the port was taken between choosing and binding it: another one (as Prefect does)
                self.port, respawns = _free_port(), respawns - 1
                self.process = self._spawn()
                continue
            if code is not None:
                raise ServerStartFailed(
                    f"the temporary Prefect server exited with code {code} while starting (its messages are "
                    "above); set PREFECT_API_URL to use a running server instead"
                )
            if self.healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise ServerStartFailed(
            f"the temporary Prefect server did not answer within {timeout_s:.0f} s; raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS or set PREFECT_API_URL to a running server"
        )

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_temporary_server() -> TemporaryServer | None:
    """Start Prefect's temporary server now, when this command will need one: no server in the environment
    (a Prefect profile's is checked by `serving`, once Prefect is imported anyway)."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    if os.environ.get("PREFECT_SERVER_EPHEMERAL_ENABLED", "true").strip().lower() in ("0", "false", "no"):
        return None
    if "prefect" in sys.modules and _configured_elsewhere():  # in-process: a test harness, say
        return None
    return TemporaryServer()


def _configured_elsewhere() -> bool:
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    return bool(settings.api.url) or not settings.server.ephemeral.enabled


@contextmanager
def serving(server: TemporaryServer | None) -> Iterator[None]:
    """Run the block against `server` (waited for here), then flush Prefect's log and event workers and stop
    it; None, or a server a Prefect profile overrides: the block runs as Prefect would run it."""
    if server is None:
        yield
        return
    try:
        if _configured_elsewhere():  # a profile names a server: Prefect uses it, so do we
            server.stop()
            yield
            return
        with _api_url(server):
            yield
    finally:
        server.stop()


@contextmanager
def _api_url(server: TemporaryServer) -> Iterator[None]:
    from prefect.context import refresh_global_settings_context
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    server.wait(float(get_current_settings().server.ephemeral.startup_timeout_seconds))
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    refresh_global_settings_context()  # threads Prefect starts read the global settings
    try:
        # No flow-run heartbeats: they let a server mark the runs of a crashed process, and this server
        # ends with this process. Prefect joins the heartbeat thread as a flow ends, which waits out the
        # thread's current one-second sleep (0.5 s a run on average).
        updates = {PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        with temporary_settings(updates=updates):
            try:
                yield
            finally:
                _flush_workers()  # while the server still answers
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        refresh_global_settings_context()


def _flush_workers() -> None:
    """Send the logs and events still queued (what Prefect's test harness does before its server stops)."""
    with contextlib.suppress(Exception):
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
    with contextlib.suppress(Exception):
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=10)


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite connection URL (sqlite+aiosqlite:////abs/path.db); None for anything else."""
    scheme, sep, rest = url.partition(":///")
    if not sep or not scheme.startswith("sqlite") or not rest or rest.startswith(":memory:"):
        return None
    return Path(rest.split("?", 1)[0])


def prepare_database() -> dict[str, str]:
    """Create and migrate the local SQLite database of Prefect's temporary server when it does not exist
    yet; {"status": "created" | "ready" | "not_needed", "detail": one line}. Nothing is done when a server is
    configured (its own database is its business) or the database is not a local SQLite file. The
    connection URL is never echoed (it may hold a password); a SQLite file's path is."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        return {"status": "not_needed", "detail": "Prefect uses a configured server (PREFECT_API_URL)"}
    secret = settings.server.database.connection_url
    path = _sqlite_file(secret.get_secret_value() if secret is not None else "")
    if path is None:
        return {"status": "not_needed", "detail": "Prefect's database is not a local SQLite file"}
    if path.exists():
        return {"status": "ready", "detail": f"Prefect's database exists: {path}"}
    from prefect.server.database import provide_database_interface

    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    asyncio.run(provide_database_interface().create_db())
    took = time.perf_counter() - started
    return {"status": "created", "detail": f"created Prefect's database in {took:.1f} s: {path}"}
