"""The quality gate's result and its exception (no Great Expectations import: cheap for reports and the
CLI)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.errors import MedsafeError


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation that did not hold: where, what, and what was seen."""

    suite: str
    expectation_type: str
    column: str | None
    observed: str
    expected: str

    def describe(self) -> str:
        where = f"column {self.column!r}" if self.column else "table"
        return (
            f"[{self.suite}] {self.expectation_type} on {where}: "
            f"observed {self.observed}; expected {self.expected}"
        )


@dataclass
class GateResult:
    """Pass/fail, every failed expectation, per-suite statistics, and where the Data Docs are."""

    passed: bool
    failed: list[FailedExpectation] = field(default_factory=list)
    suites: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_docs_index: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateResult:
        return cls(
            passed=bool(d["passed"]),
            failed=[FailedExpectation(**f) for f in d.get("failed", [])],
            suites=dict(d.get("suites", {})),
            data_docs_index=d.get("data_docs_index"),
        )

    @classmethod
    def read(cls, path: Path) -> GateResult:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def raise_for_failure(self) -> None:
        if not self.passed:
            raise QualityGateFailed(self)


class QualityGateFailed(MedsafeError):
    """The data failed the quality gate: the message lists every failed expectation."""

    def __init__(self, result: GateResult) -> None:
        self.result = result
        lines = [f"quality gate failed: {len(result.failed)} expectation(s) did not hold"]
        lines += [f"  - {f.describe()}" for f in result.failed]
        if result.data_docs_index:
            lines.append(f"  details: {result.data_docs_index}")
        lines.append(
            "  what to do: fix the stage that wrote the failing "
            "table (or the profile's gate settings) and re-run"
        )
        super().__init__("\n".join(lines))
