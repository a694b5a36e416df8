"""How close each kernel family gets to the hardware's peaks: the spec defaults and the calibrated tables.

A `FamilyEfficiency` says, for one kernel family on one device, what fraction of the unit's peak FLOP/s
(`math`) and of main-memory bandwidth (`memory`) large kernels reach, the device-side fixed time each call
costs beyond the profile's launch overhead, how much faster working sets that fit the last-level cache
stream, and the GEMM tile edge used for wave quantisation. `roofline` is the only consumer.

A device without a calibration of its own takes a measured sibling's, moved to its own achievable rates
(`emulator.engine.transfer`); with no calibration to take, `SPEC_DEFAULTS`: one explicit table, each value
checked against the published measurements copied into `emulator/data/published_kernels.yaml`
(tests/test_efficiency.py):
- GEMM math 0.80: best achievable bf16 matmul (MAMF) is 794.5/989 = 0.80 of peak on H100 SXM,
  271.2/312 = 0.87 on A100, 1745/2250 = 0.78 on B200; large cuBLASLt fp8 GEMMs on H100 reach
  1351/1979 = 0.68.
- Streams 0.85 of bandwidth: STREAM copy/triad reach 2.97/3.35 = 0.89 on H100, 1.70/2.039 = 0.83 on
  A100, 4.15/4.8 = 0.86 on H200.
- Fused attention math 0.55: FlashAttention-2/3 forward reaches ~0.6-0.75 of peak and the backward ~0.45-0.55
  (Dao 2023; Shah et al. 2024); one number serves both until calibrated.
- Vector math 0.50 of the non-matrix peak: elementwise kernels are memory-bound at any size that matters,
  so this only bounds the rare compute-heavy vector kernel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

PROVENANCES = ("measured", "calibrated", "transferred", "spec")


@dataclass(frozen=True, slots=True, kw_only=True)
class FamilyEfficiency:
    """Efficiency of one kernel family on one device (fractions of the profile's peaks)."""

    math: float  # fraction of the matrix (or vector) peak large kernels reach
    memory: float  # fraction of main-memory bandwidth large streams reach
    vector: float = 0.5  # fraction of the vector peak for vector FLOPs
    overhead_s: float = 0.0  # device-side fixed time per call beyond the profile's launch overhead
    cache_speedup: float = 1.0  # bandwidth multiplier for working sets within the last-level cache
    tile: int = 128  # GEMM output tile edge for wave quantisation; 0 disables it
    half_dim: float = 0.0  # GEMM size at which small-matrix kernels reach half their efficiency (0: no penalty)
    # Vector operations a weight-only GEMM spends widening each packed weight, once per row tile of its output (a
    # serving engine's w4a16 kernels: `engine.stack.weight_only_from_base`); 0 for every other family
    widen_ops: float = 0.0
    error: float = 0.25  # typical |relative error| of a kernel time: held-out error when calibrated

    def __post_init__(self) -> None:
        for name in ("math", "memory", "vector", "cache_speedup"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"efficiency {name} must be positive and finite, got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class EfficiencyTable:
    """Per-family efficiencies for one device, where they came from, and how sure they are."""

    families: Mapping[str, FamilyEfficiency]
    provenance: str  # calibrated | transferred | spec
    source: str  # the calibration file, or "spec defaults"
    host_overhead_s: float = 0.0  # host time to dispatch one bare op (eager PyTorch); 0 for graph-captured runs
    program_overhead_s: float = 0.0  # host time per op inside a model step (modules, Python): >= host_overhead_s
    synchronous: bool = False  # the host runs the kernels itself (CPU): dispatch adds to, not hides behind, them
    peaks: Mapping[str, float] = field(default_factory=dict)  # measured rates replacing the profile's (CPU)
    # Seconds the speed reference took, on average, while the points were measured (CPU; see `emulator.measure.speed`).
    reference_s: float | None = None
    # CPU: extra seconds a kernel call takes when the traffic since its last run evicted its code, page-table
    # entries and data: (bytes of traffic, seconds) pairs, measured (see `fit.cold_call_curve`).
    cold_call_curve: tuple[tuple[float, float], ...] = ()
    # What the efficiencies rest on, in words: a transfer's ratios and fallbacks, a power limit ("" for a device's
    # own calibration at its TDP, and for the plain spec defaults).
    basis: str = ""
    clock_share: float = 1.0  # sustained clock under the device's power limit over its clock at the TDP
    power_limit_w: float | None = None  # the power limit the table holds for (None: the TDP)

    def cold_call_s(self, traffic_bytes: float) -> float:
        """The cold-call cost after `traffic_bytes`: linear between the measured pairs and from (0, 0), flat
        beyond the largest."""
        prev_b, prev_s = 0.0, 0.0
        for b, s in self.cold_call_curve:
            if traffic_bytes <= b:
                return prev_s + (s - prev_s) * (traffic_bytes - prev_b) / (b - prev_b) if b > prev_b else s
            prev_b, prev_s = b, s
        return prev_s

    def summary(self) -> dict[str, Any]:
        """What a prediction reports under `efficiency`: where the efficiencies come from and the power limit."""
        return {"provenance": self.provenance, "source": self.source, "basis": self.basis,
                "power_limit_w": self.power_limit_w, "clock_share": self.clock_share}

    def __post_init__(self) -> None:
        if self.provenance not in PROVENANCES:
            raise ValueError(f"unknown provenance {self.provenance!r}")
        object.__setattr__(self, "families", MappingProxyType(dict(self.families)))
        object.__setattr__(self, "peaks", MappingProxyType(dict(self.peaks)))

    def get(self, family: str, dtype: str | None = None) -> FamilyEfficiency:
        """The efficiency of `family` in `dtype` ("gemm.fp8"), else of the family, else the default. A key with a
        fallback (`FALLBACK`: matrix-vector products fall back to GEMMs) tries the fallback's dtype entry before
        its own plain one: a dtype fitted on its own is another library, whatever the shape."""
        fallback = FALLBACK.get(family)
        return (
            (self.families.get(f"{family}.{dtype}") if dtype else None)
            or (self.families.get(f"{fallback}.{dtype}") if dtype and fallback else None)
            or self.families.get(family)
            or (self.families.get(fallback) if fallback else None)
            or self.families.get("default")
            or _DEFAULT
        )


_DEFAULT = FamilyEfficiency(math=0.5, memory=0.8, vector=0.5)
# Matrix-vector products (a GEMM with one output row or column: decode at batch 1) have their own efficiency key
# where a calibration fitted one: BLAS libraries run them as another kernel class (sgemv streams the matrix once; no
# row tiles). Without one they take the GEMM's.
MATRIX_VECTOR = "gemv"
FALLBACK = {MATRIX_VECTOR: "gemm"}

SPEC_DEFAULTS = EfficiencyTable(
    families={
        "gemm": FamilyEfficiency(math=0.80, memory=0.85, error=0.20),
        "attention": FamilyEfficiency(math=0.55, memory=0.85, vector=0.5, tile=0, error=0.25),
        "norm": FamilyEfficiency(math=0.5, memory=0.80, tile=0, error=0.25),
        "elementwise": FamilyEfficiency(math=0.5, memory=0.85, tile=0, error=0.20),
        "softmax": FamilyEfficiency(math=0.5, memory=0.80, tile=0, error=0.25),
        "embedding": FamilyEfficiency(math=0.5, memory=0.60, tile=0, error=0.35),
        "scatter": FamilyEfficiency(math=0.5, memory=0.30, tile=0, error=0.50),
        "reduction": FamilyEfficiency(math=0.5, memory=0.80, tile=0, error=0.25),
        "optimizer": FamilyEfficiency(math=0.5, memory=0.85, tile=0, error=0.20),
        "copy": FamilyEfficiency(math=0.5, memory=0.85, tile=0, error=0.20),
        "collective": FamilyEfficiency(math=0.5, memory=0.85, tile=0, error=0.30),
        "default": _DEFAULT,
    },
    provenance="spec",
    source="spec defaults (emulator/efficiency.py)",
)
