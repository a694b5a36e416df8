"""What every prediction reports, as frozen typed values: the `Prediction` family's common part, its memory and
its figures with their provenance. Training on a cluster (`cluster.training.TrainingPrediction`) and serving
(`serving.prediction.ServingPrediction`) extend it; `to_json` is the one JSON rendering of all of them (the field
names the README documents), and `emulator.cli.render` the one table rendering.

Conventions (also in the README):
- `flops_per_step` counts *model* FLOPs: the matrix FLOPs of every GEMM and of fused attention (forward
  2*pairs*(Dqk+Dv) per head; backward twice that, *without* the score recompute FlashAttention performs).
  Vector FLOPs (norms, softmax, elementwise) are excluded, as in the Megatron/PaLM MFU convention.
  `hardware_flops_per_step` adds the attention recompute and the vector FLOPs.
- MFU = flops_per_step / (step_time_s * num_devices * dense matrix peak of the precision's dtype).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from emulator.engine.timing import FamilyTiming, Timing

FLOPS_CONVENTION = ("model FLOPs: GEMM + fused-attention matrix FLOPs, attention backward = 2x forward (no recompute); "
                    "vector FLOPs excluded")
# Figures counted from the program alone (FLOPs, tokens) are exact for the traced program.
COUNTED = "traced"


def mfu(flops_per_step: float, step_time_s: float, num_devices: int, peak_flops_per_s: float) -> float:
    """Model FLOPs utilisation: model FLOPs per second per device over the dense matrix peak (0 for no time)."""
    if step_time_s <= 0 or not math.isfinite(step_time_s):
        return 0.0
    return flops_per_step / step_time_s / num_devices / peak_flops_per_s


def bandwidth_utilisation(bytes_moved: float, time_s: float, num_devices: int, peak_bytes_per_s: float) -> float:
    """Memory-bandwidth utilisation (MBU): bytes moved per second per device over the main-memory bandwidth, the
    measure of a memory-bound phase such as decode (0 for no time or no bandwidth)."""
    if time_s <= 0 or not math.isfinite(time_s) or peak_bytes_per_s <= 0:
        return 0.0
    return bytes_moved / time_s / num_devices / peak_bytes_per_s


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """One reported number with where it came from and its fractional error band."""

    value: float | Mapping[str, float]  # a number, or percentiles {p50, p90, p99}
    provenance: str  # measured | calibrated | transferred | spec | traced
    error_band: float

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "provenance": self.provenance, "error_band": self.error_band}


@dataclass(frozen=True, slots=True, kw_only=True)
class Memory:
    """Bytes one device needs, by component (the allocator allowance is one of them), and what it has."""

    parts: Mapping[str, float]
    capacity_bytes: float
    error_band: float  # how sure the total is: the allocator allowance's size, or 0 where memory is allocated up front

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", MappingProxyType(dict(self.parts)))

    @property
    def total_bytes(self) -> float:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.capacity_bytes

    def breakdown(self) -> dict[str, float]:
        """The components and their total (the `memory_breakdown` of `--json`)."""
        return {**self.parts, "total": self.total_bytes}


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """A predicted step of one scenario: time, throughput, FLOPs, memory, and where each number came from."""

    scenario: str
    model: str
    device: str
    system: str | None
    num_devices: int
    step_time_s: float
    tokens_per_step: float
    flops_per_step: float
    hardware_flops_per_step: float
    peak_flops_per_s: float  # the dense matrix peak of the precision's dtype (`DeviceProfile.mfu_peak`)
    memory: Memory
    provenance: str
    error_band: float
    bound: str
    kernels: Mapping[str, FamilyTiming]
    unknown_ops: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    assumed: Mapping[str, object] = field(default_factory=dict)  # model fields taken from Hugging Face defaults
    phases: Mapping[str, Timing] = field(default_factory=dict)  # parts timed on their own (prefill, decode)
    stack: Mapping[str, Any] = field(default_factory=dict)  # the software stack modelled (`StackProfile.as_dict`)
    efficiency: Mapping[str, Any] = field(default_factory=dict)  # what the device efficiencies rest on (`summary`)
    # The stack's end-to-end errors against published measurements on this device family (`stacks.accuracy`)
    validated: Mapping[str, Any] = field(default_factory=dict)

    mode: ClassVar[str] = "training"
    flops_convention: ClassVar[str] = FLOPS_CONVENTION

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_time_s if self.step_time_s > 0 else 0.0

    @property
    def tokens_per_s_per_device(self) -> float:
        return self.tokens_per_s / self.num_devices

    @property
    def model_flops_per_s_per_device(self) -> float:
        return self.flops_per_step / self.step_time_s / self.num_devices if self.step_time_s > 0 else 0.0

    @property
    def mfu(self) -> float:
        return mfu(self.flops_per_step, self.step_time_s, self.num_devices, self.peak_flops_per_s)

    @property
    def fits(self) -> bool:
        return self.memory.fits

    @property
    def step_time_range_s(self) -> tuple[float, float]:
        return self.step_time_s * (1 - self.error_band), self.step_time_s * (1 + self.error_band)

    def timed(self, value: float, phase: str | None = None) -> Figure:
        """A figure derived from this prediction's times (a phase's own provenance and band where it has one)."""
        timing = self.phases.get(phase) if phase else None
        if timing is not None:
            return Figure(value=value, provenance=timing.provenance, error_band=timing.error_band)
        return Figure(value=value, provenance=self.provenance, error_band=self.error_band)

    def figures(self) -> dict[str, Figure]:
        """Each reported number with its provenance and error band."""
        figs = {
            "step_time_s": self.timed(self.step_time_s),
            "tokens_per_s": self.timed(self.tokens_per_s),
            "tokens_per_s_per_device": self.timed(self.tokens_per_s_per_device),
            "model_flops_per_s_per_device": self.timed(self.model_flops_per_s_per_device),
            "mfu": self.timed(self.mfu),
            "flops_per_step": Figure(value=self.flops_per_step, provenance=COUNTED, error_band=0.0),
            "hardware_flops_per_step": Figure(value=self.hardware_flops_per_step, provenance=COUNTED, error_band=0.0),
            "tokens_per_step": Figure(value=self.tokens_per_step, provenance=COUNTED, error_band=0.0),
            # Memory: counted from the program, plus an allowance whose size is the uncertainty.
            "memory_per_device_bytes": Figure(value=self.memory.total_bytes, provenance=COUNTED,
                                              error_band=self.memory.error_band),
        }
        return figs | self._figures()

    def _figures(self) -> dict[str, Figure]:
        """Figures a kind of prediction adds (overridden)."""
        return {}

    def to_json(self) -> dict[str, Any]:
        """What `emulator predict --json` prints (the README documents every field)."""
        t, band = self.step_time_s, self.error_band
        out: dict[str, Any] = {
            "scenario": self.scenario, "model": self.model, "device": self.device, "system": self.system,
            "num_devices": self.num_devices, "mode": self.mode,
            "step_time_s": t, "tokens_per_step": self.tokens_per_step, "tokens_per_s": self.tokens_per_s,
            "tokens_per_s_per_device": self.tokens_per_s_per_device,
            "flops_per_step": self.flops_per_step, "flops_convention": self.flops_convention,
            "hardware_flops_per_step": self.hardware_flops_per_step,
            "model_flops_per_s_per_device": self.model_flops_per_s_per_device, "mfu": self.mfu,
            "memory_per_device_bytes": self.memory.total_bytes, "memory_breakdown": self.memory.breakdown(),
            "memory_capacity_bytes": self.memory.capacity_bytes, "fits": self.fits,
            "provenance": self.provenance, "error_band": band, "step_time_range_s": list(self.step_time_range_s),
            "bound": self.bound, "unknown_ops": dict(self.unknown_ops),
            "kernels": {fam: k.as_dict() for fam, k in self.kernels.items()},
            "assumed": dict(self.assumed), "notes": list(self.notes),
        }
        if self.stack:
            out["stack"] = dict(self.stack)
        if self.efficiency:
            out["efficiency"] = dict(self.efficiency)
        if self.validated:
            out["validated"] = dict(self.validated)
        if self.phases:
            out["phases"] = {name: {"time_s": p.total_s, "provenance": p.provenance}
                             for name, p in self.phases.items()}
        out |= self._json()
        out["figures"] = {key: fig.as_dict() for key, fig in sorted(self.figures().items())}
        return out

    def _json(self) -> dict[str, Any]:
        """Fields a kind of prediction adds to `to_json` (overridden)."""
        return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class InferencePrediction(Prediction):
    """One batch of `batch_size` requests on one device: a prefill, then `output_tokens` decode steps (the
    phases `prefill` and `decode`; a recommender has only its batch)."""

    batch_size: int  # requests in the batch
    peak_memory_bytes_per_s: float = 0.0  # the device's main-memory bandwidth (`DeviceProfile`), for MBU

    mode: ClassVar[str] = "inference"

    def phase_utilisation(self) -> dict[str, dict[str, float]]:
        """Per phase of the batch (one device): MFU, which means something where the phase is compute bound
        (prefill), and memory-bandwidth utilisation, which does where it streams weights and KV cache (decode)."""
        out = {}
        for name, timing in self.phases.items():
            flops = sum(k.cost.matrix_flops for k in timing.kernels)
            moved = sum(k.main_memory_bytes for k in timing.kernels)
            out[name] = {"mfu": mfu(flops, timing.total_s, 1, self.peak_flops_per_s),
                         "memory_bandwidth_utilisation": bandwidth_utilisation(moved, timing.total_s, 1,
                                                                               self.peak_memory_bytes_per_s)}
        return out

    def _figures(self) -> dict[str, Figure]:
        return {key: self.timed(value, phase) for key, (value, phase) in self._phase_times().items()}

    def _phase_times(self) -> dict[str, tuple[float, str]]:
        if "decode" in self.phases:
            return {"prefill_s": (self.phases["prefill"].total_s, "prefill"),
                    "decode_step_s": (self.phases["decode"].total_s, "decode")}
        return {"batch_latency_s": (self.phases["prefill"].total_s, "prefill")}

    def _json(self) -> dict[str, Any]:
        return {key: value for key, (value, _) in self._phase_times().items()} | {
            "utilisation_by_phase": self.phase_utilisation()}
