"""The judges' verdicts on disk: the `Judgement` record and its cache, exported as JSONL.

Each verdict is committed the moment it arrives, keyed by hash(model, template version, question,
response), so no judgement is paid for twice and a crash loses only the calls in flight. The rows live in
the workdir's SQLite file (WAL; the default, one machine) or, for several hosts, in a PostgreSQL database
given by a `postgresql://` URL (teacher.cache_url, eval.judge.cache_url): cache_store.py.

Across concurrent processes (two scorers, a scheduled run beside a manual one) a judgement is *claimed*
before it is requested, in a `claims` table of the same database:

    cache = JudgementCache(path_or_url)          # any judge: give its keys their own namespace
    found = await cache.get_or_compute(keys, compute, concurrency=8, wait_s=600)

`get_or_compute` returns every key's judgement: cached ones from disk; the rest claimed one at a time
(inside the concurrency gate, so two processes share the work) and computed by `compute(key)`, stored and
released; keys claimed by another process are waited for (polling the cache) instead of paid again. The
primitives, for callers that need their own loop: `claim(key)` (atomic; False when cached or claimed by a
live lease elsewhere), `release(key)`, `wait_for(keys, timeout_s)` (returns the judgements that arrive;
keys left out were released or their lease expired: claim them), `holders(keys)`. A judge with its own
record (a dataclass with `key` and `created_at`) subclasses the cache and sets `record_type` (and `name`,
its tables' prefix on PostgreSQL).

A claim is a lease (owner pid and host, expiry on the store's clock): a background thread renews this
cache's leases every lease_s/3, so a killed owner's claims expire within `lease_s` and a crash never
blocks the cache; a failed or cancelled computation releases its claim at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.core.errors import MedsafeError
from tasks.core.io import write_jsonl
from tasks.reward.cache_sqlite import SqliteStore
from tasks.reward.cache_store import CacheStore, CacheUnavailable, Claim, is_url, mask_url

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 30.0


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


def open_store(where: Path | str, name: str) -> CacheStore:
    """The SQLite file at `where`, or the PostgreSQL database at a `postgresql://` URL, where this cache's
    tables are `<name>_judgements` and `<name>_claims` (one database can hold several caches)."""
    if is_url(where):
        from tasks.reward.cache_postgres import PostgresStore  # SQLAlchemy only when a server is used

        return PostgresStore(str(where), name)
    if isinstance(where, str) and "://" in where:
        raise CacheUnavailable(
            f"judge cache URL {mask_url(where)!r} is not supported: use a postgresql:// URL, "
            "or leave cache_url unset for the SQLite file in the workdir"
        )
    return SqliteStore(Path(where))


class ClaimTimeout(MedsafeError, TimeoutError):
    """A judgement stayed in flight in another live process for longer than the caller would wait."""


class JudgementCache:
    """Judgements, one row per key, with cross-process claims; safe to share between runs and processes
    (and hosts, on a PostgreSQL `where`)."""

    record_type: type = Judgement  # what a stored record is read back as (the evaluation judge's differ)
    name = "medsafe_teacher"  # its tables' prefix in a shared PostgreSQL database

    def __init__(self, where: Path | str, *, lease_s: float = DEFAULT_LEASE_S, poll_s: float = 0.2) -> None:
        """`where`: the SQLite file (a Path) or a `postgresql://` URL (see cache_store.py)."""
        self.store = open_store(where, self.name)
        self.location, self.lease_s, self.poll_s = self.store.location, lease_s, poll_s
        self.path = where if isinstance(where, Path) else None
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[str]) -> dict[str, Judgement]:
        """The cached judgements among `keys`, by key; keys not cached are absent."""
        rows = self.store.records(list(dict.fromkeys(keys)))
        return {k: self.record_type(**json.loads(rec)) for k, rec in rows}

    def put(self, judgement: Judgement) -> None:
        """Store a judgement now; a key already stored keeps its first verdict."""
        record = json.dumps(asdict(judgement), ensure_ascii=False)
        self.store.put(judgement.key, judgement.created_at, record)

    # ---- claims
    def claim(self, key: str) -> bool:
        """Take the lease on `key` in one transaction: True when this cache now holds it; False when the
        judgement is cached or another live owner holds it. An expired lease is taken over."""
        taken = self.store.claim(key, self.owner, os.getpid(), socket.gethostname(), self.lease_s)
        if taken:
            self._start_heartbeat()
        return taken

    def release(self, key: str) -> None:
        """Give up this cache's claim on `key` (after storing its judgement, or after a failure)."""
        self.store.release(key, self.owner)

    def holders(self, keys: Iterable[str]) -> dict[str, Claim]:
        """Live claims among `keys` (another process's, or another call's in this one), by key."""
        return {c.key: c for c in self.store.holders(list(dict.fromkeys(keys)))}

    def wait_for(self, keys: Iterable[str], timeout_s: float) -> dict[str, Judgement]:
        """Poll until each key is cached or no longer claimed elsewhere; the judgements found, by key.
        Keys left out were released (a failure) or their owner died: claim them. Raises ClaimTimeout when a
        live owner still holds one after `timeout_s`."""
        keys, deadline = list(dict.fromkeys(keys)), time.monotonic() + timeout_s
        while True:
            found, pending = self._settle(keys)
            if not pending:
                return found
            if time.monotonic() >= deadline:
                raise self._timeout(pending, timeout_s)
            time.sleep(self.poll_s)

    def _settle(self, keys: list[str]) -> tuple[dict[str, Judgement], dict[str, Claim]]:
        """The judgements cached among `keys`, and the other keys still claimed by a live owner."""
        found = self.get_many(keys)
        return found, self.holders([k for k in keys if k not in found])

    def _timeout(self, pending: dict[str, Claim], waited_s: float) -> ClaimTimeout:
        holder = next(iter(pending.values())).describe()
        return ClaimTimeout(
            f"{len(pending)} judgement(s) still in flight in {holder} after {waited_s:.0f}s "
            f"(cache {self.location}); let that run finish, or stop it and its claims expire "
            f"within {self.lease_s:.0f}s"
        )

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._heartbeat is None or not self._heartbeat.is_alive():
                self._heartbeat = threading.Thread(target=self._renew_leases, daemon=True)
                self._heartbeat.start()

    def _renew_leases(self) -> None:
        """Keep this owner's leases alive while the process lives; they lapse lease_s after it dies."""
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.store.renew(self.owner, self.lease_s)
            except Exception as e:  # a blip of the server: the next beat tries again, within the lease
                log.warning("judge cache %s: could not renew leases: %s", self.location, e)

    async def get_or_compute(
        self,
        keys: Iterable[str],
        compute: Callable[[str], Awaitable[Judgement]],
        *,
        concurrency: int,
        wait_s: float,
    ) -> dict[str, Judgement]:
        """Every key's judgement: cached, computed here under a claim (at most `concurrency` at once), or
        awaited from the process that claimed it (at most `wait_s` each). A failure cancels the rest and
        releases their claims; judgements already stored stay."""
        keys = list(dict.fromkeys(keys))
        found = self.get_many(keys)
        gate, watch = asyncio.Semaphore(concurrency), _ClaimWatch(self)
        tasks = [
            asyncio.create_task(self._resolve(k, compute, gate, watch, wait_s))
            for k in keys
            if k not in found
        ]
        try:
            found.update({j.key: j for j in await asyncio.gather(*tasks)})
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            watch.close()
        return found

    async def _resolve(
        self,
        key: str,
        compute: Callable[[str], Awaitable[Judgement]],
        gate: asyncio.Semaphore,
        watch: _ClaimWatch,
        wait_s: float,
    ) -> Judgement:
        while True:
            async with gate:
                if self.claim(key):
                    try:
                        judgement = await compute(key)
                        self.put(judgement)
                        return judgement
                    finally:
                        self.release(key)
            try:  # cached, or in flight elsewhere: wait outside the gate, then look again
                arrived = await asyncio.wait_for(watch.wait(key), wait_s)
            except TimeoutError:
                raise self._timeout(self.holders([key]) or {key: watch.last_holder(key)}, wait_s) from None
            if arrived is not None:
                return arrived

    def export_jsonl(self, path: Path) -> int:
        """Write every judgement to JSONL, oldest first (data/rl/teacher_judgements.jsonl); returns the
        count."""
        return write_jsonl(path, (json.loads(rec) for rec in self.store.all_records()))

    def __len__(self) -> int:
        return self.store.count()

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        self.store.close(self.owner)


class _ClaimWatch:
    """One poll loop for all the keys a call waits on: each waiter gets the judgement, or None when the
    claim was released or expired without one (then it claims the key itself)."""

    def __init__(self, cache: JudgementCache) -> None:
        self.cache = cache
        self.waiters: dict[str, list[asyncio.Future[Judgement | None]]] = {}
        self.seen: dict[str, Claim] = {}
        self.task: asyncio.Task[None] | None = None

    def wait(self, key: str) -> asyncio.Future[Judgement | None]:
        fut = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(key, []).append(fut)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._poll())
        return fut

    def last_holder(self, key: str) -> Claim:
        return self.seen.get(key) or Claim(key, "?", 0, "?", 0.0)

    async def _poll(self) -> None:
        while self.waiters:
            for key in [k for k, futs in self.waiters.items() if all(f.done() for f in futs)]:
                del self.waiters[key]  # its waiters gave up (their deadline passed)
            found, pending = self.cache._settle(list(self.waiters))
            for claim in pending.values():
                if claim.owner not in {c.owner for c in self.seen.values()}:
                    log.info(
                        "judgements in flight in %s: waiting for them instead of paying again",
                        claim.describe(),
                    )
                self.seen[claim.key] = claim
            for key in [k for k in self.waiters if k in found or k not in pending]:
                for fut in self.waiters.pop(key):
                    if not fut.done():
                        fut.set_result(found.get(key))
            if self.waiters:
                await asyncio.sleep(self.cache.poll_s)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
