"""Statistics used everywhere results are summarised: percentiles (numpy's linear interpolation) and medians."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]); an error for no values."""
    if len(values) == 0:
        raise ValueError("percentile of no values")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def median(values: Sequence[float] | np.ndarray) -> float:
    """The 50th percentile."""
    return percentile(values, 50)
