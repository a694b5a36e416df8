"""Elementwise and activation kernels: memory-bound streams over their operands.

Cost of y = f(x1, ..., xn) with E output elements:
    vector FLOPs = E * flops_per_element(f)      (table below; transcendental functions count a few)
    bytes read   = bytes of each input tensor   (broadcast operands counted once)
    bytes written = bytes of each output tensor
In-place variants (add_, mul_) read and write `self`.
"""

from __future__ import annotations

from typing import Any

from kernels.cost import Cost
from kernels.registry import register
from kernels.tensors import bytes_of, flat_tensors

# FLOPs per output element; ops not listed count 1.
_FLOPS_PER_ELEMENT = {
    "silu": 4,
    "silu_backward": 6,
    "gelu": 8,
    "gelu_backward": 12,
    "sigmoid": 3,
    "sigmoid_backward": 2,
    "tanh": 4,
    "tanh_backward": 2,
    "exp": 2,
    "log": 2,
    "rsqrt": 2,
    "sqrt": 2,
    "pow": 1,
    "sin": 4,
    "cos": 4,
    "erf": 8,
    "addcmul": 2,
    "addcdiv": 2,
    "lerp": 2,
}

_UNARY_BINARY = [
    "add", "sub", "mul", "div", "neg", "pow", "rsqrt", "sqrt", "exp", "log", "abs", "reciprocal",
    "silu", "gelu", "sigmoid", "tanh", "relu", "erf", "sin", "cos", "clamp", "clamp_min", "clamp_max",
    "maximum", "minimum", "where", "masked_fill", "addcmul", "addcdiv", "lerp", "rsub", "sign",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not", "bitwise_and",
    "bitwise_or", "bitwise_not", "floor", "ceil", "round", "remainder", "fmod", "floor_divide",
    "tril", "triu", "leaky_relu", "hardtanh", "threshold", "square", "log1p", "expm1", "exp2",
    "isnan", "isinf", "nan_to_num", "softplus", "elu", "mish", "xlogy", "copysign",
]
_BACKWARD = [
    "silu_backward", "gelu_backward", "sigmoid_backward", "tanh_backward", "threshold_backward",
    "leaky_relu_backward", "hardtanh_backward", "softplus_backward", "elu_backward", "mish_backward",
]


def _op_names() -> list[str]:
    names = []
    for base in _UNARY_BINARY:
        names += [f"aten.{base}", f"aten.{base}_"]
    names += [f"aten.{b}" for b in _BACKWARD]
    return sorted(set(names))


def _base(op: str) -> str:
    return op.removeprefix("aten.").rstrip("_")


def elementwise_cost(op: str, args: tuple[Any, ...], out: Any) -> Cost:
    out_tensors = list(flat_tensors(out))
    elements = sum(t.numel() for t in out_tensors)
    return Cost(
        vector_flops=float(elements * _FLOPS_PER_ELEMENT.get(_base(op), 1)),
        bytes_read=bytes_of(args),
        bytes_written=sum(float(t.numel() * t.element_size()) for t in out_tensors),
    )


def _make_rule(op: str):  # type: ignore[no-untyped-def]
    def rule(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
        return elementwise_cost(op, args, out)

    return rule


for _op in _op_names():
    register("elementwise", _op)(_make_rule(_op))


@register("elementwise", "aten.native_dropout", "aten.native_dropout_backward", "aten.bernoulli_")
def _dropout(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    return elementwise_cost("aten.dropout", args, out)
