"""Shape and byte helpers shared by the cost rules (work on meta, fake and real tensors alike)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float64: "fp64",
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
    torch.complex64: "c64",
    torch.complex128: "c128",
}
for _name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
    if hasattr(torch, _name):
        DTYPE_NAMES[getattr(torch, _name)] = "fp8"
if hasattr(torch, "float4_e2m1fn_x2"):
    DTYPE_NAMES[torch.float4_e2m1fn_x2] = "fp4"


def dtype_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def is_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def flat_tensors(x: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside nested args (lists, tuples, dicts)."""
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for y in x:
            yield from flat_tensors(y)
    elif isinstance(x, dict):
        for y in x.values():
            yield from flat_tensors(y)


def distinct_numel(t: torch.Tensor) -> int:
    """Elements actually stored behind `t`: broadcast (stride-0) dimensions count once."""
    if t.dim() == 0:
        return 1
    return math.prod(s for s, st in zip(t.shape, t.stride(), strict=True) if st != 0 or s == 0)


def nbytes(t: torch.Tensor) -> float:
    """Bytes behind `t` (broadcast dimensions counted once)."""
    return float(distinct_numel(t) * t.element_size())


def storage_id(t: torch.Tensor) -> int:
    """The identity of the storage behind `t`: views of one tensor (and autograd's unpacked saved tensors, new Python
    objects) share it; unique while the storage lives."""
    return int(t.untyped_storage()._cdata)


def bytes_of(x: Any) -> float:
    """Bytes of every tensor in nested args."""
    return sum(nbytes(t) for t in flat_tensors(x))


def numel_of(x: Any) -> int:
    return sum(t.numel() for t in flat_tensors(x))


def first_float(x: Any) -> torch.Tensor | None:
    for t in flat_tensors(x):
        if t.is_floating_point():
            return t
    return None
