"""A real, throwaway PostgreSQL server for tests: initdb on a temporary directory, a free local port,
password authentication over TCP on 127.0.0.1 only (the password in PGPASSWORD, never in a URL).

Uses Debian's `postgresql` package (/usr/lib/postgresql/*/bin; `make install-dev` installs it) or initdb
on PATH. PostgreSQL refuses to run as root, so as root the server runs as `nobody`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

USER, PASSWORD = "medsafe", "pw-" + uuid.uuid4().hex  # the password lives in PGPASSWORD only


def find_bindir() -> Path | None:
    """The directory of initdb/pg_ctl, newest version first; None when PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def why_not_available() -> str | None:
    """Why a server cannot be started here (the skip reason), or None."""
    if find_bindir() is None:
        return "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): `make install-dev`"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL will not run as root"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the PostgreSQL driver is not installed: pip install -e '.[dev]'"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """`with PostgresServer() as pg:` a running server; `pg.new_database()` gives a fresh database's URL."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="medsafe-pg-"))
        self.data, self.port = self.root / "data", _free_port()
        self.url = f"postgresql://{USER}@127.0.0.1:{self.port}"

    def _as_owner(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "nobody", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def __enter__(self) -> PostgresServer:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody")
            shutil.chown(pwfile, "nobody")
        run = lambda *cmd: subprocess.run(self._as_owner(*cmd), check=True, capture_output=True)  # noqa: E731
        run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync")  # fmt: skip
        opts = f"-p {self.port} -h 127.0.0.1 -k {self.root} -c fsync=off -c full_page_writes=off"
        run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w",
            "-t", "60", "-o", opts, "start")  # fmt: skip
        return self

    def new_database(self) -> str:
        """A fresh, empty database on this server; its URL (no password: PGPASSWORD holds it)."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{self.url}/{name}"

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} password={PASSWORD} dbname={database}"

    def query(self, url: str, sql: str) -> list[tuple]:
        """Rows of `sql` in the database of `url`, through a connection of its own."""
        import psycopg

        with psycopg.connect(self.dsn(url.rsplit("/", 1)[1])) as conn:
            return conn.execute(sql).fetchall()

    def __exit__(self, *exc: object) -> None:
        subprocess.run(
            self._as_owner(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)
