"""The judge cache on a PostgreSQL server (SQLAlchemy + psycopg): one cache for every host of a deployment.

Same tables and guarantees as the SQLite file, prefixed by the cache's name so that the teacher and the
evaluation judge can share one database. A claim is one transaction: drop an expired lease, INSERT ... ON
CONFLICT DO NOTHING, and only then look for a stored judgement (rolled back when there is one), so a
judgement stored and released between our look and our insert is never paid twice under READ COMMITTED.
Leases are measured on the server's clock, so hosts whose clocks disagree still agree on who holds what.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tasks.reward.cache_store import CacheUnavailable, Claim, mask_url

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
_SETUP_LOCK = 0x6D656473  # pg_advisory_xact_lock id: concurrent CREATE TABLE IF NOT EXISTS can collide


class PostgresStore:
    def __init__(self, url: str, name: str) -> None:
        self.location = mask_url(url)
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", name):
            raise ValueError(f"cache name {name!r} is not a plain SQL identifier")
        self.judgements, self.claims = f"{name}_judgements", f"{name}_claims"
        try:
            import sqlalchemy as sa
        except ImportError as e:  # pragma: no cover - SQLAlchemy comes with Prefect
            raise CacheUnavailable(f"judge cache {self.location}: SQLAlchemy is not installed") from e
        self.sa = sa
        try:
            self.engine = sa.create_engine(_with_driver(url), pool_pre_ping=True, pool_size=2, max_overflow=4)
            with self.engine.begin() as conn:
                self._create_tables(conn)
        except ModuleNotFoundError as e:
            raise CacheUnavailable(
                f"judge cache {self.location} needs the PostgreSQL driver ({e.name} is missing): "
                "pip install 'medsafe[postgres]'"
            ) from None
        except (sa.exc.SQLAlchemyError, ValueError) as e:
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
            raise CacheUnavailable(
                f"cannot open the judge cache at {self.location}: {reason.replace(url, self.location)}; "
                "check the cache_url setting, that the server is up, and the password in PGPASSWORD or "
                "~/.pgpass"
            ) from None

    def _create_tables(self, conn) -> None:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SETUP_LOCK})")
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {self.judgements} "
            "(key TEXT PRIMARY KEY, created_at TEXT NOT NULL, record TEXT NOT NULL)"
        )
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {self.claims} (key TEXT PRIMARY KEY, owner TEXT NOT NULL, "
            "pid INTEGER NOT NULL, host TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)"
        )

    def _run(self, sql: str, **params) -> list[tuple]:
        with self.engine.begin() as conn:
            result = conn.execute(self.sa.text(sql), params)
            return [tuple(row) for row in result] if result.returns_rows else []

    def records(self, keys: list[str]) -> list[tuple[str, str]]:
        if not keys:
            return []
        return self._run(f"SELECT key, record FROM {self.judgements} WHERE key = ANY(:keys)", keys=keys)

    def put(self, key: str, created_at: str, record: str) -> None:
        self._run(
            f"INSERT INTO {self.judgements} (key, created_at, record) VALUES (:key, :created_at, :record) "
            "ON CONFLICT (key) DO NOTHING",
            key=key,
            created_at=created_at,
            record=record,
        )

    def claim(self, key: str, owner: str, pid: int, host: str, lease_s: float) -> bool:
        text = self.sa.text
        with self.engine.connect() as conn, conn.begin() as tx:
            expired = f"DELETE FROM {self.claims} WHERE key = :key AND expires_at <= {_NOW}"
            conn.execute(text(expired), {"key": key})
            inserted = conn.execute(
                text(
                    f"INSERT INTO {self.claims} (key, owner, pid, host, expires_at) "
                    f"VALUES (:key, :owner, :pid, :host, {_NOW} + :lease) ON CONFLICT (key) DO NOTHING "
                    "RETURNING key"
                ),
                {"key": key, "owner": owner, "pid": pid, "host": host, "lease": lease_s},
            ).first()
            cached = (
                inserted
                and conn.execute(
                    text(f"SELECT 1 FROM {self.judgements} WHERE key = :key"), {"key": key}
                ).first()
            )
            if cached:
                tx.rollback()
                return False
        return inserted is not None

    def release(self, key: str, owner: str) -> None:
        self._run(f"DELETE FROM {self.claims} WHERE key = :key AND owner = :owner", key=key, owner=owner)

    def holders(self, keys: list[str]) -> list[Claim]:
        if not keys:
            return []
        rows = self._run(
            f"SELECT key, owner, pid, host, expires_at FROM {self.claims} "
            f"WHERE expires_at > {_NOW} AND key = ANY(:keys)",
            keys=keys,
        )
        return [Claim(*row) for row in rows]

    def renew(self, owner: str, lease_s: float) -> None:
        self._run(
            f"UPDATE {self.claims} SET expires_at = {_NOW} + :lease WHERE owner = :owner",
            lease=lease_s,
            owner=owner,
        )

    def all_records(self) -> Iterator[str]:
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=1000).exec_driver_sql(
                f"SELECT record FROM {self.judgements} ORDER BY created_at, key"
            )
            for (record,) in result:
                yield record

    def count(self) -> int:
        return self._run(f"SELECT COUNT(*) FROM {self.judgements}")[0][0]

    def close(self, owner: str) -> None:
        try:
            self._run(f"DELETE FROM {self.claims} WHERE owner = :owner", owner=owner)
        finally:
            self.engine.dispose()


def _with_driver(url: str) -> str:
    """postgresql:// (and postgres://) through psycopg 3, the driver `medsafe[postgres]` installs."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else url
