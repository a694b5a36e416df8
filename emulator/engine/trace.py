"""A workload's trace at given shapes (`trace_workload`): from this process's memory, else the disk cache, else
traced now by `tracer` (a program run on meta tensors, its aten ops recorded as kernel calls).

This module never imports torch itself: a process whose traces are all on disk (a second `emulator predict` of a
serving scenario) reads and costs them without importing it, which takes one to two seconds. Only a miss imports
the tracer, and with it torch.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from emulator.engine import diskcache
from emulator.engine.calls import Trace

if TYPE_CHECKING:
    import torch


def trace_workload(model: Any, phase: str, batch_size: int, seq_len: int, kv_len: int,
                   dtype: str | torch.dtype) -> Trace:
    """Cached trace of a model's phase at given shapes (models are frozen, hashable configs), in the process and on
    disk (`diskcache`). `dtype`: the program's dtype by name ('bf16', as `precision.activation_dtype` gives it) or
    as a torch dtype."""
    if not isinstance(dtype, str):  # a torch dtype: torch is loaded already
        from kernels.tensors import dtype_name

        dtype = dtype_name(dtype)
    return _trace_named(model, phase, batch_size, seq_len, kv_len, dtype)


@functools.lru_cache(maxsize=256)
def _trace_named(model: Any, phase: str, batch_size: int, seq_len: int, kv_len: int, dtype: str) -> Trace:
    return diskcache.cached("trace", (model, phase, batch_size, seq_len, kv_len, dtype),
                            lambda: _trace_now(model, phase, batch_size, seq_len, kv_len, dtype))


def _trace_now(model: Any, phase: str, batch_size: int, seq_len: int, kv_len: int, dtype: str) -> Trace:
    # Imported here, not at the top: they load torch, which a process that finds every trace cached never needs.
    from emulator.engine.tracer import trace_program
    from emulator.workloads.program import build_program
    from kernels.references import torch_dtype

    return trace_program(build_program(model, phase, batch_size=batch_size, seq_len=seq_len,  # type: ignore[arg-type]
                                       kv_len=kv_len, dtype=torch_dtype(dtype)))


__all__ = ["Trace", "trace_workload"]
