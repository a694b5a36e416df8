"""The one result type of both modes: `Timing`, produced by `roofline` (emulate) and `measure` (run)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kernels import Cost

BOUNDS = ("compute", "memory", "overhead", "comm")


@dataclass(frozen=True, slots=True)
class KernelTiming:
    """Time of one kernel signature, all `count` calls together."""

    family: str
    op: str
    module: str
    phase: str
    dtype: str
    shapes: tuple[tuple[int, ...], ...]
    count: int
    time_s: float  # all calls
    t_math_s: float  # per call
    t_mem_s: float  # per call
    t_overhead_s: float  # per call
    bound: str
    cost: Cost  # all calls
    # All calls' bytes at main memory's rate (state, outputs, cache-resident data); a software-managed SRAM's are not:
    # the numerator of memory-bandwidth utilisation.
    main_memory_bytes: float = 0.0


@dataclass(frozen=True, slots=True)
class FamilyTiming:
    """Kernels of one family summed: seconds, calls, FLOPs (matrix + vector), bytes moved, the dominant bound."""

    family: str
    time_s: float
    count: int
    flops: float
    bytes: float
    bound: str  # the bound holding the most time in this family

    def as_dict(self) -> dict[str, Any]:
        return {"time_s": self.time_s, "count": self.count, "flops": self.flops, "bytes": self.bytes,
                "bound": self.bound}

    def scaled(self, k: float) -> FamilyTiming:
        """The same family repeated `k` times (micro-batches of a step)."""
        return FamilyTiming(self.family, self.time_s * k, int(self.count * k), self.flops * k, self.bytes * k,
                            self.bound)


def family_totals(kernels: Iterable[KernelTiming]) -> dict[str, FamilyTiming]:
    """Kernel timings summed per family, longest family first; each family's bound is the one holding most time."""
    groups: dict[str, list[KernelTiming]] = {}
    for k in kernels:
        groups.setdefault(k.family, []).append(k)
    out = {}
    for fam, ks in sorted(groups.items(), key=lambda kv: -sum(k.time_s for k in kv[1])):
        per_bound: dict[str, float] = {}
        cost = Cost()
        for k in ks:
            per_bound[k.bound] = per_bound.get(k.bound, 0.0) + k.time_s
            cost = cost + k.cost
        out[fam] = FamilyTiming(family=fam, time_s=sum(k.time_s for k in ks), count=sum(k.count for k in ks),
                                flops=cost.flops, bytes=cost.bytes, bound=max(per_bound, key=per_bound.__getitem__))
    return out


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds per kernel and in total for one step, with where the numbers came from.

    `total_s` is what one step takes. For predictions, `device_s` is the sum of kernel times and `host_s`
    the time the host needs to dispatch the ops; the step takes the larger of the two (dispatch overlaps
    execution). For measurements, `p20_s`/`p80_s` bracket the median and `kernels` holds the profiler's
    attribution when one was taken.
    """

    total_s: float
    provenance: str  # measured | calibrated | transferred | spec
    error_band: float  # fractional half-width: the truth is expected within total_s * (1 +- error_band)
    device: str
    kernels: tuple[KernelTiming, ...] = ()
    device_s: float = 0.0
    host_s: float = 0.0
    p20_s: float | None = None
    p80_s: float | None = None
    energy_j: float | None = None
    power: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def by_family(self) -> dict[str, FamilyTiming]:
        return family_totals(self.kernels)

    @property
    def bound(self) -> str:
        """What limits the step overall: host dispatch ('overhead') or the dominant kernel bound."""
        if self.host_s > self.device_s:
            return "overhead"
        per_bound: dict[str, float] = {}
        for k in self.kernels:
            per_bound[k.bound] = per_bound.get(k.bound, 0.0) + k.time_s
        return max(per_bound, key=per_bound.__getitem__) if per_bound else "compute"
