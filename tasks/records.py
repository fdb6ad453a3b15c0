"""Record schemas shared by every stage (see DESIGN.md "Records")."""

from __future__ import annotations

from typing import Literal, TypedDict

RISK_LEVELS: tuple[str, ...] = ("critical", "high", "medium", "low")
HIGH_RISK_LEVELS: frozenset[str] = frozenset({"critical", "high"})
SAFETY_CATEGORIES: tuple[str, ...] = (
    "prescription_drug",
    "emergency",
    "pediatric_pregnancy",
    "diagnosis_assertion",
    "mental_health",
)
LANGS: tuple[str, ...] = ("zh", "en")
SPLITS: tuple[str, ...] = ("train", "dev", "test")
RL_ORIGINS: tuple[str, ...] = ("safety_red_team", "red_team", "gold", "train")

RiskLevel = Literal["critical", "high", "medium", "low"]


class ProcessedRow(TypedDict):
    id: str
    source: str
    lang: str
    question: str
    think: str
    answer: str
    risk_level: str
    safety_categories: list[str]
    safety_concern: str | None
    split: str


class RLPrompt(TypedDict):
    id: str
    question: str
    risk_level: str
    safety_categories: list[str]
    safety_concern: str | None
    origin: str
    copy: int


class Prediction(TypedDict, total=False):
    id: str
    question: str
    response: str
    risk_level: str
    safety_categories: list[str]
