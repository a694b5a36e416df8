"""The statistics helpers."""

from __future__ import annotations

import numpy as np
import pytest

from emulator.stats import Percentiles, busiest_rank_factor, expected_max_normal, median, percentile


def test_expected_max_of_normals_matches_the_tabulated_values_and_sampling() -> None:
    # Tabulated E[max of n standard normals] (Tippett 1925; Harter 1961): 0.5642, 1.0294, 1.4236, 1.7660
    for n, value in ((2, 0.5642), (4, 1.0294), (8, 1.4236), (16, 1.7660)):
        assert expected_max_normal(n) == pytest.approx(value, abs=2e-4)
    assert expected_max_normal(1) == 0.0 == expected_max_normal(0)
    draws = np.random.default_rng(0).standard_normal((200_000, 8)).max(axis=1).mean()
    assert expected_max_normal(8) == pytest.approx(draws, abs=0.01)


def test_percentiles_and_median() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert median(values) == 2.5 and percentile(values, 100) == 4.0
    assert Percentiles.of([]).as_dict() == {"p50": 0.0, "p90": 0.0, "p99": 0.0}
    with pytest.raises(ValueError):
        percentile([], 50)


def test_the_busiest_expert_rank_carries_more_than_the_mean() -> None:
    """Uniform routing over expert-parallel ranks: one rank carries no excess; a small decode batch leaves the
    busiest rank touching far more experts than the mean one, and the excess shrinks as the batch grows."""
    assert busiest_rank_factor(4, 8, 256, 1) == 1.0 and busiest_rank_factor(0, 8, 256, 8) == 1.0
    p = 1 - (1 - 8 / 256) ** 4  # an expert's chance of a token among 4
    touched = 32 * p
    assert busiest_rank_factor(4, 8, 256, 8) == pytest.approx(
        (touched + expected_max_normal(8) * (32 * p * (1 - p)) ** 0.5) / touched)
    factors = [busiest_rank_factor(t, 8, 256, 8) for t in (1, 4, 16, 64, 1024, 8192)]
    assert factors == sorted(factors, reverse=True) and factors[1] > 1.6 and 1.0 < factors[-1] < 1.02
    assert busiest_rank_factor(1, 2, 8, 8) <= 8.0  # never more than a rank's whole expert set over the mean
    assert busiest_rank_factor(1, 1, 2, 2) <= 2.0 and busiest_rank_factor(1e-3, 1, 64, 64) == 64.0  # all the work
