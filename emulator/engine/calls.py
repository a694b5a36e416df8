"""The kernel calls of one traced program step (`Trace`), de-duplicated by signature with counts: what tracing
(`tracer`) produces and every cost model reads. Free of torch, so that a trace the disk cache holds is read and
costed without importing it (one to two seconds)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kernels import Cost, KernelCall

Flow = tuple[tuple[str, str], str, tuple[tuple[int, float], ...], tuple[tuple[int, float], ...], int]


@dataclass(frozen=True, slots=True)
class Trace:
    """The kernel calls of one program step, de-duplicated by signature with counts."""

    calls: tuple[KernelCall, ...]
    unknown_ops: Mapping[str, int] = field(default_factory=dict)
    phase: str = "forward"
    tokens: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)
    # Every op execution's data flow, in program order: ((module, phase), family, reads, writes, repeats) with
    # reads and writes as (storage id, bytes). A stack's fusion pass (`engine.stack.fuse`) reads it to find what
    # a fused region takes from outside and hands on, its GEMM grouping (`engine.gemm_groups`) to find the sums of
    # input gradients; ids are unique within one trace.
    flows: tuple[Flow, ...] = field(default=(), compare=False, repr=False)

    def total_cost(self, family: str | None = None, phase: str | None = None) -> Cost:
        total = Cost()
        for c in self.calls:
            if (family is None or c.family == family) and (phase is None or c.phase == phase):
                total = total + c.total
        return total

    def by_family(self) -> dict[str, Cost]:
        out: dict[str, Cost] = {}
        for c in self.calls:
            out[c.family] = out.get(c.family, Cost()) + c.total
        return out

    @property
    def num_kernel_calls(self) -> int:
        return sum(c.count for c in self.calls if c.family != "view")


__all__ = ["Flow", "Trace"]
