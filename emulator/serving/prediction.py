"""What serving predicts: `ServingResult` (throughput, latency percentiles, KV capacity, power, per scenario) and
`ServingPrediction`, the whole `emulator predict` answer for an inference scenario: the serving result beside the
one-device batch view it is built on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from emulator.engine.prediction import Figure, InferencePrediction
from emulator.errors import EmulatorError
from emulator.scenario import Scenario
from emulator.serving.records import RequestLog
from emulator.stats import Percentiles


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaLayout:
    """One replica's devices and formats."""

    tp: int
    pp: int
    ep: int
    precision: str
    kv_precision: str | None
    num_devices: int
    attention_dp: bool = False  # the tp ranks run attention data parallel (`serving.attention_dp`)

    def as_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "pp": self.pp, "ep": self.ep, "precision": self.precision,
                "kv_precision": self.kv_precision, "num_devices": self.num_devices, "attention_dp": self.attention_dp}


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosedLoopStats:
    """Figures of a closed loop (`inference.concurrency`): the steady state, its warm-up and drain waves excluded,
    or every request (`measured_requests: all`, `measured`).

    TPOT is each request's mean time per output token after its first, (end - first token) / (output - 1); ITL is
    the gap between consecutive tokens over all tokens (vLLM's `bench serve` definitions). tokens/s/user is
    1 / mean TPOT (NVIDIA AIConfigurator's 1000 / TPOT_ms); tokens/s/device is the deployment's output tokens per
    second over its devices.
    """

    concurrency: int  # requests in flight in the deployment
    ttft_mean_s: float
    tpot_mean_s: float
    itl_s: Percentiles
    itl_mean_s: float
    latency_mean_s: float
    tokens_per_s_per_device: float
    tokens_per_s_per_user: float
    num_measured_requests: int  # per simulated replica load, all loads together
    measured: str = "steady"  # which requests: "steady" or "all" (`inference.measured_requests`)

    def as_dict(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "ttft_mean_s": self.ttft_mean_s, "tpot_mean_s": self.tpot_mean_s,
                "itl_s": self.itl_s.as_dict(), "itl_mean_s": self.itl_mean_s, "latency_mean_s": self.latency_mean_s,
                "throughput_tokens_per_s_per_device": self.tokens_per_s_per_device,
                "throughput_tokens_per_s_per_user": self.tokens_per_s_per_user,
                "num_measured_requests": self.num_measured_requests, "measured_requests": self.measured}


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyFloor:
    """The best p99 latencies a replica layout gives: one request at a time (a closed loop at concurrency 1), so
    no load and no batch does better; reported when an SLO is missed."""

    ttft_s: float
    tpot_s: float
    latency_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"concurrency": 1, "ttft_p99_s": self.ttft_s, "tpot_p99_s": self.tpot_s,
                "latency_p99_s": self.latency_s}


@dataclass(frozen=True, slots=True, kw_only=True)
class ServingResult:
    """The serving model's answer for one scenario (Offline, Server or a closed loop; LLM, disaggregated or
    recommender)."""

    scenario: str  # offline | server | concurrency
    throughput_tokens_per_s: float  # output tokens, all devices (0 for recommenders)
    throughput_samples_per_s: float  # requests (queries) per second, all devices
    ttft_s: Percentiles
    tpot_s: Percentiles
    latency_s: Percentiles
    kv_cache_bytes: float  # all replicas
    max_batch: int
    replicas: int
    replica: ReplicaLayout
    power_w: float  # all devices
    energy_per_token_j: float | None
    energy_per_query_j: float | None
    provenance: str
    error_band: float
    utilisation: float  # busy share of the devices' time
    arrival_rate_per_s: float | None = None
    meets_slo: bool = True
    notes: tuple[str, ...] = ()
    memory_parts: Mapping[str, float] | None = None  # one device of a replica; None: the batch view's
    kv_cache_tokens_per_replica: int | None = None
    # The engine's limits as resolved for the device (an engine's per-device defaults, or the scenario's own)
    max_batch_tokens_per_replica: int | None = None
    max_sequences_per_replica: int | None = None
    num_preemptions: int | None = None
    kv_transfer_s: float | None = None  # disaggregated: the mean prompt-cache transfer
    prefill_replicas: int | None = None
    decode_replicas: int | None = None
    embedding_placement: tuple[str, ...] | None = None  # recommenders: the tier of each table
    lookup_s_per_pair: float | None = None
    pairs_per_query: float | None = None
    engine: str | None = None  # the serving stack the scenario names (inference.engine)
    cached_prompt_share: float | None = None  # a client's prompt pool: the prompt tokens the prefix cache served
    closed_loop: ClosedLoopStats | None = None  # scenario "concurrency"
    # The requests behind the percentiles and their iterations (`--requests`, `--trace`); not in `to_json`.
    log: RequestLog | None = field(default=None, compare=False, repr=False)
    latency_floor: LatencyFloor | None = None  # aggregated LLM replicas that miss their SLO

    _OPTIONAL: ClassVar[tuple[str, ...]] = ("kv_cache_tokens_per_replica", "max_batch_tokens_per_replica",
                                            "max_sequences_per_replica", "num_preemptions", "kv_transfer_s",
                                            "prefill_replicas", "decode_replicas", "embedding_placement",
                                            "lookup_s_per_pair", "pairs_per_query", "engine", "cached_prompt_share")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "serving_scenario": self.scenario,
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "throughput_samples_per_s": self.throughput_samples_per_s,
            "ttft_s": self.ttft_s.as_dict(), "tpot_s": self.tpot_s.as_dict(), "latency_s": self.latency_s.as_dict(),
            "kv_cache_bytes": self.kv_cache_bytes, "max_batch": self.max_batch, "replicas": self.replicas,
            "replica": self.replica.as_dict(), "power_w": self.power_w, "energy_per_token_j": self.energy_per_token_j,
            "provenance": self.provenance, "error_band": self.error_band,
            "arrival_rate_per_s": self.arrival_rate_per_s, "meets_slo": self.meets_slo, "notes": list(self.notes),
            "utilisation": self.utilisation,
        }
        if self.energy_per_query_j is not None:
            out["energy_per_query_j"] = self.energy_per_query_j
        for key in self._OPTIONAL:
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        if self.closed_loop is not None:
            out["closed_loop"] = self.closed_loop.as_dict()
        if self.latency_floor is not None:
            out["latency_floor"] = self.latency_floor.as_dict()
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ServingPrediction(InferencePrediction):
    """An inference scenario's prediction: the serving result (throughput, latencies, power at its rate) over
    the batch view of one device (`step_time_s`: one batch of `batch_size` requests end to end). Provenance and
    error band are the serving model's; memory is one device of a replica."""

    serving: ServingResult

    @property
    def tokens_per_s(self) -> float:
        return self.serving.throughput_tokens_per_s or self.serving.throughput_samples_per_s

    @property
    def model_flops_per_s_per_device(self) -> float:
        """Model FLOPs of the requests served per second (each request's prefill and decode), per device."""
        per_request = self.flops_per_step / self.batch_size
        return per_request * self.serving.throughput_samples_per_s / self.num_devices

    @property
    def mfu(self) -> float:
        return self.model_flops_per_s_per_device / self.peak_flops_per_s

    def _figures(self) -> dict[str, Figure]:
        s = self.serving
        serving = {key: Figure(value=value, provenance=s.provenance, error_band=s.error_band) for key, value in
                   (("throughput_tokens_per_s", s.throughput_tokens_per_s),
                    ("throughput_samples_per_s", s.throughput_samples_per_s), ("ttft_s", s.ttft_s.as_dict()),
                    ("tpot_s", s.tpot_s.as_dict()), ("latency_s", s.latency_s.as_dict()))}
        return InferencePrediction._figures(self) | serving

    def _json(self) -> dict[str, Any]:
        return InferencePrediction._json(self) | self.serving.to_json()


def num_replicas(scenario: Scenario, devices_per_replica: int, path: str) -> int:
    n = scenario.num_devices
    if n % devices_per_replica:
        counts = [k * devices_per_replica for k in (n // devices_per_replica, n // devices_per_replica + 1) if k]
        raise EmulatorError(
            f"num_devices {n} is not a multiple of the replica's tp x pp = {devices_per_replica}. Fix: set "
            "hardware.num_devices: " + " or ".join(f"{c} ({c // devices_per_replica} replica(s))" for c in counts)
            + ".", file=path, field="hardware.num_devices")
    return scenario.num_devices // devices_per_replica
