"""What serving predicts for a scenario: `ServingPrediction`, and how devices split into replicas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emulator.errors import EmulatorError
from emulator.scenario import Scenario


@dataclass(frozen=True, slots=True, kw_only=True)
class ServingPrediction:
    """What serving adds to `emulator predict`; latencies are {p50, p90, p99} in seconds."""

    scenario: str
    throughput_tokens_per_s: float
    throughput_samples_per_s: float
    ttft_s: dict[str, float]
    tpot_s: dict[str, float]
    latency_s: dict[str, float]
    kv_cache_bytes: float
    max_batch: int
    replicas: int
    replica: dict[str, Any]
    power_w: float
    energy_per_token_j: float | None
    energy_per_query_j: float | None
    provenance: str
    error_band: float
    arrival_rate_per_s: float | None = None
    meets_slo: bool = True
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "serving_scenario": self.scenario,
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "throughput_samples_per_s": self.throughput_samples_per_s,
            "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "latency_s": self.latency_s,
            "kv_cache_bytes": self.kv_cache_bytes, "max_batch": self.max_batch, "replicas": self.replicas,
            "replica": self.replica, "power_w": self.power_w, "energy_per_token_j": self.energy_per_token_j,
            "provenance": self.provenance, "error_band": self.error_band,
            "arrival_rate_per_s": self.arrival_rate_per_s, "meets_slo": self.meets_slo, "notes": list(self.notes),
        }
        if self.energy_per_query_j is not None:
            out["energy_per_query_j"] = self.energy_per_query_j
        out.update(self.extra)
        return out


def num_replicas(scenario: Scenario, devices_per_replica: int, path: str) -> int:
    if scenario.num_devices % devices_per_replica:
        raise EmulatorError(
            f"num_devices {scenario.num_devices} is not a multiple of the replica's tp x pp = {devices_per_replica}. "
            "Fix: make hardware.num_devices a multiple of it.", file=path, field="hardware.num_devices")
    return scenario.num_devices // devices_per_replica
