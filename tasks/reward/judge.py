"""What the judge is asked and what it must answer: the versioned prompt (data/prompts/) and the reply schema.

The answer under review is fenced as data with a code derived from the data itself, so text inside it
cannot close the fence or pass as an instruction.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template

from pydantic import BaseModel, ValidationError, field_validator

from tasks.core.io import text_hash
from tasks.core.workdir import ASSETS

_USER_MARK = "---- user ----"


_FENCED_JSON = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


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
        path = path or ASSETS.judge_prompt(version)
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


class BadReply(ValueError):
    """The judge answered, but not with a valid verdict."""


def parse_reply(content: str) -> JudgeReply:
    """The judge's JSON verdict (a ```json fence around it is tolerated); BadReply when it is not one."""
    try:
        return JudgeReply.model_validate(json.loads(_FENCED_JSON.sub(r"\1", content)))
    except (json.JSONDecodeError, ValidationError, TypeError) as exc:
        raise BadReply(type(exc).__name__) from None
