"""Reductions (sum, mean, max, var, top-k, sort, cumulative sums): read the input once, write the result.

About one vector FLOP per input element (two for variance, log2(n) per element for sorting).
"""

from __future__ import annotations

import math
from typing import Any

from kernels.cost import Cost
from kernels.registry import register
from kernels.tensors import bytes_of, flat_tensors

_REDUCTIONS = [
    "aten.sum", "aten.mean", "aten.amax", "aten.amin", "aten.max", "aten.min", "aten.argmax", "aten.argmin",
    "aten.prod", "aten.norm", "aten.linalg_vector_norm", "aten.any", "aten.all", "aten.logsumexp",
    "aten.cumsum", "aten.cumprod", "aten.count_nonzero", "aten.var", "aten.var_mean", "aten.std",
    "aten.std_mean", "aten.nonzero", "aten.bincount", "aten.histc", "aten.unique_consecutive",
    "aten._unique2", "aten.sum_", "aten.mean_",
]


@register("reduction", *_REDUCTIONS)
def _reduce(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    x = next(flat_tensors(args))
    return Cost(vector_flops=float(x.numel()), bytes_read=bytes_of(x), bytes_written=bytes_of(out))


@register("reduction", "aten.topk", "aten.sort", "aten.argsort", "aten.kthvalue")
def _select(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    x = args[0]
    width = x.shape[-1] if x.dim() else 1
    return Cost(
        vector_flops=float(x.numel() * max(1.0, math.log2(max(width, 2)))),
        bytes_read=bytes_of(x),
        bytes_written=bytes_of(out),
    )
