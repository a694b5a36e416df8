"""Optimizer updates: the multi-tensor (`_foreach_*`) and fused AdamW kernels.

A foreach op applies one elementwise update to every tensor of its lists in a few launches; its cost is the
elementwise cost summed over the lists. Fused AdamW per parameter element reads param, grad, exp_avg and
exp_avg_sq and writes param, exp_avg and exp_avg_sq, about 12 vector FLOPs (two lerps, a square, a sqrt,
a divide, the decoupled weight decay and the step).
"""

from __future__ import annotations

from typing import Any

from kernels.cost import Cost
from kernels.registry import register
from kernels.tensors import bytes_of, flat_tensors, numel_of

_FOREACH = [
    "add", "sub", "mul", "div", "lerp", "addcmul", "addcdiv", "sqrt", "maximum", "minimum", "neg",
    "copy", "zero", "exp", "reciprocal", "pow", "sign", "abs", "clamp_min", "clamp_max", "norm",
]
_FLOPS = {"addcmul": 2, "addcdiv": 2, "lerp": 2, "sqrt": 2, "norm": 2}


def _make(name: str):  # type: ignore[no-untyped-def]
    def rule(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
        first = args[0]
        n = numel_of(first)
        written = bytes_of(out) if out is not None else bytes_of(first)
        if name in ("copy", "zero"):
            read = bytes_of(args[1:]) if name == "copy" else 0.0
        else:
            read = bytes_of(args)
        return Cost(vector_flops=float(n * _FLOPS.get(name, 1)), bytes_read=read, bytes_written=written)

    return rule


for _name in _FOREACH:
    register("optimizer", f"aten._foreach_{_name}", f"aten._foreach_{_name}_")(_make(_name))


@register("optimizer", "aten._fused_adamw_", "aten._fused_adam_", "aten._fused_adamw", "aten._fused_adam")
def _fused_adam(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    params, grads, exp_avgs, exp_avg_sqs = args[0], args[1], args[2], args[3]
    n = numel_of(params)
    state = bytes_of(params) + bytes_of(exp_avgs) + bytes_of(exp_avg_sqs)
    return Cost(vector_flops=12.0 * n, bytes_read=state + bytes_of(grads), bytes_written=state)


def parameter_elements(args: tuple[Any, ...]) -> int:
    """Elements of the first tensor list (the parameters) of an optimizer op."""
    return sum(t.numel() for t in flat_tensors(args[0]))
