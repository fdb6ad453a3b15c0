"""The statistics every evaluation figure carries: Wilson intervals for rates, paired bootstrap intervals for
differences, McNemar's exact test for paired flags, AUROC; pure Python and numpy, seeded, no Prefect.

A difference is called better or worse only when its 95% interval excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

Z95 = 1.959963984540054
N_BOOT = 2000
Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class Rate:
    """k of n, with its 95% Wilson interval (None bounds when n is 0)."""

    k: int
    n: int
    rate: float | None
    lo: float | None
    hi: float | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Estimate:
    """A mean (or a mean difference) with its 95% bootstrap interval."""

    value: float | None
    lo: float | None
    hi: float | None
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def wilson(k: int, n: int, z: float = Z95) -> Rate:
    """The Wilson score interval: sensible at 0 and n, unlike the normal approximation."""
    if n <= 0:
        return Rate(k, 0, None, None, None)
    if not 0 <= k <= n:
        raise ValueError(f"wilson: k={k} must lie in 0..n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return Rate(k, n, p, lo, hi)


def bootstrap_mean(values: Sequence[float], n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    """Mean with a percentile bootstrap 95% interval."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return Estimate(None, None, None, 0)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return Estimate(float(x.mean()), float(lo), float(hi), int(x.size))


def paired_bootstrap_diff(
    before: Sequence[float], after: Sequence[float], n_boot: int = N_BOOT, seed: int = 0
) -> Estimate:
    """Mean of (after - before) over the same items, resampling items (pairs stay together)."""
    a, b = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap_diff: {a.size} values before, {b.size} after; pairs must match")
    return bootstrap_mean(b - a, n_boot=n_boot, seed=seed)


def mcnemar_exact(before: Sequence[bool], after: Sequence[bool]) -> float | None:
    """Two-sided exact McNemar p for paired flags: a binomial test on the discordant pairs (None: n is 0)."""
    if len(before) != len(after):
        raise ValueError(f"mcnemar_exact: {len(before)} flags before, {len(after)} after; pairs must match")
    if not before:
        return None
    only_before = sum(1 for x, y in zip(before, after, strict=True) if x and not y)
    only_after = sum(1 for x, y in zip(before, after, strict=True) if y and not x)
    n = only_before + only_after
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_before, only_after) + 1)) / 2**n
    return min(1.0, 2 * tail)


def verdict(diff: Estimate, better: Direction) -> str:
    """'better', 'worse' or 'no detectable change': a direction only when the interval excludes 0."""
    if diff.lo is None or diff.hi is None:
        return "not measured"
    if diff.lo > 0:
        return "better" if better == "higher" else "worse"
    if diff.hi < 0:
        return "worse" if better == "higher" else "better"
    return "no detectable change"


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (ties count half): the chance a positive outranks a negative."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return None
    ranks = _midranks([*pos, *neg])
    rank_sum = sum(ranks[: len(pos)])
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def _midranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def format_rate(rate: Rate) -> str:
    """'12.5% (5/40, 95% CI 5.5–26.1%)', or 'n/a (n=0)'."""
    if rate.rate is None:
        return "n/a (n=0)"
    return f"{rate.rate:.1%} ({rate.k}/{rate.n}, 95% CI {rate.lo:.1%}–{rate.hi:.1%})"


def format_estimate(est: Estimate, digits: int = 3) -> str:
    if est.value is None:
        return "n/a (n=0)"
    return f"{est.value:+.{digits}f} (n={est.n}, 95% CI {est.lo:+.{digits}f} to {est.hi:+.{digits}f})"
