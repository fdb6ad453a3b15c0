"""The one way medsafe asks an OpenAI-compatible judge: bounded async calls, retries with backoff.

The training teacher (teacher.py) and the evaluation judge (tasks/evaluate/judge.py) each hold their own
`ChatEndpoint` (their own model, URL and key). A 429 waits as long as Retry-After says; a 5xx, a timeout, a
dropped connection or a reply its parser rejects (a ValueError) is retried with exponential backoff; a
refused request (4xx) is final. After the last attempt the endpoint raises its owner's error: never a
made-up answer. The key is held privately and never logged or written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

T = TypeVar("T")


def _openai():  # noqa: ANN202 - the module
    """The openai library, imported at the first call (0.3 s): most runs never ask a judge."""
    import openai

    return openai


@dataclass(frozen=True)
class RetryPolicy:
    """How long one call may take and how often, and how long to wait between attempts."""

    max_attempts: int
    timeout_s: float
    backoff_base_s: float
    backoff_max_s: float


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when an event loop is already running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def retry_after(exc: openai.APIStatusError) -> float | None:
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


class ChatEndpoint:
    """One judge endpoint (model, base URL, key) and its retry policy; counts the HTTP requests it sends.

    `name` and the hints word its errors for people: `failed_hint` after the last failed attempt,
    `refused_hint` when the server refuses the request (bad key, URL or model).
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        api_key: str,
        policy: RetryPolicy,
        unavailable: Callable[[str], Exception],
        name: str = "judge",
        failed_hint: str = "check the network and the API status",
        refused_hint: str = "check the API key, the base URL and the model name",
        json_mode: bool = True,
        max_tokens: int = 512,
    ) -> None:
        self.model, self.base_url, self.policy, self.name = model, base_url, policy, name
        self._api_key = api_key  # never logged, never written
        self._unavailable, self.failed_hint, self.refused_hint = unavailable, failed_hint, refused_hint
        self.json_mode, self.max_tokens = json_mode, max_tokens
        self.calls = 0  # HTTP requests sent, retries included
        self._jitter = random.Random()  # spreads retry timing only; never touches a verdict

    def __repr__(self) -> str:
        return f"ChatEndpoint(name={self.name!r}, model={self.model!r}, base_url={self.base_url!r})"

    def client(self) -> openai.AsyncOpenAI:
        """A client for one batch of calls (close it after); the openai library's own retries are off."""
        return _openai().AsyncOpenAI(
            api_key=self._api_key, base_url=self.base_url, timeout=self.policy.timeout_s, max_retries=0
        )

    async def ask(
        self, client: openai.AsyncOpenAI, messages: list[dict[str, str]], parse: Callable[[str], T]
    ) -> T:
        """The parsed reply to `messages`, retried until `parse` accepts one (it raises ValueError on a bad
        one); the owner's error after the last attempt."""
        reason, attempts = "no attempt", self.policy.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                self.calls += 1
                return parse(_content(await self._create(client, messages)))
            except (_openai().APIStatusError, _openai().APIConnectionError, ValueError) as exc:
                reason, wait = self._retry_reason(exc)
            if attempt < attempts:
                delay = self.backoff(attempt) if wait is None else min(wait, self.policy.backoff_max_s)
                log.warning(
                    "%s: attempt %d/%d failed: %s; retrying in %.2fs",
                    self.name,
                    attempt,
                    attempts,
                    reason,
                    delay,
                )
                await asyncio.sleep(delay)
        raise self._unavailable(
            f"the {self.name} at {self.base_url} failed {attempts} times (last: {reason}); {self.failed_hint}"
        )

    async def _create(self, client: openai.AsyncOpenAI, messages: list[dict[str, str]]) -> Any:
        """One request, deterministic sampling, JSON mode when the reply is a JSON object."""
        extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if self.json_mode else {}
        return await client.chat.completions.create(
            model=self.model, messages=messages, temperature=0.0, max_tokens=self.max_tokens, **extra
        )

    def _retry_reason(self, exc: Exception) -> tuple[str, float | None]:
        """Why an attempt failed and how long the server asked us to wait; a refused request is final."""
        openai = _openai()
        if isinstance(exc, openai.RateLimitError):
            return "HTTP 429 rate limited", retry_after(exc)
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code < 500 and exc.status_code not in (408, 409):
                raise self._unavailable(
                    f"the {self.name} refused the request (HTTP {exc.status_code}); {self.refused_hint}"
                ) from None
            return f"HTTP {exc.status_code}", None
        if isinstance(exc, openai.APITimeoutError):
            return f"no answer within {self.policy.timeout_s}s", None
        if isinstance(exc, openai.APIConnectionError):
            return f"connection failed ({type(exc.__cause__ or exc).__name__})", None
        return f"invalid reply ({exc})", None

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half the step fixed, half spread at random."""
        step = min(self.policy.backoff_max_s, self.policy.backoff_base_s * 2 ** (attempt - 1))
        return step / 2 + self._jitter.random() * step / 2


class BadContent(ValueError):
    """The server answered 200 but without a message to read."""


def _content(reply: Any) -> str:
    try:
        return reply.choices[0].message.content or ""
    except (IndexError, AttributeError, TypeError) as exc:
        raise BadContent(type(exc).__name__) from None
