"""Shared fixtures of the risk tests."""

from __future__ import annotations

import pytest

from tasks.risk.classifier import RiskClassifier


@pytest.fixture(scope="session")
def clf() -> RiskClassifier:
    """The shipped lexicon's classifier, compiled once for the session (no test changes it)."""
    return RiskClassifier.from_yaml()
