"""The judge cache's embedded default: one SQLite file (WAL) in the workdir, for the processes of one machine.

A claim is a `BEGIN IMMEDIATE` transaction (SQLite serialises writers): drop an expired lease, refuse
when the judgement is cached, then INSERT, which fails on a live claim. WAL does not work over network
file systems: hosts that share a cache use the PostgreSQL store (cache_postgres.py) instead.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tasks.reward.cache_store import Claim

_CHUNK = 500  # keys per SELECT (SQLite's bound-parameter limit is far above)


class SqliteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.location = path, str(path)
        # autocommit: every statement outside BEGIN is its own transaction, committed when it returns
        self.conn = self._connect()
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY "
            "KEY, created_at TEXT NOT NULL, record TEXT NOT NULL)"
        )
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, "
            "pid INTEGER NOT NULL, host TEXT NOT NULL, expires_at REAL NOT NULL)"
        )
        self._lock = threading.Lock()
        self._renew_conn: sqlite3.Connection | None = None  # the heartbeat thread's own connection

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def records(self, keys: list[str]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            found += self.conn.execute(
                f"SELECT key, record FROM judgements WHERE key IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
        return found

    def put(self, key: str, created_at: str, record: str) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO judgements (key, created_at, record) VALUES (?, ?, ?)",
            (key, created_at, record),
        )

    def claim(self, key: str, owner: str, pid: int, host: str, lease_s: float) -> bool:
        now = time.time()
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute("DELETE FROM claims WHERE key = ? AND expires_at <= ?", (key, now))
                cached = self.conn.execute("SELECT 1 FROM judgements WHERE key = ?", (key,)).fetchone()
                taken = not cached and self._insert_claim((key, owner, pid, host, now + lease_s))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return taken

    def _insert_claim(self, row: tuple[str, str, int, str, float]) -> bool:
        try:
            self.conn.execute(
                "INSERT INTO claims (key, owner, pid, host, expires_at) VALUES (?, ?, ?, ?, ?)", row
            )
        except sqlite3.IntegrityError:
            return False  # a live claim of another owner (or ours: a key is claimed once per call)
        return True

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            self.conn.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner))

    def holders(self, keys: list[str]) -> list[Claim]:
        live, now = [], time.time()
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            rows = self.conn.execute(
                "SELECT key, owner, pid, host, expires_at FROM claims WHERE expires_at > ? "
                f"AND key IN ({','.join('?' * len(chunk))})",
                [now, *chunk],
            )
            live += [Claim(*row) for row in rows]
        return live

    def renew(self, owner: str, lease_s: float) -> None:
        if self._renew_conn is None:
            self._renew_conn = self._connect()
        self._renew_conn.execute(
            "UPDATE claims SET expires_at = ? WHERE owner = ?", (time.time() + lease_s, owner)
        )

    def all_records(self) -> Iterator[str]:
        for (record,) in self.conn.execute("SELECT record FROM judgements ORDER BY created_at, key"):
            yield record

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]

    def close(self, owner: str) -> None:
        with self._lock:
            self.conn.execute("DELETE FROM claims WHERE owner = ?", (owner,))
        self.conn.close()
        if self._renew_conn is not None:
            self._renew_conn.close()
