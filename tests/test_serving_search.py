"""The Server rate search (`serving.search.highest_rate`): the answer plain bisection gives, in fewer trials."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from emulator.serving.search import SEARCH_ITERATIONS, highest_rate


def _bisection(low: float, high: float, passes, iterations: int) -> float | None:  # type: ignore[no-untyped-def]
    """The search `highest_rate` replaces: `iterations` bisections of [low, high] in log rate."""
    lo, hi, found = math.log(low), math.log(high), None
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if passes(math.exp(mid)):
            lo, found = mid, math.exp(mid)
        else:
            hi = mid
    return found


@given(threshold=st.floats(0.001, 2.0), iterations=st.integers(1, 12))
def test_finds_what_bisection_finds(threshold: float, iterations: int) -> None:
    tried: list[float] = []

    def trial(rate: float) -> tuple[bool, float]:
        tried.append(rate)
        return rate <= threshold, rate

    found = highest_rate(1 / 64, 1.0, trial, iterations)
    expected = _bisection(1 / 64, 1.0, lambda r: r <= threshold, iterations)
    if expected is None:
        assert found is None
    else:
        assert found is not None and math.isclose(found[0], expected, rel_tol=1e-12) and found[1] == found[0]
    assert len(tried) <= 2 * iterations + 1


@given(threshold=st.floats(0.001, 2.0), beat=st.floats(0.001, 2.0))
def test_with_a_rate_to_beat_finds_only_a_better_answer(threshold: float, beat: float) -> None:
    found = highest_rate(1 / 64, 1.0, lambda r: (r <= threshold, r), beat=beat)
    expected = _bisection(1 / 64, 1.0, lambda r: r <= threshold, SEARCH_ITERATIONS)
    if expected is not None and expected > beat:
        assert found is not None and math.isclose(found[0], expected, rel_tol=1e-12)
    else:
        assert found is None


def test_a_rate_near_capacity_costs_one_trial() -> None:
    tried: list[float] = []
    found = highest_rate(1.0, 64.0, lambda r: (tried.append(r) is None, r))
    assert found is not None and len(tried) == 1
    assert math.isclose(found[0], 64.0 * 64.0 ** (-1 / 2**SEARCH_ITERATIONS))


def test_stops_once_the_answer_cannot_beat_a_better_one() -> None:
    tried: list[float] = []

    def trial(rate: float) -> tuple[bool, None]:
        tried.append(rate)
        return rate <= 2.0, None

    assert highest_rate(1.0, 64.0, trial, beat=8.0) is None
    assert min(tried) > 8.0  # every trial was above the rate to beat: none below it was run
