"""Aggregated LLM serving: replicas of one layout under continuous batching, Offline, Server, a closed loop
(`concurrency`) or a trace."""

from __future__ import annotations

from emulator.engine.efficiency import EfficiencyTable
from emulator.hardware import default_system
from emulator.scenario import Scenario, ServingSpec, read_trace
from emulator.serving.energy import device_power_w, energy_per_unit_j
from emulator.serving.prediction import LatencyFloor, ServingResult, num_replicas
from emulator.serving.records import RequestLog
from emulator.serving.replica import Replica, build_replica, prefix_note, with_shared_prefix
from emulator.serving.search import (
    ScenarioResult,
    choose_batch,
    latency_floor,
    meets,
    run_closed,
    run_offline,
    run_server,
)
from emulator.serving.simulator import Requests, SimResult, simulate
from emulator.stats import Percentiles

PIPELINE_NOTE = "pipeline stages are timed in sequence (no micro-batch overlap): throughput is a lower bound"


def llm_replica(scenario: Scenario, spec: ServingSpec, table: EfficiencyTable) -> Replica:
    """The replica an aggregated LLM spec runs: its layout, engine and settings on the scenario's device, with its
    shared prompt prefix cached."""
    system = scenario.system
    if system is None and spec.tp * spec.pp > 1:
        system = default_system(scenario.device)
    replica = build_replica(scenario.model, scenario.device, system, table, precision=spec.precision,  # type: ignore[arg-type]
                            kv_precision=spec.kv, tp=spec.tp, pp=spec.pp, ep=spec.ep,
                            overhead_s=spec.scheduler_overhead_s, max_batch_tokens=spec.max_batch_tokens,
                            settings=spec.engine_settings, speculative=spec.speculative,
                            path=spec.path or scenario.path, engine=spec.engine, attention_dp=spec.attention_dp)
    return with_shared_prefix(replica, spec.shared_prefix_tokens)


def predict_llm(scenario: Scenario, spec: ServingSpec, table: EfficiencyTable) -> ServingResult:
    path = spec.path or scenario.path
    replica = llm_replica(scenario, spec, table)
    replicas = num_replicas(scenario, replica.num_devices, path)
    notes = [f"{replicas} replica(s) of tp={spec.tp}, pp={spec.pp}; requests assigned round-robin",
             f"scheduler overhead {replica.step.overhead_s * 1e3:.2f} ms per iteration; token budget "
             f"{replica.max_batch_tokens}; KV cache {replica.kv_capacity_tokens} tokens per replica"]
    if replica.step.draft_tokens:
        notes.append(f"speculative decoding: {replica.step.draft_tokens} token(s) drafted per step, "
                     f"{replica.step.tokens_per_step:.2f} kept per verify step on average; a decode step is one "
                     "verify of every drafted token and the drafts (one layer and the head each), timed per token "
                     "kept; decodes sharing an iteration with prefill chunks gain one token; the drafter adds one "
                     "layer's weights and KV cache")
    if spec.shared_prefix_tokens:
        notes.append(prefix_note(replica, spec.shared_prefix_tokens))
    if spec.concurrency is not None:
        return _closed_loop(scenario, spec, table, replica, replicas, notes)
    if spec.trace is not None:
        res, sc = _run_trace(replica, spec, replicas)
        which = f"every request of the trace on all {replicas} replica(s)"
    else:
        offline = run_offline(replica, spec, replicas)
        sc = offline if spec.scenario == "offline" else run_server(replica, spec, replicas, offline)
        res = sc.result
        which = (f"replica 0 of {replicas}: its share of the requests" if sc.scenario == "offline" else
                 f"replica 0 of {replicas} at {sc.rate_per_s or 0:.4g} requests/s: its requests after the warm-up")
    if res.num_preemptions:
        notes.append(f"{res.num_preemptions} preemption(s) (KV cache full; recomputed)")
    if spec.prompt_pool is not None:
        notes.append(pool_note(replica, spec, res.cached_prompt_share))
    if spec.pp > 1:
        notes.append(PIPELINE_NOTE)
    util = min(res.utilisation, 1.0)
    power = device_power_w(scenario.device, util, table) * scenario.num_devices
    tokens = sc.throughput_tokens_per_s
    return ServingResult(
        scenario=sc.scenario, throughput_tokens_per_s=tokens, throughput_samples_per_s=sc.throughput_samples_per_s,
        ttft_s=Percentiles.of(res.ttft_s), tpot_s=Percentiles.of(res.tpot_s), latency_s=Percentiles.of(res.latency_s),
        kv_cache_bytes=replica.kv_cache_bytes * replicas, max_batch=sc.max_batch, replicas=replicas,
        replica=replica.describe(), power_w=power, energy_per_token_j=energy_per_unit_j(power, tokens),
        energy_per_query_j=None, provenance=replica.provenance, error_band=replica.error_band,
        arrival_rate_per_s=sc.rate_per_s, meets_slo=sc.meets_slo, notes=tuple(notes), utilisation=util,
        memory_parts=replica.memory_parts(), kv_cache_tokens_per_replica=replica.kv_capacity_tokens,
        max_batch_tokens_per_replica=replica.max_batch_tokens, max_sequences_per_replica=replica.max_sequences,
        num_preemptions=res.num_preemptions, engine=spec.engine, log=RequestLog.of(res, f"{sc.scenario}, {which}"),
        cached_prompt_share=res.cached_prompt_share if spec.prompt_pool is not None else None,
        latency_floor=_floor(replica, spec, sc.scenario, sc.meets_slo))


def pool_note(replica: Replica, spec: ServingSpec, share: float) -> str:
    """What a prediction says about the client's prompt pool: how much of the prompts the engine's cache served."""
    pool = spec.prompt_pool
    assert pool is not None
    drawn = f"prompts drawn from {pool.prompts} distinct ones ({pool.sampling}, after {pool.warmup_requests} warm-up " \
            "request(s))"
    if not replica.scheduling.prefix_caching:
        return f"prompt pool: {drawn}; the engine caches no prompt blocks here (defaults.prefix_caching false), so " \
               "each is prefilled whole"
    return f"prompt pool: {drawn}; the engine's prefix cache served {share:.1%} of the prompt tokens " \
           "(defaults.prefix_caching; an entry lasts until running requests need its room)"


def _floor(replica: Replica, spec: ServingSpec, scenario: str, met: bool) -> LatencyFloor | None:
    """The latency floor of a run that misses the SLO it has (Offline has none)."""
    slo = spec.slo
    has_slo = any(b is not None for b in (slo.ttft_p99_s, slo.tpot_p99_s, slo.latency_p99_s))
    return latency_floor(replica, spec) if has_slo and not met and scenario != "offline" else None


def _closed_loop(scenario: Scenario, spec: ServingSpec, table: EfficiencyTable, replica: Replica, replicas: int,
                 notes: list[str]) -> ServingResult:
    run = run_closed(replica, spec, replicas)
    which = ("request(s) measured, every one (first burst and drain included)" if spec.measured_requests == "all"
             else "steady-state request(s) measured (warm-up and drain waves excluded)")
    notes.append(f"closed loop: {spec.concurrency} request(s) in flight over {replicas} replica(s), a new one sent "
                 f"as each finishes; {run.stats.num_measured_requests} {which}")
    if run.num_preemptions:
        notes.append(f"{run.num_preemptions} preemption(s) (KV cache full; recomputed)")
    if spec.prompt_pool is not None:
        notes.append(pool_note(replica, spec, run.cached_prompt_share))
    if spec.input_tokens.kind == "fixed" and spec.output_tokens.kind == "fixed":
        notes.append("fixed input and output lengths keep the clients' requests in the pattern the first burst set "
                     "(waves, or one prompt per iteration), which a real run drifts between: its TTFT is the figure "
                     "that spreads most around this one (see validated)")
    if spec.pp > 1:
        notes.append(PIPELINE_NOTE)
    util = min(run.utilisation, 1.0)
    power = device_power_w(scenario.device, util, table) * scenario.num_devices
    tokens = run.throughput_tokens_per_s
    return ServingResult(
        scenario="concurrency", throughput_tokens_per_s=tokens, throughput_samples_per_s=run.throughput_samples_per_s,
        ttft_s=run.ttft_s, tpot_s=run.tpot_s, latency_s=run.latency_s,
        kv_cache_bytes=replica.kv_cache_bytes * replicas, max_batch=run.max_batch, replicas=replicas,
        replica=replica.describe(), power_w=power, energy_per_token_j=energy_per_unit_j(power, tokens),
        energy_per_query_j=None, provenance=replica.provenance, error_band=replica.error_band,
        meets_slo=run.meets_slo, notes=tuple(notes), utilisation=util, memory_parts=replica.memory_parts(),
        kv_cache_tokens_per_replica=replica.kv_capacity_tokens, num_preemptions=run.num_preemptions,
        max_batch_tokens_per_replica=replica.max_batch_tokens, max_sequences_per_replica=replica.max_sequences,
        engine=spec.engine, closed_loop=run.stats, log=run.log,
        cached_prompt_share=run.cached_prompt_share if spec.prompt_pool is not None else None,
        latency_floor=_floor(replica, spec, "concurrency", run.meets_slo))


def _run_trace(replica: Replica, spec: ServingSpec, replicas: int) -> tuple[SimResult, ScenarioResult]:
    arrival, inp, out = read_trace(spec.trace or "", spec.path)
    batch = choose_batch(replica, spec)
    res = simulate(replica.step, replica.kv_capacity_tokens, Requests(arrival, inp, out), max_batch=batch,
                   max_batch_tokens=replica.max_batch_tokens, num_replicas=replicas, num_beams=spec.num_beams,
                   path=spec.path,
                   scheduling=replica.scheduling)
    return res, ScenarioResult("server", res, 1, batch, None, meets(res, spec.slo))
