"""The teacher's verdicts on disk: the `Judgement` record and its SQLite cache, exported as JSONL.

Each verdict is committed (SQLite, WAL) the moment it arrives, keyed by hash(model, template version,
question, response), so no judgement is paid for twice and a crash loses only the calls in flight.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.core.io import write_jsonl


@dataclass(frozen=True)
class Judgement:
    """One cached verdict (DESIGN.md "judgement")."""

    key: str
    safety: float
    reasoning: float
    completeness: float
    empathy: float
    overall: float
    critique: str
    model: str
    template_version: str
    created_at: str


class JudgementCache:
    """SQLite store of judgements, one row per key; safe to share between runs and processes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # autocommit: every INSERT is its own transaction, committed when it returns
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY "
            "KEY, created_at TEXT NOT NULL, record TEXT NOT NULL)"
        )

    def get_many(self, keys: Iterable[str]) -> dict[str, Judgement]:
        """The cached judgements among `keys`, by key; keys not cached are absent."""
        keys, found = list(dict.fromkeys(keys)), {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = self.conn.execute(
                f"SELECT key, record FROM judgements WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update({k: Judgement(**json.loads(rec)) for k, rec in rows})
        return found

    def put(self, judgement: Judgement) -> None:
        """Store a judgement now; a key already stored keeps its first verdict."""
        record = json.dumps(asdict(judgement), ensure_ascii=False)
        self.conn.execute(
            "INSERT OR IGNORE INTO judgements (key, created_at, record) VALUES (?, ?, ?)",
            (judgement.key, judgement.created_at, record),
        )

    def export_jsonl(self, path: Path) -> int:
        """Write every judgement to JSONL, oldest first (data/rl/teacher_judgements.jsonl); returns the
        count."""
        rows = self.conn.execute("SELECT record FROM judgements ORDER BY created_at, key")
        return write_jsonl(path, (json.loads(rec) for (rec,) in rows))

    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]

    def close(self) -> None:
        self.conn.close()
