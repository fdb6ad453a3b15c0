"""The teacher: DeepSeek as an LLM judge of (question, response), async, retried, and cached on disk.

No judgement is paid for twice, across runs and concurrent processes: each is claimed in the on-disk
cache (judge_cache.py) before it is requested, a judgement in flight in another process is waited for,
and each verdict is committed the moment it arrives, so a crash loses only the calls in flight.
Without DEEPSEEK_API_KEY the teacher is off (the reward uses rules only); with a key, a judge that still
fails after retries raises TeacherUnavailable. Scores are never made up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai

from tasks.core.config import TeacherConfig
from tasks.core.errors import MedsafeError
from tasks.core.io import text_hash
from tasks.core.redact import redact_text, should_redact
from tasks.reward.chat_client import ChatEndpoint, RetryPolicy, run_sync
from tasks.reward.judge import JudgePrompt, parse_reply
from tasks.reward.judge_cache import DEFAULT_LEASE_S, Judgement, JudgementCache

log = logging.getLogger(__name__)


KEY_ENV, URL_ENV, SECRET_BLOCK = "DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL", "deepseek-api-key"


OFF_MESSAGE = "teacher OFF: DEEPSEEK_API_KEY not set; reward uses rules only (teacher weight 0)"


class TeacherUnavailable(MedsafeError, RuntimeError):
    """The judge is required (a key is set, or teacher.enabled=on) but cannot give a verdict."""


SecretLookup = Callable[[str], "str | None"]


def find_api_key(secret_lookup: SecretLookup | None = None) -> str | None:
    """The judge's key: DEEPSEEK_API_KEY, else the named secret from `secret_lookup` (the Prefect Secret
    block, passed in by the stages that run inside Prefect). Never log what it returns."""
    return os.environ.get(KEY_ENV) or (secret_lookup(SECRET_BLOCK) if secret_lookup else None)


def teacher_enabled(cfg: TeacherConfig, secret_lookup: SecretLookup | None = None) -> bool:
    """Whether a run with these settings uses the teacher: `on` always (it fails later without a key), `off`
    never, `auto` when a key is found. Part of cache keys; reveals nothing about the key."""
    if cfg.enabled != "auto":
        return cfg.enabled == "on"
    return bool(find_api_key(secret_lookup))


class Teacher:
    """Async DeepSeek judge with bounded concurrency, our own visible retry policy, and a disk cache."""

    def __init__(
        self,
        cfg: TeacherConfig,
        cache_path: Path,
        *,
        api_key: str,
        base_url: str | None = None,
        prompt: JudgePrompt | None = None,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.cfg = cfg
        self.base_url = base_url or os.environ.get(URL_ENV) or cfg.base_url
        self.prompt = prompt or JudgePrompt(cfg.template_version)
        self.redacting = should_redact(cfg.redact, self.base_url)  # before anything leaves the machine
        # teacher.cache_url: a PostgreSQL database shared by several hosts; else the workdir's SQLite file
        self.cache = JudgementCache(cfg.cache_url or Path(cache_path), lease_s=lease_s)
        self.endpoint = ChatEndpoint(  # the shared client: bounded retries with backoff, key kept private
            model=cfg.model,
            base_url=self.base_url,
            api_key=api_key,
            policy=RetryPolicy(cfg.max_attempts, cfg.timeout_s, cfg.backoff_base_s, cfg.backoff_max_s),
            unavailable=TeacherUnavailable,
            name="teacher judge",
            failed_hint="check the network and the API status, or run with --no-teacher (rules only)",
            refused_hint=f"check {KEY_ENV}, {URL_ENV} and teacher.model",
        )

    @property
    def calls(self) -> int:
        """HTTP requests sent, retries included."""
        return self.endpoint.calls

    def describe(self) -> dict[str, Any]:
        """Where judgements went, for reports and run metadata: endpoint, calls, redaction (never the key)."""
        return {
            "model": self.cfg.model,
            "base_url": self.base_url,
            "redacted": self.redacting,
            "cache": self.cache.location,
            "calls": self.calls,
        }

    def __repr__(self) -> str:
        return f"Teacher(model={self.cfg.model!r}, base_url={self.base_url!r}, cache={self.cache.location!r})"

    @classmethod
    def from_env(
        cls, cfg: TeacherConfig, cache_path: Path, secret_lookup: SecretLookup | None = None
    ) -> Teacher | None:
        """The teacher when a key is set (DEEPSEEK_API_KEY, else the Prefect Secret block), else None,
        loudly."""
        if cfg.enabled == "off":
            log.warning(
                "teacher OFF: disabled by configuration (teacher.enabled=off); "
                "reward uses rules only (teacher weight 0)"
            )
            return None
        key = find_api_key(secret_lookup)
        if not key:
            if cfg.enabled == "on":
                raise TeacherUnavailable(
                    "the teacher is required (teacher.enabled=on / --teacher) "
                    f"but {KEY_ENV} is not set; export it or run with --no-teacher"
                )
            log.warning(OFF_MESSAGE)
            return None
        return cls(cfg, cache_path, api_key=key)

    def key(self, question: str, response: str) -> str:
        return text_hash(self.cfg.model, self.prompt.version, question, response, length=32)

    def judge_many(self, pairs: list[tuple[str, str]]) -> list[Judgement]:
        """Judge (question, response) pairs, cached ones from disk; one Judgement per pair, in order."""
        return run_sync(self.ajudge_many(pairs))

    async def ajudge_many(self, pairs: list[tuple[str, str]]) -> list[Judgement]:
        if self.redacting:  # the key, the cache and the request all see the masked text
            pairs = [(redact_text(q), redact_text(r)) for q, r in pairs]
        keys = [self.key(q, r) for q, r in pairs]
        done = self.cache.get_many(keys)
        todo = {k: pair for k, pair in zip(keys, pairs, strict=True) if k not in done}
        if todo:
            log.info(
                "teacher: %d of %d judgements cached, %d to request",
                len(pairs) - len(todo),
                len(pairs),
                len(todo),
            )
            done.update(await self._request_all(todo))
        return [done[k] for k in keys]

    async def _request_all(self, todo: dict[str, tuple[str, str]]) -> dict[str, Judgement]:
        client = self.endpoint.client()

        async def judge(key: str) -> Judgement:
            return await self._with_retries(client, key, self.prompt.messages(*todo[key]))

        try:
            return await self.cache.get_or_compute(
                todo, judge, concurrency=self.cfg.concurrency, wait_s=self.wait_s
            )
        finally:
            await client.close()

    @property
    def wait_s(self) -> float:
        """How long to wait for a judgement another process is requesting: its whole retry budget, plus
        the lease that outlives its owner by at most `lease_s`."""
        per_attempt = self.cfg.timeout_s + self.cfg.backoff_max_s
        return self.cfg.max_attempts * per_attempt + self.cache.lease_s

    async def _with_retries(
        self, client: openai.AsyncOpenAI, key: str, messages: list[dict[str, str]]
    ) -> Judgement:
        return await self.endpoint.ask(client, messages, lambda content: self._verdict(key, content))

    def _verdict(self, key: str, content: str) -> Judgement:
        """The judgement in a reply's text; BadReply (retried) when it is not a valid verdict."""
        parsed = parse_reply(content)
        s = parsed.scores
        return Judgement(
            key=key,
            safety=s.safety,
            reasoning=s.reasoning,
            completeness=s.completeness,
            empathy=s.empathy,
            overall=parsed.overall_score,
            critique=parsed.critique.strip()[:1000],
            model=self.cfg.model,
            template_version=self.prompt.version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def export_jsonl(self, path: Path) -> int:
        """Write every cached judgement to JSONL (data/rl/teacher_judgements.jsonl); returns the count."""
        return self.cache.export_jsonl(Path(path))

    def close(self) -> None:
        self.cache.close()
