"""Prefill/decode disaggregation: separate prefill and decode pools with the KV cache moved over the fabric.

Requests arrive at the prefill pool, which runs their prompts (chunked prefill, continuous batching) and produces
the first token: TTFT is decided there. Each prompt's KV cache (input tokens x the model's KV bytes per token at
the cache precision) then crosses the system's links: the scale-up domain when both pools fit in one, else the
NICs of the prefill replica's devices; time = bytes / (per-device link bandwidth x devices per replica) + one link
latency. The decode pool admits the request at that moment with its prompt already cached (no prefill runs
there) and generates the remaining tokens; TPOT and the end of each request are decided there. Both pools use
the same replica layout and the same simulator as aggregated serving. The pools' runs keep no iteration log: the
result is assembled from both, with no shared timeline.
"""

from __future__ import annotations

import numpy as np

from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.memory import kv_bytes_per_token
from emulator.errors import EmulatorError
from emulator.hardware import default_system
from emulator.scenario import Scenario, ServingSpec
from emulator.serving.energy import device_power_w, energy_per_unit_j
from emulator.serving.prediction import ServingResult
from emulator.serving.replica import Replica, build_replica, prefix_note, with_shared_prefix
from emulator.serving.search import WARMUP_FRACTION, choose_batch, highest_rate, meets
from emulator.serving.simulator import Requests, SimResult, make_requests, simulate
from emulator.stats import Percentiles
from emulator.workloads.config import TransformerConfig


def kv_transfer_s(scenario: Scenario, replica: Replica, total_devices: int, input_tokens: np.ndarray,
                  kv_precision: str) -> np.ndarray:
    """Seconds to move each request's prompt cache from its prefill replica to a decode replica."""
    system = scenario.system
    per_token = kv_bytes_per_token(replica.model, kv_precision)
    if system is None:
        link, latency = scenario.device.links.host_bytes_per_s, 0.0
    elif total_devices <= system.scale_up.domain_size and system.scale_up.bandwidth_bytes_per_s:
        link, latency = system.scale_up.bandwidth_bytes_per_s, system.scale_up.latency_s
    else:
        nic_share = system.scale_out.nic_bandwidth_bytes_per_s * system.scale_out.nics_per_node
        link = nic_share / system.devices_per_node / system.scale_out.oversubscription
        latency = system.scale_out.latency_s
    return input_tokens * per_token / (link * replica.num_devices) + latency


def predict_disaggregated(scenario: Scenario, spec: ServingSpec, table: EfficiencyTable) -> ServingResult:
    """Separate prefill and decode pools of one replica layout, Offline or Server (see the module docstring)."""
    path = spec.path or scenario.path
    d, model = spec.disaggregation, scenario.model
    assert d is not None and isinstance(model, TransformerConfig)  # predict_serving dispatches only these here
    system = scenario.system
    if system is None:
        system = default_system(scenario.device)
    replica = build_replica(model, scenario.device, system, table, precision=spec.precision,
                            kv_precision=spec.kv, tp=spec.tp, pp=spec.pp, ep=spec.ep,
                            overhead_s=spec.scheduler_overhead_s, max_batch_tokens=spec.max_batch_tokens,
                            settings=spec.engine_settings, speculative=spec.speculative, path=path,
                            engine=spec.engine, attention_dp=spec.attention_dp)
    devices = (d.prefill_replicas + d.decode_replicas) * replica.num_devices
    if devices > scenario.num_devices:
        raise EmulatorError(
            f"{d.prefill_replicas} prefill and {d.decode_replicas} decode replicas of {replica.num_devices} device(s) "
            f"need {devices} devices, but hardware.num_devices is {scenario.num_devices}. Fix: raise num_devices to "
            f"{devices} or use fewer replicas.", file=path, field="inference.disaggregation")
    prefilling = with_shared_prefix(replica, spec.shared_prefix_tokens)  # the decode pool receives it all
    batch = spec.batch_size or choose_batch(replica, spec)
    n = spec.num_requests or max(600, 6 * batch) * max(d.prefill_replicas, d.decode_replicas)
    unit = make_requests(spec.input_tokens, spec.output_tokens, n, 1.0, spec.seed)
    ones = np.ones_like(unit.output_tokens)

    def prefill_pool(rate: float | None) -> SimResult:
        arrival = np.zeros(n) if rate is None else unit.arrival_s / rate
        return simulate(replica.step, replica.kv_capacity_tokens, Requests(arrival, unit.input_tokens, ones),
                        max_batch=batch, max_batch_tokens=replica.max_batch_tokens,
                        num_replicas=d.prefill_replicas, path=path,
                        scheduling=prefilling.scheduling, log=False)

    def run(rate: float | None, pre: SimResult | None = None) -> tuple[SimResult, SimResult, np.ndarray]:
        pre = pre or prefill_pool(rate)
        ready = pre.first_token_s + kv_transfer_s(scenario, replica, devices, unit.input_tokens, spec.kv)
        order = np.argsort(ready, kind="stable")
        dec = simulate(replica.step, replica.kv_capacity_tokens,
                       Requests(ready[order], unit.input_tokens[order], unit.output_tokens[order]),
                       max_batch=batch, max_batch_tokens=replica.max_batch_tokens,
                       num_replicas=d.decode_replicas, path=path, prefilled=True,
                       scheduling=replica.scheduling, log=False)
        finish = np.empty(n)
        finish[order] = dec.finish_s
        return pre, dec, finish

    def combined(rate: float | None, pre: SimResult | None = None) -> tuple[SimResult, float]:
        pre, dec, finish = run(rate, pre)
        res = SimResult(pre.arrival_s, pre.first_token_s, finish, unit.input_tokens, unit.output_tokens,
                        pre.busy_s + dec.busy_s, float(finish.max()), d.prefill_replicas + d.decode_replicas,
                        pre.num_steps + dec.num_steps, pre.num_preemptions + dec.num_preemptions,
                        max(pre.max_concurrency, dec.max_concurrency))
        return res, res.throughput_samples_per_s

    offline, capacity = combined(None)
    rate: float | None = None
    res, ok = offline, True
    if spec.scenario == "server":
        if spec.arrival_rate_per_s is not None:
            rate = spec.arrival_rate_per_s
            res = combined(rate)[0].steady(WARMUP_FRACTION)
            ok = meets(res, spec.slo)
        else:  # the highest stable rate meeting the SLO
            def trial(rate: float) -> tuple[bool, SimResult | None]:
                pre = prefill_pool(rate)
                bound = spec.slo.ttft_p99_s
                if bound is not None and Percentiles.of(pre.steady(WARMUP_FRACTION).ttft_s).p99 > bound:
                    return False, None  # TTFT is decided in the prefill pool: the decode pool cannot save it
                steady = combined(rate, pre)[0].steady(WARMUP_FRACTION)
                return meets(steady, spec.slo), steady

            found = highest_rate(capacity / 64, capacity, trial)
            if found is None:
                rate = capacity / 64
                res, ok = combined(rate)[0].steady(WARMUP_FRACTION), False
            else:
                rate, steady = found
                assert steady is not None  # a passing trial keeps its run
                res = steady
    samples = rate if rate is not None else res.throughput_samples_per_s
    tokens = samples * float(res.output_tokens.mean())
    util = min(res.utilisation, 1.0)
    power = device_power_w(scenario.device, util, table) * scenario.num_devices
    transfer = kv_transfer_s(scenario, replica, devices, np.array([float(res.input_tokens.mean())]), spec.kv)[0]
    notes = (f"disaggregated: {d.prefill_replicas} prefill and {d.decode_replicas} decode replica(s) of "
             f"tp={spec.tp}, pp={spec.pp}; mean prompt-cache transfer {transfer * 1e3:.2f} ms",
             f"KV cache {replica.kv_capacity_tokens} tokens per replica; batch {batch}",
             *([prefix_note(prefilling, spec.shared_prefix_tokens) +
                " in the prefill pool; the decode pool receives every prompt's whole cache"]
               if spec.shared_prefix_tokens else []))
    return ServingResult(
        scenario=spec.scenario, throughput_tokens_per_s=tokens, throughput_samples_per_s=samples,
        ttft_s=Percentiles.of(res.ttft_s), tpot_s=Percentiles.of(res.tpot_s), latency_s=Percentiles.of(res.latency_s),
        kv_cache_bytes=replica.kv_cache_bytes * (d.prefill_replicas + d.decode_replicas), max_batch=batch,
        replicas=d.prefill_replicas + d.decode_replicas, replica=replica.describe(), power_w=power,
        energy_per_token_j=energy_per_unit_j(power, tokens), energy_per_query_j=None,
        provenance=replica.provenance, error_band=replica.error_band, arrival_rate_per_s=rate, meets_slo=ok,
        notes=notes, utilisation=util, memory_parts=replica.memory_parts(),
        kv_cache_tokens_per_replica=replica.kv_capacity_tokens, num_preemptions=res.num_preemptions,
        max_batch_tokens_per_replica=replica.max_batch_tokens, max_sequences_per_replica=replica.max_sequences,
        kv_transfer_s=transfer, prefill_replicas=d.prefill_replicas, decode_replicas=d.decode_replicas,
        engine=spec.engine)


__all__ = ["kv_transfer_s", "predict_disaggregated"]
