"""The statistics helpers."""

from __future__ import annotations

import numpy as np
import pytest

from emulator.stats import Percentiles, expected_max_normal, median, percentile


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
