"""A concurrency sweep: one serving scenario's closed loop (`inference.concurrency`) at several levels, the curve
of interactivity (tokens/s per user) against throughput (tokens/s per device) NVIDIA AIConfigurator plots.

Each level runs the scenario as written with `concurrency: N` (the `emulator predict` model, nothing else changes),
so the scenario must be an aggregated LLM deployment whose load mode can become a closed loop: Offline (the default)
or already `concurrency`. A Server rate, a trace, disaggregated pools or a recommender are errors naming the fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from emulator.engine.calibration import efficiency_for
from emulator.engine.efficiency import EfficiencyTable
from emulator.errors import EmulatorError
from emulator.scenario import Scenario
from emulator.scenario.closed_loop import MIN_CLOSED_LOOP_WAVES
from emulator.scenario.inference import MAX_CONCURRENCY
from emulator.serving import predict_serving
from emulator.serving.prediction import ReplicaLayout
from emulator.stats import Percentiles
from emulator.workloads.config import DLRMConfig

MAX_LEVELS = 64  # levels in one sweep (each is a closed-loop simulation)


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepPoint:
    """The steady state of one concurrency level."""

    concurrency: int
    ttft_s: Percentiles
    tpot_s: Percentiles
    latency_s: Percentiles
    tokens_per_s_per_user: float  # 1 / mean TPOT
    tokens_per_s_per_device: float  # output tokens/s over the deployment's devices
    throughput_tokens_per_s: float  # output tokens/s, all devices
    meets_slo: bool

    def as_dict(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "ttft_s": self.ttft_s.as_dict(), "tpot_s": self.tpot_s.as_dict(),
                "latency_s": self.latency_s.as_dict(), "tokens_per_s_per_user": self.tokens_per_s_per_user,
                "tokens_per_s_per_device": self.tokens_per_s_per_device,
                "throughput_tokens_per_s": self.throughput_tokens_per_s, "meets_slo": self.meets_slo}


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcurrencySweep:
    """A scenario's closed loop at each level, with the deployment it ran on and where the numbers came from."""

    scenario: str
    model: str
    device: str
    num_devices: int
    engine: str | None
    replicas: int
    replica: ReplicaLayout
    provenance: str
    error_band: float
    points: tuple[SweepPoint, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "model": self.model, "device": self.device,
                "num_devices": self.num_devices, "engine": self.engine, "replicas": self.replicas,
                "replica": self.replica.as_dict(), "provenance": self.provenance, "error_band": self.error_band,
                "points": [p.as_dict() for p in self.points]}


def check_sweepable(s: Scenario) -> None:
    """A clear error unless every level of a sweep can run this scenario as a closed loop."""
    spec = s.serving
    reason = None
    if s.inference is None or spec is None:
        reason = "it has no inference: section (a sweep runs serving scenarios)"
    elif isinstance(s.model, DLRMConfig):
        reason = "recommender queries are served Offline or Server, not in a closed loop of LLM requests"
    elif spec.disaggregation is not None:
        reason = "the closed loop is modelled for aggregated replicas only; delete inference.disaggregation"
    elif spec.trace is not None or spec.arrival_rate_per_s is not None or spec.scenario == "server":
        reason = ("its load is an open loop (a Server rate or a trace); delete inference.scenario, "
                  "arrival_rate_per_s and trace")
    if reason:
        raise EmulatorError(f"--sweep-concurrency cannot sweep this scenario: {reason}. Fix: sweep an aggregated "
                            "LLM serving scenario (Offline or concurrency).", file=s.path, field="inference")


def sweep_concurrency(s: Scenario, levels: tuple[int, ...], table: EfficiencyTable | None = None) -> ConcurrencySweep:
    """Predict the scenario's closed loop at each level (module docstring)."""
    check_sweepable(s)
    spec = s.serving
    assert spec is not None  # check_sweepable
    if not levels or len(levels) > MAX_LEVELS:
        raise EmulatorError(f"--sweep-concurrency has {len(levels)} level(s). Fix: give 1 to {MAX_LEVELS} levels.",
                            file=s.path, field="--sweep-concurrency")
    for n in levels:
        if not 1 <= n <= MAX_CONCURRENCY:
            raise EmulatorError(f"--sweep-concurrency level {n} is outside 1..{MAX_CONCURRENCY}. Fix: give requests "
                                "in flight as whole numbers in that range.", file=s.path, field="--sweep-concurrency")
        if spec.num_requests is not None and spec.num_requests < MIN_CLOSED_LOOP_WAVES * n:
            raise EmulatorError(
                f"num_requests {spec.num_requests} is fewer than {MIN_CLOSED_LOOP_WAVES} x concurrency {n}: a closed "
                "loop needs a warm-up wave, measured requests and a drain wave. Fix: raise num_requests to at least "
                f"{MIN_CLOSED_LOOP_WAVES * max(levels)}, or delete it.", file=s.path, field="inference.num_requests")
    table = table or efficiency_for(s.device)
    points = []
    result = None
    for n in levels:
        result = predict_serving(s, dataclasses.replace(spec, concurrency=n, scenario="concurrency"), table)
        loop = result.closed_loop
        assert loop is not None  # a concurrency run always has its closed-loop figures
        points.append(SweepPoint(concurrency=n, ttft_s=result.ttft_s, tpot_s=result.tpot_s,
                                 latency_s=result.latency_s, tokens_per_s_per_user=loop.tokens_per_s_per_user,
                                 tokens_per_s_per_device=loop.tokens_per_s_per_device,
                                 throughput_tokens_per_s=result.throughput_tokens_per_s, meets_slo=result.meets_slo))
    assert result is not None
    return ConcurrencySweep(scenario=s.path, model=s.model.name, device=s.device.name, num_devices=s.num_devices,
                            engine=result.engine, replicas=result.replicas, replica=result.replica,
                            provenance=result.provenance, error_band=result.error_band, points=tuple(points))


__all__ = ["MAX_LEVELS", "ConcurrencySweep", "SweepPoint", "check_sweepable", "sweep_concurrency"]
