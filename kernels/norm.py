"""Fused normalisation kernels (LayerNorm, RMSNorm) and their backward.

Forward of y = norm(x) * w (+ b) over rows of width N: read x and w, write y and per-row statistics;
about 8 vector FLOPs per element (mean, variance, normalise, scale, shift). Backward reads dy, x, the
statistics and w, writes dx and (summed over rows) dw and db; about 12 vector FLOPs per element.
Models written as `x * rsqrt(mean(x^2) + eps) * w` trace as elementwise and reduction kernels instead,
exactly as they run in eager mode.
"""

from __future__ import annotations

from typing import Any

from kernels.cost import Cost
from kernels.registry import register
from kernels.tensors import bytes_of, flat_tensors


def _cost(args: tuple[Any, ...], out: Any, flops_per_element: float) -> Cost:
    x = next(flat_tensors(args))
    return Cost(
        vector_flops=flops_per_element * x.numel(),
        bytes_read=bytes_of(args),
        bytes_written=bytes_of(out),
    )


@register("norm", "aten.native_layer_norm", "aten._fused_rms_norm", "aten.native_group_norm")
def _forward(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    return _cost(args, out, 8.0)


@register(
    "norm",
    "aten.native_layer_norm_backward",
    "aten._fused_rms_norm_backward",
    "aten.native_group_norm_backward",
)
def _backward(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    return _cost(args, out, 12.0)
