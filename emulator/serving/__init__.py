"""Serving: replica cost model -> request simulation -> Offline/Server scenarios -> throughput, latency, energy.

```
replica.py        step time of a continuous-batching iteration + KV capacity, from traced kernels
simulator.py      discrete-event: arrivals, continuous batching, chunked prefill, preemption
search.py         Offline batch choice, Server highest rate within the SLO
disaggregation.py separate prefill and decode pools, KV moved over the fabric
recommender.py    DLRM queries under a p99 bound, embedding tables placed by tier
energy.py         power from utilisation, joules per token and per query
published.py      MLPerf Inference v4.1 cases: predicted vs published
```
`predict_serving(scenario, spec)` is the entry point; `ServingPrediction.to_json()` is what `predict --json` adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulator.calibration import efficiency_for
from emulator.efficiency import EfficiencyTable
from emulator.errors import EmulatorError
from emulator.serving.scenario import ServingSpec, parse_inference

if TYPE_CHECKING:
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


def predict_serving(scenario: Scenario, spec: ServingSpec, table: EfficiencyTable | None = None) -> ServingPrediction:
    """Predict a serving scenario: Offline or Server, LLM or recommender, aggregated or disaggregated."""
    from emulator.workloads.config import DLRMConfig

    table = table or efficiency_for(scenario.device)
    if isinstance(scenario.model, DLRMConfig):
        from emulator.serving.recommender import predict_recommender

        return predict_recommender(scenario, spec, table)
    if spec.disaggregation is not None:
        from emulator.serving.disaggregation import predict_disaggregated

        return predict_disaggregated(scenario, spec, table)
    return _predict_llm(scenario, spec, table)


def _predict_llm(scenario: Scenario, spec: ServingSpec, table: EfficiencyTable) -> ServingPrediction:
    from emulator.serving.energy import device_power_w, energy_per_unit_j
    from emulator.serving.replica import build_replica
    from emulator.serving.search import run_offline, run_server
    from emulator.serving.simulator import percentiles

    path = spec.path or scenario.path
    system = scenario.system
    if system is None and spec.tp * spec.pp > 1:
        from emulator.cluster.training import default_system

        system = default_system(scenario.device)
    replica = build_replica(scenario.model, scenario.device, system, table, precision=spec.precision,  # type: ignore[arg-type]
                            kv_precision=spec.kv, tp=spec.tp, pp=spec.pp, ep=spec.ep,
                            overhead_s=spec.scheduler_overhead_s, max_batch_tokens=spec.max_batch_tokens, path=path)
    replicas = num_replicas(scenario, replica.num_devices, path)
    notes = [f"{replicas} replica(s) of tp={spec.tp}, pp={spec.pp}; requests assigned round-robin",
             f"scheduler overhead {replica.step.overhead_s * 1e3:.2f} ms per iteration; token budget "
             f"{replica.max_batch_tokens}; KV cache {replica.kv_capacity_tokens} tokens per replica"]
    if spec.trace is not None:
        res, sc = _run_trace(replica, spec, replicas)
    else:
        offline = run_offline(replica, spec, replicas)
        sc = offline if spec.scenario == "offline" else run_server(replica, spec, replicas, offline)
        res = sc.result
    if res.num_preemptions:
        notes.append(f"{res.num_preemptions} preemption(s) (KV cache full; recomputed)")
    if spec.pp > 1:
        notes.append("pipeline stages are timed in sequence (no micro-batch overlap): throughput is a lower bound")
    util = min(res.utilisation, 1.0)
    power = device_power_w(scenario.device, util, table) * scenario.num_devices
    tokens = sc.throughput_tokens_per_s
    return ServingPrediction(
        scenario=sc.scenario, throughput_tokens_per_s=tokens, throughput_samples_per_s=sc.throughput_samples_per_s,
        ttft_s=percentiles(res.ttft_s), tpot_s=percentiles(res.tpot_s), latency_s=percentiles(res.latency_s),
        kv_cache_bytes=replica.kv_cache_bytes * replicas, max_batch=sc.max_batch, replicas=replicas,
        replica=replica.describe(), power_w=power, energy_per_token_j=energy_per_unit_j(power, tokens),
        energy_per_query_j=None, provenance=replica.provenance, error_band=replica.error_band,
        arrival_rate_per_s=sc.rate_per_s, meets_slo=sc.meets_slo, notes=tuple(notes),
        extra={"utilisation": util, "kv_cache_tokens_per_replica": replica.kv_capacity_tokens,
               "num_preemptions": res.num_preemptions})


def _run_trace(replica: Any, spec: ServingSpec, replicas: int) -> tuple[Any, Any]:
    from emulator.serving.scenario import read_trace
    from emulator.serving.search import ScenarioResult, choose_batch, meets
    from emulator.serving.simulator import Requests, simulate

    arrival, inp, out = read_trace(spec.trace or "", spec.path)
    batch = choose_batch(replica, spec)
    res = simulate(replica.step, replica.kv_capacity_tokens, Requests(arrival, inp, out), max_batch=batch,
                   max_batch_tokens=replica.max_batch_tokens, num_replicas=replicas, num_beams=spec.num_beams,
                   path=spec.path)
    return res, ScenarioResult("server", res, 1, batch, None, meets(res, spec.slo))


__all__ = ["ServingPrediction", "ServingSpec", "parse_inference", "predict_serving"]
