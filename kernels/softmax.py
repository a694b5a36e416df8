"""Softmax, log-softmax and the negative log-likelihood halves of cross-entropy.

softmax over rows: read x, write y; about 5 vector FLOPs per element (max, subtract, exp, sum, divide).
Backward: read y and dy, write dx; about 4 FLOPs per element.
nll_loss: gathers one log-probability per row (reads the target and one element per row); its backward
writes a full-size gradient that is zero but for one element per row.
"""

from __future__ import annotations

from typing import Any

from kernels.cost import Cost
from kernels.registry import register
from kernels.tensors import bytes_of, flat_tensors


@register("softmax", "aten._softmax", "aten._log_softmax", "aten._safe_softmax")
def _softmax(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    x = args[0]
    return Cost(vector_flops=5.0 * x.numel(), bytes_read=bytes_of(x), bytes_written=bytes_of(out))


@register("softmax", "aten._softmax_backward_data", "aten._log_softmax_backward_data")
def _softmax_backward(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    grad, y = args[0], args[1]
    return Cost(vector_flops=4.0 * y.numel(), bytes_read=bytes_of((grad, y)), bytes_written=bytes_of(out))


@register("softmax", "aten.nll_loss_forward", "aten.nll_loss2d_forward")
def _nll(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    x, target = args[0], args[1]
    rows = target.numel()
    return Cost(
        vector_flops=2.0 * rows,
        bytes_read=bytes_of(target) + rows * x.element_size(),
        bytes_written=bytes_of(out),
    )


@register("softmax", "aten.nll_loss_backward", "aten.nll_loss2d_backward")
def _nll_backward(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    target = args[2]
    o = next(flat_tensors(out))
    return Cost(vector_flops=float(target.numel()), bytes_read=bytes_of(target), bytes_written=bytes_of(o))


@register("softmax", "aten.binary_cross_entropy", "aten.binary_cross_entropy_backward",
          "aten.binary_cross_entropy_with_logits")
def _bce(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    tensors = [t for t in flat_tensors(args)]
    n = max(t.numel() for t in tensors)
    return Cost(vector_flops=6.0 * n, bytes_read=bytes_of(args), bytes_written=bytes_of(out))
