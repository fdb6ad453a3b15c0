"""The evaluation statistics against values worked out by hand (or from the textbook formulas)."""

from __future__ import annotations

import pytest

from tasks.evaluate.statistics import (
    Estimate,
    auroc,
    bootstrap_mean,
    format_rate,
    mcnemar_exact,
    paired_bootstrap_diff,
    verdict,
    wilson,
)


def test_wilson_matches_the_textbook_values() -> None:
    # 5/10: centre (0.5 + z²/20)/(1 + z²/10) = 0.5; half = z·sqrt(0.025 + z²/400)/(1 + z²/10) = 0.2634
    mid = wilson(5, 10)
    assert (
        mid.rate == 0.5
        and mid.lo == pytest.approx(0.2366, abs=1e-4)
        and mid.hi == pytest.approx(0.7634, abs=1e-4)
    )
    # 0/10: the interval still has width (the normal approximation would give 0–0)
    zero = wilson(0, 10)
    assert zero.lo == 0.0 and zero.hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson(10, 10).hi == 1.0 and wilson(10, 10).lo == pytest.approx(0.7225, abs=1e-4)
    assert wilson(0, 0).rate is None and format_rate(wilson(0, 0)) == "n/a (n=0)"
    assert format_rate(wilson(5, 10)) == "50.0% (5/10, 95% CI 23.7%–76.3%)"
    with pytest.raises(ValueError, match="k=11"):
        wilson(11, 10)


def test_mcnemar_exact_is_a_binomial_test_on_discordant_pairs() -> None:
    before = (
        [True] * 1 + [False] * 5 + [True] * 3 + [False] * 4
    )  # 1 only-before, 5 only-after, 3 both, 4 neither
    after = [False] * 1 + [True] * 5 + [True] * 3 + [False] * 4
    # n = 6 discordant, min = 1: p = 2·(C(6,0) + C(6,1))/2⁶ = 14/64
    assert mcnemar_exact(before, after) == pytest.approx(14 / 64)
    assert mcnemar_exact([True, False], [True, False]) == 1.0
    assert mcnemar_exact([], []) is None
    # 0 vs 10 discordant: 2/2¹⁰
    assert mcnemar_exact([False] * 10, [True] * 10) == pytest.approx(2 / 1024)


def test_bootstrap_intervals_cover_the_mean_and_shrink_with_n() -> None:
    small = bootstrap_mean([0.0, 1.0] * 5, seed=1)
    large = bootstrap_mean([0.0, 1.0] * 500, seed=1)
    assert small.value == large.value == 0.5 and small.n == 10 and large.n == 1000
    assert small.lo < 0.5 < small.hi and large.lo < 0.5 < large.hi
    assert (large.hi - large.lo) < (small.hi - small.lo) / 5
    constant = bootstrap_mean([2.0] * 7)
    assert (constant.value, constant.lo, constant.hi) == (2.0, 2.0, 2.0)
    assert bootstrap_mean([]).value is None


def test_paired_differences_keep_pairs_together() -> None:
    before = [float(i) for i in range(30)]
    after = [x + 1.0 for x in before]  # every item gains exactly 1: no spread at all once paired
    diff = paired_bootstrap_diff(before, after)
    assert (diff.value, diff.lo, diff.hi) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="pairs must match"):
        paired_bootstrap_diff([1.0], [1.0, 2.0])


def test_a_direction_is_called_only_when_the_interval_excludes_zero() -> None:
    assert verdict(Estimate(0.2, 0.05, 0.3, 50), better="higher") == "better"
    assert verdict(Estimate(0.2, 0.05, 0.3, 50), better="lower") == "worse"
    assert verdict(Estimate(-0.2, -0.3, -0.01, 50), better="lower") == "better"
    assert verdict(Estimate(0.2, -0.05, 0.3, 50), better="higher") == "no detectable change"
    assert verdict(Estimate(None, None, None, 0), better="higher") == "not measured"


def test_auroc_counts_ties_half() -> None:
    # positives 0.9, 0.8 against negatives 0.7, 0.8: 1 + 1 + 1 + 0.5 of 4 pairs
    assert auroc([0.9, 0.8, 0.7, 0.8], [True, True, False, False]) == pytest.approx(0.875)
    assert auroc([0.1, 0.9], [True, False]) == 0.0
    assert auroc([0.5, 0.5], [True, True]) is None
