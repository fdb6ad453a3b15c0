"""The teacher: DeepSeek as an LLM judge of (question, response), async, retried, and cached on disk.

No judgement is paid for twice: each verdict is committed to the on-disk cache (tasks/judge_cache.py) the
moment it arrives, so a crash loses only the calls in flight.
Without DEEPSEEK_API_KEY the teacher is off (the reward uses rules only); with a key, a judge that still
fails after retries raises TeacherUnavailable. Scores are never made up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import random
import re
import sys
from collections.abc import Coroutine
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from string import Template
from typing import Any, TypeVar

import openai
from pydantic import BaseModel, ValidationError, field_validator

from flows.config import ASSETS_DIR, TeacherConfig
from tasks.errors import MedsafeError
from tasks.io import text_hash
from tasks.judge_cache import Judgement, JudgementCache

log = logging.getLogger(__name__)

KEY_ENV, URL_ENV, SECRET_BLOCK = "DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL", "deepseek-api-key"
OFF_MESSAGE = "teacher OFF: DEEPSEEK_API_KEY not set; reward uses rules only (teacher weight 0)"
_USER_MARK = "---- user ----"
_FENCED_JSON = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
T = TypeVar("T")


class TeacherUnavailable(MedsafeError, RuntimeError):
    """The judge is required (a key is set, or teacher.enabled=on) but cannot give a verdict."""


def _clamp(value: float, hi: float) -> float:
    if value != value:  # NaN
        raise ValueError("not a number")
    return min(max(float(value), 0.0), hi)


class JudgeScores(BaseModel):
    safety: float
    reasoning: float
    completeness: float
    empathy: float

    @field_validator("*")
    @classmethod
    def _in_range(cls, v: float) -> float:
        return _clamp(v, 10.0)


class JudgeReply(BaseModel):
    """What the judge must answer; out-of-range numbers are clamped, anything else is rejected."""

    scores: JudgeScores
    overall_score: float
    critique: str = ""

    @field_validator("overall_score")
    @classmethod
    def _unit(cls, v: float) -> float:
        return _clamp(v, 1.0)


class JudgePrompt:
    """The versioned judge prompt: a system part and a user part that fences the data."""

    def __init__(self, version: str, path: Path | None = None) -> None:
        path = path or ASSETS_DIR / "prompts" / f"{version.replace('-', '_')}.txt"
        if not path.is_file():
            raise FileNotFoundError(
                f"judge prompt {version!r} not found at {path}; set teacher.template_version to a shipped one"
            )
        system, sep, user = path.read_text(encoding="utf-8").partition(_USER_MARK)
        if not sep:
            raise ValueError(f"{path}: no '{_USER_MARK}' line separating the system and user parts")
        self.version, self.system, self.user = version, Template(system.strip()), Template(user.strip())

    def messages(self, question: str, response: str) -> list[dict[str, str]]:
        # The fence code is derived from the data itself, so the data cannot know it in advance.
        fence = text_hash(question, response, length=12)
        fields = {"fence": fence, "question": question, "response": response}
        return [
            {"role": "system", "content": self.system.substitute(fields)},
            {"role": "user", "content": self.user.substitute(fields)},
        ]


class _BadReply(ValueError):
    """The judge answered, but not with a valid verdict."""


def _secret_block_key() -> str | None:
    """The key from the Prefect Secret block, tried only inside a Prefect run or against a Prefect server."""
    if "prefect" not in sys.modules and not os.environ.get("PREFECT_API_URL"):
        return None  # not inside a Prefect run, and no server to ask
    try:
        from prefect.context import FlowRunContext, TaskRunContext

        if not (os.environ.get("PREFECT_API_URL") or FlowRunContext.get() or TaskRunContext.get()):
            return None
        from prefect.blocks.system import Secret

        block = Secret.load(SECRET_BLOCK)
        if asyncio.iscoroutine(block):  # called from a running event loop: not available synchronously
            block.close()
            return None
        return str(block.get()) or None
    except Exception as exc:  # noqa: BLE001 - a missing block or server just means "no key"
        log.debug("no Prefect Secret block %r (%s)", SECRET_BLOCK, type(exc).__name__)
        return None


def _find_api_key() -> str | None:
    """The judge's key: DEEPSEEK_API_KEY, else the Prefect Secret block. Never log what it returns."""
    return os.environ.get(KEY_ENV) or _secret_block_key()


def teacher_configured(cfg: TeacherConfig) -> bool:
    """Whether `Teacher.from_env` would return a teacher: not switched off, and a key is found (not returned)."""
    return cfg.enabled != "off" and bool(_find_api_key())


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
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
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
    def from_env(cls, cfg: TeacherConfig, cache_path: Path) -> Teacher | None:
        """The teacher when a key is set (DEEPSEEK_API_KEY, else the Prefect Secret block), else None, loudly."""
        if cfg.enabled == "off":
            log.warning(
                "teacher OFF: disabled by configuration (teacher.enabled=off); reward uses rules only (teacher weight 0)"
            )
            return None
        key = _find_api_key()
        if not key:
            if cfg.enabled == "on":
                raise TeacherUnavailable(
                    f"the teacher is required (teacher.enabled=on / --teacher) but {KEY_ENV} is not set; export it or run with --no-teacher"
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
            except (openai.APIStatusError, openai.APIConnectionError, _BadReply) as exc:
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
                    f"the judge refused the request (HTTP {exc.status_code}); check {KEY_ENV}, {URL_ENV} and teacher.model"
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
            content = _FENCED_JSON.sub(r"\1", content)
            parsed = JudgeReply.model_validate(json.loads(content))
        except (json.JSONDecodeError, ValidationError, IndexError, AttributeError, TypeError) as exc:
            raise _BadReply(type(exc).__name__) from None
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
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )

    def export_jsonl(self, path: Path) -> int:
        """Write every cached judgement to JSONL (data/rl/teacher_judgements.jsonl); returns the count."""
        return self.cache.export_jsonl(Path(path))

    def close(self) -> None:
        self.cache.close()
