"""The teacher: DeepSeek as an LLM judge of (question, response), async, retried, and cached on disk.

No judgement is paid for twice: each verdict is committed to the on-disk cache (judge_cache.py) the
moment it arrives, so a crash loses only the calls in flight.
Without DEEPSEEK_API_KEY the teacher is off (the reward uses rules only); with a key, a judge that still
fails after retries raises TeacherUnavailable. Scores are never made up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import openai

from tasks.core.config import TeacherConfig
from tasks.core.errors import MedsafeError
from tasks.core.io import text_hash
from tasks.reward.judge import BadReply, JudgePrompt, parse_reply
from tasks.reward.judge_cache import Judgement, JudgementCache

log = logging.getLogger(__name__)


KEY_ENV, URL_ENV, SECRET_BLOCK = "DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL", "deepseek-api-key"


OFF_MESSAGE = "teacher OFF: DEEPSEEK_API_KEY not set; reward uses rules only (teacher weight 0)"


T = TypeVar("T")


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


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when an event loop is already running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _retry_after(exc: openai.APIStatusError) -> float | None:
    """Seconds the server asked us to wait (Retry-After: seconds or an HTTP date), if it said."""
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


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
    ) -> None:
        self.cfg = cfg
        self._api_key = api_key  # never logged, never written
        self.base_url = base_url or os.environ.get(URL_ENV) or cfg.base_url
        self.prompt = prompt or JudgePrompt(cfg.template_version)
        self.cache = JudgementCache(Path(cache_path))
        self.calls = 0  # HTTP requests sent, retries included
        self._jitter = random.Random()  # spreads retry timing only; never touches a score

    def __repr__(self) -> str:
        return (
            f"Teacher(model={self.cfg.model!r}, base_url={self.base_url!r}, cache={str(self.cache.path)!r})"
        )

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
        return _run_sync(self.ajudge_many(pairs))

    async def ajudge_many(self, pairs: list[tuple[str, str]]) -> list[Judgement]:
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
        client = openai.AsyncOpenAI(
            api_key=self._api_key, base_url=self.base_url, timeout=self.cfg.timeout_s, max_retries=0
        )
        gate = asyncio.Semaphore(self.cfg.concurrency)
        tasks = [asyncio.create_task(self._judge_one(client, gate, k, q, r)) for k, (q, r) in todo.items()]
        try:
            return {j.key: j for j in await asyncio.gather(*tasks)}
        finally:
            for t in tasks:
                t.cancel()  # after a failure, stop the calls still waiting; finished ones are already stored
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()

    async def _judge_one(
        self, client: openai.AsyncOpenAI, gate: asyncio.Semaphore, key: str, question: str, response: str
    ) -> Judgement:
        async with gate:
            judgement = await self._with_retries(client, key, self.prompt.messages(question, response))
        self.cache.put(judgement)
        return judgement

    async def _with_retries(
        self, client: openai.AsyncOpenAI, key: str, messages: list[dict[str, str]]
    ) -> Judgement:
        reason = "no attempt"
        for attempt in range(1, self.cfg.max_attempts + 1):
            try:
                self.calls += 1
                return self._verdict(key, await self._ask(client, messages))
            except (openai.APIStatusError, openai.APIConnectionError, BadReply) as exc:
                reason, wait = self._retry_reason(exc)
            if attempt < self.cfg.max_attempts:
                delay = self._backoff(attempt) if wait is None else min(wait, self.cfg.backoff_max_s)
                log.warning(
                    "teacher: attempt %d/%d failed: %s; retrying in %.2fs",
                    attempt,
                    self.cfg.max_attempts,
                    reason,
                    delay,
                )
                await asyncio.sleep(delay)
        raise TeacherUnavailable(
            f"the judge at {self.base_url} failed {self.cfg.max_attempts} times (last: {reason}); "
            "check the network and the API status, or run with --no-teacher (rules only)"
        )

    async def _ask(self, client: openai.AsyncOpenAI, messages: list[dict[str, str]]) -> Any:
        """One request to the judge, JSON mode, deterministic sampling."""
        return await client.chat.completions.create(
            model=self.cfg.model,
            messages=messages,
            temperature=0.0,
            max_tokens=512,
            response_format={"type": "json_object"},
        )

    def _retry_reason(self, exc: Exception) -> tuple[str, float | None]:
        """Why an attempt failed and how long the server asked us to wait; a refused request is final."""
        if isinstance(exc, openai.RateLimitError):
            return "HTTP 429 rate limited", _retry_after(exc)
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code < 500 and exc.status_code not in (408, 409):
                raise TeacherUnavailable(
                    f"the judge refused the request (HTTP {exc.status_code}); "
                    f"check {KEY_ENV}, {URL_ENV} and teacher.model"
                ) from None
            return f"HTTP {exc.status_code}", None
        if isinstance(exc, openai.APITimeoutError):
            return f"no answer within {self.cfg.timeout_s}s", None
        if isinstance(exc, openai.APIConnectionError):
            return f"connection failed ({type(exc.__cause__ or exc).__name__})", None
        return f"invalid reply ({exc})", None

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half the step fixed, half spread at random."""
        step = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** (attempt - 1))
        return step / 2 + self._jitter.random() * step / 2

    def _verdict(self, key: str, reply: Any) -> Judgement:
        try:
            content = reply.choices[0].message.content or ""
        except (IndexError, AttributeError) as exc:
            raise BadReply(type(exc).__name__) from None
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
