"""The independent evaluation judge: answers graded by versioned rubrics, on an endpoint and cache of its own.

    judge = EvalJudge.from_config(profile.eval.judge, workdir.judge_cache, secret_lookup)
    if judge is None:            # off: the report says so (JUDGE_OFF) and shows rules-only metrics
        ...
    with judge:
        verdicts = judge.grade([JudgeItem(question, response, "harmful_request"), ...])

Never the training teacher: its own model, base URL, key variable (MEDSAFE_JUDGE_API_KEY), rubric versions
(data/rubrics/) and cache file (.medsafe/judge_cache.sqlite), so evaluation is not graded by what RL
optimised. Calls go through the teacher's client (tasks/reward/chat_client.py: bounded, retried with
backoff) and its cross-process cache (tasks/reward/judge_cache.py: a second run pays nothing). A judge that
is on and still fails after its retries raises EvalJudgeUnavailable: never a made-up verdict.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.core.config import EvalJudgeConfig, TeacherConfig
from tasks.core.errors import MedsafeError
from tasks.core.io import text_hash
from tasks.core.redact import redact_text, should_redact
from tasks.evaluate.rubrics import GUARD, Rubric, Verdict, rubric_for
from tasks.reward.chat_client import ChatEndpoint, RetryPolicy, run_sync
from tasks.reward.judge_cache import JudgementCache
from tasks.reward.teacher import SecretLookup

log = logging.getLogger(__name__)

URL_ENV = "MEDSAFE_JUDGE_BASE_URL"
KINDS = ("harmful_request", "patient_question")
JUDGE_OFF = "evaluation judge OFF: no judge key set; the report shows rule-based metrics only"


class EvalJudgeUnavailable(MedsafeError, RuntimeError):
    """The evaluation judge is on (a key is set, or eval.judge.enabled=on) but cannot give a verdict."""


@dataclass(frozen=True)
class JudgeItem:
    """One answer to grade: `kind` picks the rubric (harmful_request: harm 1-5; patient_question: safety and
    helpfulness 1-5, against `reference` when there is one)."""

    question: str
    response: str
    kind: str
    reference: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"item kind must be one of {KINDS}, not {self.kind!r}")
        for name in ("question", "response"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"item {name} must be a string, not {type(getattr(self, name)).__name__}")
        if self.reference is not None and not isinstance(self.reference, str):
            raise ValueError(f"item reference must be a string or None, not {type(self.reference).__name__}")

    @classmethod
    def of(cls, item: JudgeItem | Mapping[str, Any]) -> JudgeItem:
        """An item from itself or a mapping with question, response, kind and optional reference."""
        if isinstance(item, JudgeItem):
            return item
        return cls(item["question"], item["response"], item["kind"], item.get("reference"))


@dataclass(frozen=True)
class CachedVerdict:
    """A verdict as the judge cache stores it: its key, when, from which model and rubric version."""

    key: str
    created_at: str
    model: str
    rubric_version: str
    verdict: dict[str, Any]


class VerdictCache(JudgementCache):
    """The teacher's SQLite cache (claims across processes included), holding evaluation verdicts."""

    record_type = CachedVerdict
    name = "medsafe_eval_judge"  # its own tables when it shares the teacher's PostgreSQL database


def find_judge_key(cfg: EvalJudgeConfig, secret_lookup: SecretLookup | None = None) -> str | None:
    """The judge's key: the variable named by cfg.api_key_env, else the Prefect Secret block. Never log it."""
    return os.environ.get(cfg.api_key_env) or (secret_lookup(cfg.secret_block) if secret_lookup else None)


def judge_enabled(cfg: EvalJudgeConfig, secret_lookup: SecretLookup | None = None) -> bool:
    """Whether evaluation uses the judge: `on` always (it fails later without a key), `off` never, `auto`
    when a key is found. Safe in cache keys: reveals nothing about the key."""
    if cfg.enabled != "auto":
        return cfg.enabled == "on"
    return bool(find_judge_key(cfg, secret_lookup))


def same_as_teacher(cfg: EvalJudgeConfig, teacher: TeacherConfig) -> bool:
    """True when the judge is the training teacher's model at its URL: the report should warn that the
    evaluation is then not independent of what RL optimised."""
    base_url = os.environ.get(URL_ENV) or cfg.base_url
    return cfg.model == teacher.model and base_url.rstrip("/") == teacher.base_url.rstrip("/")


class EvalJudge:
    """Grades evaluation items with the rubric of their kind; cached, bounded, retried, never guessed."""

    def __init__(
        self, cfg: EvalJudgeConfig, cache_path: Path, *, api_key: str, base_url: str | None = None
    ) -> None:
        self.cfg = cfg
        self.base_url = base_url or os.environ.get(URL_ENV) or cfg.base_url
        self.redacting = should_redact(cfg.redact, self.base_url)  # before anything leaves the machine
        if cfg.mode == GUARD:
            guard = Rubric.load(GUARD)
            self.rubrics = {kind: guard for kind in KINDS}
        else:
            versions = {"harm": cfg.harm_rubric, "safety_helpfulness": cfg.patient_rubric}
            self.rubrics = {kind: Rubric.load(rubric_for(kind), versions[rubric_for(kind)]) for kind in KINDS}
        self.cache = VerdictCache(cfg.cache_url or Path(cache_path))  # eval.judge.cache_url: shared database
        self.endpoint = ChatEndpoint(
            model=cfg.model,
            base_url=self.base_url,
            api_key=api_key,
            policy=RetryPolicy(cfg.max_attempts, cfg.timeout_s, cfg.backoff_base_s, cfg.backoff_max_s),
            unavailable=EvalJudgeUnavailable,
            name="evaluation judge",
            failed_hint="check the network and the judge server, or set eval.judge.enabled=off (rules only)",
            refused_hint=f"check {cfg.api_key_env}, {URL_ENV} and eval.judge.model",
            json_mode=cfg.json_mode and cfg.mode != GUARD,
            max_tokens=cfg.max_tokens,
        )

    def __repr__(self) -> str:
        return f"EvalJudge(model={self.cfg.model!r}, base_url={self.base_url!r}, mode={self.cfg.mode!r})"

    @classmethod
    def from_config(
        cls, cfg: EvalJudgeConfig, cache_path: Path, secret_lookup: SecretLookup | None = None
    ) -> EvalJudge | None:
        """The judge when it is on, else None (logged: JUDGE_OFF). enabled=on without a key raises
        EvalJudgeUnavailable before any answer is generated."""
        if cfg.enabled == "off":
            log.warning("evaluation judge OFF: disabled by configuration (eval.judge.enabled=off)")
            return None
        key = find_judge_key(cfg, secret_lookup)
        if not key:
            if cfg.enabled == "on":
                raise EvalJudgeUnavailable(
                    f"the evaluation judge is required (eval.judge.enabled=on) but {cfg.api_key_env} is not "
                    f"set (nor the Prefect Secret block {cfg.secret_block!r}); export it (any non-empty "
                    "value for a local server without a key) or set eval.judge.enabled=off"
                )
            log.warning("%s (%s)", JUDGE_OFF, cfg.api_key_env)
            return None
        return cls(cfg, cache_path, api_key=key)

    @property
    def calls(self) -> int:
        """HTTP requests sent by this judge, retries included (0 when everything came from the cache)."""
        return self.endpoint.calls

    def describe(self) -> dict[str, Any]:
        """What graded the answers, for reports and run metadata (no key)."""
        return {
            "model": self.cfg.model,
            "base_url": self.base_url,
            "mode": self.cfg.mode,
            "rubrics": {kind: r.version for kind, r in self.rubrics.items()},
            "cache_namespace": self.cfg.cache_namespace,
            "redacted": self.redacting,
            "calls": self.calls,
        }

    def key(self, item: JudgeItem) -> str:
        """Cache key: namespace, model, rubric and version, and the graded text (the reference only where the
        rubric reads it)."""
        rubric = self.rubrics[item.kind]
        reference = (item.reference or "") if rubric.name == "safety_helpfulness" else ""
        parts = (self.cfg.cache_namespace, self.cfg.model, rubric.name, rubric.version)
        return text_hash(*parts, item.question, item.response, reference, length=32)

    def _masked(self, item: JudgeItem) -> JudgeItem:
        """The item as it may leave the machine: identifiers masked when redacting (the key sees this)."""
        if not self.redacting:
            return item
        reference = redact_text(item.reference) if item.reference is not None else None
        return JudgeItem(redact_text(item.question), redact_text(item.response), item.kind, reference)

    def grade(self, items: Sequence[JudgeItem | Mapping[str, Any]]) -> list[Verdict]:
        """One Verdict per item, in order: cached ones from disk, the rest requested (each pair once)."""
        return run_sync(self.agrade(items))

    async def agrade(self, items: Sequence[JudgeItem | Mapping[str, Any]]) -> list[Verdict]:
        graded = [self._masked(JudgeItem.of(it)) for it in items]
        keys = [self.key(it) for it in graded]
        todo = dict(zip(keys, graded, strict=True))
        if not todo:
            return []
        cached = len(self.cache.get_many(todo))
        log.info(
            "evaluation judge: %d of %d verdicts cached, %d to request", cached, len(todo), len(todo) - cached
        )
        client = self.endpoint.client()

        async def compute(key: str) -> CachedVerdict:
            item, rubric = todo[key], self.rubrics[todo[key].kind]
            messages = rubric.messages(item.question, item.response, item.reference)
            verdict = await self.endpoint.ask(client, messages, rubric.parse)
            now = datetime.now(UTC).isoformat(timespec="seconds")
            return CachedVerdict(key, now, self.cfg.model, rubric.version, verdict.to_dict())

        try:
            found = await self.cache.get_or_compute(
                keys, compute, concurrency=self.cfg.concurrency, wait_s=self._wait_s
            )
        finally:
            await client.close()
        return [Verdict.from_dict(found[k].verdict) for k in keys]

    @property
    def _wait_s(self) -> float:
        """How long to wait for a verdict another process is requesting: its retry budget and a lease."""
        per_attempt = self.cfg.timeout_s + self.cfg.backoff_max_s
        return self.cfg.max_attempts * per_attempt + self.cache.lease_s

    def close(self) -> None:
        self.cache.close()

    def __enter__(self) -> EvalJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
