"""Where a judge cache keeps its rows: one small interface, two backends.

`open_store(where, name)` (in judge_cache.py) gives the embedded SQLite file (a Path: the default, one
workdir on one machine) or a PostgreSQL database (a `postgresql://` URL: several hosts share it). Both
hold the same two tables, judgements (key, created_at, record) and claims (key, owner, pid, host,
expires_at), and keep the same guarantees: a claim is atomic, a stored judgement is one committed row,
the first verdict of a key wins. A URL's password is never shown: `location` masks it (users put it in
PGPASSWORD or ~/.pgpass instead).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from tasks.core.errors import MedsafeError

URL_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class Claim:
    """Who is computing a judgement now, and until when their lease holds (epoch seconds, store's clock)."""

    key: str
    owner: str
    pid: int
    host: str
    expires_at: float

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}" if self.pid else "another process"


class CacheUnavailable(MedsafeError, RuntimeError):
    """The judge cache's database cannot be opened (bad URL, server down, driver missing)."""


class CacheStore(Protocol):
    """The rows of one judge cache. `now` is the store's own clock, so leases agree across hosts."""

    location: str  # a file path, or the URL with its password masked: safe in logs and messages

    def records(self, keys: list[str]) -> list[tuple[str, str]]: ...  # (key, record JSON) of those cached
    def put(self, key: str, created_at: str, record: str) -> None: ...  # a stored key keeps its record
    def claim(self, key: str, owner: str, pid: int, host: str, lease_s: float) -> bool: ...
    def release(self, key: str, owner: str) -> None: ...
    def holders(self, keys: list[str]) -> list[Claim]: ...  # live claims only
    def renew(self, owner: str, lease_s: float) -> None: ...  # from the heartbeat thread
    def all_records(self) -> Iterator[str]: ...  # oldest first
    def count(self) -> int: ...
    def close(self, owner: str) -> None: ...  # drops the owner's claims


def is_url(where: object) -> bool:
    return isinstance(where, str) and where.split(":", 1)[0].split("+", 1)[0] in URL_SCHEMES


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for logs, errors and reports."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hostpart}"
