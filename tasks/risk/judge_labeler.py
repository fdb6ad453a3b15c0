"""The risk judge: question risk labelled by an OpenAI-compatible model (data.risk_labeler: judge | both).

    judge = RiskJudge.from_config(cfg.data.risk_judge, workdir.state / "risk_judge_cache.sqlite")
    if judge is None:            # no key: the lexicon labels, and the log says so loudly (RISK_JUDGE_OFF)
        ...
    with judge:
        labels = judge.label(["我爸耳朵一直在流血", ...])          # RiskLabel each, in order
    combined = combine(lexicon_label, judge_label)                 # `both`: the higher level

The prompt is versioned (data/prompts/<version>.txt, a system part and a user part split by a
"---- user ----" line) and fences the question as data between marker lines whose code is derived from the
question, so text inside a question cannot close the fence. Replies are parsed strictly (exactly the keys
risk_level, safety_categories, safety_concern; a known level; known categories); a bad reply is retried like
a failed call. Calls go through the teacher's client (tasks/reward/chat_client.py: bounded, retried with
backoff) and the judges' cross-process cache (tasks/reward/judge_cache.py, with its own record and file),
keyed by namespace, model, prompt version and the question as sent: a second run pays nothing. Identifiers
are masked before a question leaves this machine (tasks/core/redact.py). A judge that still fails after its
retries raises RiskJudgeUnavailable: never a made-up label. The key is held by the endpoint only.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

from tasks.core.config import DataConfig, RiskJudgeConfig
from tasks.core.errors import MedsafeError
from tasks.core.io import text_hash
from tasks.core.records import RISK_CATEGORIES, RISK_LEVELS
from tasks.core.redact import redact_text, should_redact
from tasks.core.workdir import ASSETS
from tasks.reward.chat_client import ChatEndpoint, RetryPolicy, run_sync
from tasks.reward.judge_cache import JudgementCache
from tasks.risk.classifier import RiskLabel
from tasks.risk.lexicon import SEVERITY_RANK

log = logging.getLogger(__name__)

URL_ENV = "MEDSAFE_RISK_JUDGE_BASE_URL"
RISK_JUDGE_OFF = "RISK JUDGE OFF"
_USER_MARK = "---- user ----"
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_FENCED_JSON = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)
_THINK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)
_KEYS = ("risk_level", "safety_categories", "safety_concern")


class RiskJudgeUnavailable(MedsafeError, RuntimeError):
    """The risk judge is on (data.risk_labeler is judge or both, and a key is set) but gives no label."""


class BadRiskLabel(ValueError):
    """The judge answered, but not with a valid risk label (retried like a failed call)."""


def prompt_path(version: str) -> Path:
    return ASSETS.root / "prompts" / f"{version}.txt"


class RiskPrompt:
    """A versioned risk-label prompt: the chat messages to send for a question."""

    def __init__(self, version: str, system: Template, user: Template) -> None:
        self.version, self._system, self._user = version, system, user

    @classmethod
    def load(cls, version: str, path: Path | None = None) -> RiskPrompt:
        if not _VERSION.fullmatch(version):
            raise ValueError(f"risk prompt version {version!r} is not a plain file name")
        path = Path(path) if path is not None else prompt_path(version)
        if not path.is_file():
            raise FileNotFoundError(
                f"risk prompt {version!r} not found at {path}; set data.risk_judge.prompt to a file there"
            )
        system_text, sep, user_text = path.read_text(encoding="utf-8").partition(_USER_MARK)
        if not sep:
            raise ValueError(f"{path}: no '{_USER_MARK}' line separating the system and user parts")
        system, user = Template(system_text.strip()), Template(user_text.strip())
        in_system, in_user = _placeholders(system), _placeholders(user)
        if unknown := (in_system | in_user) - {"fence", "question"}:
            raise ValueError(f"{path}: unknown placeholders {sorted(unknown)}; it fills fence and question")
        if "question" in in_system or not {"fence", "question"} <= in_user:
            raise ValueError(f"{path}: ${{question}} and ${{fence}} belong in the fenced user part only")
        return cls(version, system, user)

    def messages(self, question: str) -> list[dict[str, str]]:
        values = {"fence": fence_code(question), "question": question}
        return [
            {"role": "system", "content": self._system.substitute(values)},
            {"role": "user", "content": self._user.substitute(values)},
        ]


def _placeholders(template: Template) -> set[str]:
    return {m.group("named") or m.group("braced") for m in template.pattern.finditer(template.template)} - {
        None
    }


def fence_code(question: str) -> str:
    """A 12-character marker code derived from the question, which the question therefore cannot contain."""
    code = text_hash(question, length=12)
    while code in question:
        code = text_hash(code, question, length=12)
    return code


def parse_label(text: str) -> dict[str, Any]:
    """The judge's reply as {risk_level, safety_categories, safety_concern}; BadRiskLabel otherwise."""
    body = _THINK.sub("", text or "").strip()
    if m := _FENCED_JSON.match(body):
        body = m.group(1)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise BadRiskLabel(f"not JSON: {exc.msg}") from None
    if not isinstance(data, dict) or set(data) != set(_KEYS):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise BadRiskLabel(f"expected exactly the keys {list(_KEYS)}, got {got}")
    level, cats, concern = (data[k] for k in _KEYS)
    if level not in RISK_LEVELS:
        raise BadRiskLabel(f"risk_level {level!r} is not one of {list(RISK_LEVELS)}")
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        raise BadRiskLabel(f"safety_categories must be a list of strings, not {cats!r}")
    if unknown := sorted(set(cats) - set(RISK_CATEGORIES)):
        raise BadRiskLabel(f"unknown safety categories {unknown}; known: {list(RISK_CATEGORIES)}")
    if concern is not None and not isinstance(concern, str):
        raise BadRiskLabel(f"safety_concern must be a string or null, not {concern!r}")
    return {
        "risk_level": level,
        "safety_categories": [c for c in RISK_CATEGORIES if c in cats],
        "safety_concern": (concern.strip() or None) if concern and level != "low" else None,
    }


@dataclass(frozen=True)
class CachedRiskLabel:
    """A label as the risk-judge cache stores it: its key, when, from which model and prompt version."""

    key: str
    created_at: str
    model: str
    prompt_version: str
    risk_level: str
    safety_categories: list[str] = field(default_factory=list)
    safety_concern: str | None = None


class RiskLabelCache(JudgementCache):
    """The judges' SQLite cache (claims across processes included), holding risk labels."""

    record_type = CachedRiskLabel
    name = "medsafe_risk_judge"


def judge_label(cached: CachedRiskLabel) -> RiskLabel:
    """A RiskLabel from the judge's label; its evidence names the judge (term "judge")."""
    severity = cached.risk_level
    evidence = [{"term": "judge", "category": c, "severity": severity} for c in cached.safety_categories] or [
        {"term": "judge", "kind": "judge", "severity": severity}
    ]
    return RiskLabel(severity, list(cached.safety_categories), cached.safety_concern, evidence)


def combine(lexicon: RiskLabel, judge: RiskLabel) -> RiskLabel:
    """`both`: the higher level of the two; categories of both; the concern (and first evidence) of the
    higher one (the lexicon's on a tie, whose concern names the words behind it)."""
    first, second = (
        (judge, lexicon)
        if SEVERITY_RANK[judge.risk_level] > SEVERITY_RANK[lexicon.risk_level]
        else (lexicon, judge)
    )
    found = set(lexicon.safety_categories) | set(judge.safety_categories)
    return RiskLabel(
        first.risk_level,
        [c for c in RISK_CATEGORIES if c in found],
        first.safety_concern or second.safety_concern if first.risk_level != "low" else None,
        [*first.evidence, *second.evidence],
    )


def risk_judge_available(cfg: DataConfig) -> bool:
    """Whether data.risk_labeler asks for the judge and its key is set (a cache input; never the key)."""
    return cfg.risk_labeler != "lexicon" and bool(os.environ.get(cfg.risk_judge.api_key_env))


class RiskJudge:
    """Labels questions' risk with a versioned prompt; cached, bounded, retried, never guessed."""

    def __init__(
        self, cfg: RiskJudgeConfig, cache_path: Path, *, api_key: str, base_url: str | None = None
    ) -> None:
        self.cfg = cfg
        self.base_url = base_url or os.environ.get(URL_ENV) or cfg.base_url
        self.redacting = should_redact(cfg.redact, self.base_url)  # before anything leaves the machine
        self.prompt = RiskPrompt.load(cfg.prompt)
        self.cache = RiskLabelCache(Path(cache_path))
        self.endpoint = ChatEndpoint(
            model=cfg.model,
            base_url=self.base_url,
            api_key=api_key,
            policy=RetryPolicy(cfg.max_attempts, cfg.timeout_s, cfg.backoff_base_s, cfg.backoff_max_s),
            unavailable=RiskJudgeUnavailable,
            name="risk judge",
            failed_hint="check the network and the judge server, or set data.risk_labeler=lexicon",
            refused_hint=f"check {cfg.api_key_env}, {URL_ENV} and data.risk_judge.model",
            json_mode=cfg.json_mode,
            max_tokens=cfg.max_tokens,
        )

    def __repr__(self) -> str:
        return (
            f"RiskJudge(model={self.cfg.model!r}, base_url={self.base_url!r}, prompt={self.prompt.version!r})"
        )

    @classmethod
    def from_config(cls, cfg: RiskJudgeConfig, cache_path: Path, labeler: str) -> RiskJudge | None:
        """The judge when data.risk_labeler asks for one and a key is set; else None, with a loud warning
        when it was asked for (the lexicon labels instead)."""
        if labeler == "lexicon":
            return None
        key = os.environ.get(cfg.api_key_env)
        if not key:
            log.warning(
                "%s: data.risk_labeler=%s but %s is not set; risk labels come from the LEXICON ONLY. "
                "Export the key (any non-empty value for a local server) or set data.risk_labeler=lexicon.",
                RISK_JUDGE_OFF,
                labeler,
                cfg.api_key_env,
            )
            return None
        return cls(cfg, cache_path, api_key=key)

    @property
    def calls(self) -> int:
        """HTTP requests sent, retries included (0 when every label came from the cache)."""
        return self.endpoint.calls

    def describe(self) -> dict[str, Any]:
        """What labelled the questions, for the stage summary (no key)."""
        return {
            "model": self.cfg.model,
            "base_url": self.base_url,
            "prompt": self.prompt.version,
            "cache_namespace": self.cfg.cache_namespace,
            "redacted": self.redacting,
            "calls": self.calls,
        }

    def _sent(self, question: str) -> str:
        """The question as it may leave the machine: identifiers masked when redacting."""
        return redact_text(question) if self.redacting else question

    def key(self, sent: str) -> str:
        parts = (self.cfg.cache_namespace, self.cfg.model, self.prompt.version)
        return text_hash(*parts, sent, length=32)

    def label(self, questions: Sequence[str]) -> list[RiskLabel]:
        """One RiskLabel per question, in order: cached ones from disk, the rest requested (each once)."""
        return run_sync(self.alabel(questions))

    async def alabel(self, questions: Sequence[str]) -> list[RiskLabel]:
        sent = [self._sent(str(q or "")) for q in questions]
        keys = [self.key(s) for s in sent]
        todo = dict(zip(keys, sent, strict=True))
        if not todo:
            return []
        cached = len(self.cache.get_many(todo))
        log.info("risk judge: %d of %d labels cached, %d to request", cached, len(todo), len(todo) - cached)
        client = self.endpoint.client()

        async def compute(key: str) -> CachedRiskLabel:
            parsed = await self.endpoint.ask(client, self.prompt.messages(todo[key]), parse_label)
            now = datetime.now(UTC).isoformat(timespec="seconds")
            return CachedRiskLabel(key, now, self.cfg.model, self.prompt.version, **parsed)

        try:
            found = await self.cache.get_or_compute(
                keys, compute, concurrency=self.cfg.concurrency, wait_s=self._wait_s
            )
        finally:
            await client.close()
        return [judge_label(found[k]) for k in keys]

    @property
    def _wait_s(self) -> float:
        per_attempt = self.cfg.timeout_s + self.cfg.backoff_max_s
        return self.cfg.max_attempts * per_attempt + self.cache.lease_s

    def close(self) -> None:
        self.cache.close()

    def __enter__(self) -> RiskJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
