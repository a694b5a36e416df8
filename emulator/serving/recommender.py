"""Recommender (DLRM) serving: queries of many user-item pairs, batched per device, under a p99 latency bound.

Step time of a batch of S pairs on one device:
    step(S) = overhead + mlp(S) + S * sum_t lookups_t * dim * bytes / (bandwidth of t's tier * embedding eff.)
- mlp(S): the traced model's kernels except the embedding lookups, interpolated over a batch grid; the elementwise
  and copy kernels (bias, ReLU, the DCN cross's x0 * (.) + x) are fused into GEMM epilogues by inference engines
  (TensorRT), so they are left out.
- Embedding placement: tables are placed greedily by access frequency per byte (lookups per pair / table bytes)
  into the fastest tier with room: software-managed SRAM tiers (kind "sram", MTIA's 256 MB) first, then main
  memory (HBM or LPDDR). Tables stored at 1 byte per value for int8/fp8 serving, else 2.
Server: Poisson queries, round-robin to devices; an idle device takes every waiting query up to
`MAX_BATCH_PAIRS` pairs as one batch. Offline: batches of `MAX_BATCH_PAIRS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.predict import time_trace
from emulator.engine.roofline import error_band
from emulator.engine.trace import trace_workload
from emulator.errors import EmulatorError
from emulator.hardware import DeviceProfile
from emulator.precision import activation_dtype, embedding_table_bytes
from emulator.scenario import Scenario, ServingSpec
from emulator.serving.batcher import Batches, serve_queries
from emulator.serving.energy import device_power_w, energy_per_unit_j
from emulator.serving.prediction import ReplicaLayout, ServingResult
from emulator.serving.search import highest_rate
from emulator.stats import Percentiles
from emulator.units import fmt_bytes
from emulator.workloads.config import DLRMConfig

MAX_BATCH_PAIRS = 65536  # pairs per device batch (Offline, and the Server batcher's cap)
BATCH_GRID = (256, 1024, 4096, 16384, 65536)
QUERIES_PER_DEVICE = 3000
RUN_S = 2.0  # simulated seconds per device in the Server search
SEARCH_ITERATIONS = 12
ARRIVAL_CHUNK = 1 << 20  # Poisson gaps drawn at a time


@dataclass(frozen=True, slots=True)
class Placement:
    tier_of_table: tuple[str, ...]
    lookup_s_per_pair: float
    bytes_by_tier: dict[str, float]


def place_tables(model: DLRMConfig, device: DeviceProfile, table: EfficiencyTable, precision: str,
                 path: str | None = None) -> Placement:
    """Greedy placement by lookups per byte into SRAM tiers, then main memory."""
    width = embedding_table_bytes(precision)
    sizes = [rows * model.embedding_dim * width for rows in model.embedding_rows]
    tiers = [t for t in device.memory if t.kind == "sram" and not t.main] + [device.main_memory]
    room = {t.name: (t.capacity_bytes if not t.main else device.memory_bytes) for t in tiers}
    eff = table.get("embedding").memory
    order = sorted(range(model.num_tables), key=lambda i: -model.pooling_factors[i] / sizes[i])
    where = [""] * model.num_tables
    for i in order:
        tier = next((t for t in tiers if room[t.name] >= sizes[i]), None)
        if tier is None:
            raise EmulatorError(f"embedding table {i} ({sizes[i] / 1e9:.1f} GB) does not fit {device.name}'s memory "
                                "left after the other tables. Fix: use int8 tables or a device with more memory "
                                "(table sharding across devices is not modelled).", file=path,
                                field="inference.precision")
        room[tier.name] -= sizes[i]
        where[i] = tier.name
    rate = {t.name: (t.bandwidth_bytes_per_s or device.memory_bandwidth_bytes_per_s) * eff for t in tiers}
    per_pair = sum(model.pooling_factors[i] * model.embedding_dim * width / rate[where[i]]
                   for i in range(model.num_tables))
    used = {t.name: sum(sizes[i] for i in range(model.num_tables) if where[i] == t.name) for t in tiers}
    return Placement(tuple(where), per_pair, used)


def mlp_times(model: DLRMConfig, device: DeviceProfile, table: EfficiencyTable,
              precision: str) -> tuple[tuple[float, ...], float]:
    """(seconds of the non-embedding kernels at each batch of BATCH_GRID, their time-weighted error band)."""
    out, kernels = [], []
    for b in BATCH_GRID:
        trace = trace_workload(model, "prefill", b, 1, 0, activation_dtype(precision))
        timing = time_trace(trace, device, table, precision)
        kept = [k for k in timing.kernels if k.family not in ("embedding", "elementwise", "copy")]
        kernels += kept
        out.append(sum(k.time_s for k in kept))
    return tuple(out), error_band(kernels, table)


def batch_time(s: float, mlp: tuple[float, ...], placement: Placement, overhead_s: float) -> float:
    grid = BATCH_GRID
    if s >= grid[-1]:
        base = mlp[-1] + (mlp[-1] - mlp[-2]) / (grid[-1] - grid[-2]) * (s - grid[-1])
    else:
        base = float(np.interp(s, grid, mlp))
    return overhead_s + base + s * placement.lookup_s_per_pair


def batch_times(mlp: tuple[float, ...], placement: Placement, overhead_s: float, cap: int) -> list[float]:
    """`batch_time` of every batch of 0 .. cap pairs, vectorised (the same arithmetic, element by element)."""
    grid = BATCH_GRID
    s = np.arange(cap + 1, dtype=float)
    base = np.interp(s, grid, mlp)
    past = s >= grid[-1]
    base[past] = mlp[-1] + (mlp[-1] - mlp[-2]) / (grid[-1] - grid[-2]) * (s[past] - grid[-1])
    return (overhead_s + base + s * placement.lookup_s_per_pair).tolist()


def unit_arrivals(rng: np.random.Generator, n: int, keep: bool = True) -> np.ndarray | None:
    """Arrival times of n Poisson queries at one per second (`np.cumsum` of the exponential gaps, drawn in chunks so
    that all the gaps are never held at once: the same draws and sums); None with `keep` False, when only the
    generator's state after them is wanted."""
    out = np.empty(n) if keep else None
    carry = 0.0
    for start in range(0, n, ARRIVAL_CHUNK):
        gaps = rng.exponential(1.0, min(ARRIVAL_CHUNK, n - start))
        if out is not None:
            part = np.cumsum(gaps) if start == 0 else np.cumsum(np.concatenate(([carry], gaps)))[1:]
            out[start:start + len(part)] = part
            carry = float(part[-1])
    return out


def predict_recommender(scenario: Scenario, spec: ServingSpec, table: EfficiencyTable) -> ServingResult:
    """Offline or Server queries/s of a DLRM on `num_devices` devices (one replica each)."""
    model, device, devices = scenario.model, scenario.device, scenario.num_devices
    assert isinstance(model, DLRMConfig)  # predict_serving dispatches here only for recommenders
    path = spec.path or scenario.path
    precision = spec.precision
    placement = place_tables(model, device, table, precision, path)
    mlp, band = mlp_times(model, device, table, precision)
    # The LLM engines' iteration scheduler (`host.scheduler_overhead_s`, fitted on LLM serving) is no recommender's:
    # a DLRM harness (TensorRT, MLPerf's) queues the next batch while this one runs, so the only host time per batch
    # is what the scenario states.
    overhead = spec.scheduler_overhead_s or 0.0
    cap = spec.max_batch_tokens or MAX_BATCH_PAIRS

    def step(s: float) -> float:
        return batch_time(s, mlp, placement, overhead)

    rng = np.random.default_rng(spec.seed)
    offline_qps = cap / step(cap) / spec.samples_per_query.expected
    # Enough queries that a device runs for RUN_S seconds: overload shows as a growing queue, not a short run.
    n = spec.num_requests or max(QUERIES_PER_DEVICE, int(offline_qps * RUN_S))
    bound = spec.slo.latency_p99_s
    offline = spec.scenario == "offline" or (bound is None and spec.arrival_rate_per_s is None)
    fixed = spec.samples_per_query.kind == "fixed"  # every query the same pairs: one number, not n
    # The gaps are drawn before the pairs: Offline draws them only to leave the generator where the pairs start.
    unit = None if offline and fixed else unit_arrivals(rng, n, keep=not offline)
    pairs: np.ndarray | int = (int(spec.samples_per_query.sample(rng, 1)[0]) if fixed
                               else spec.samples_per_query.sample(rng, n))
    mean_pairs = float(pairs) if isinstance(pairs, int) else float(pairs.mean())
    steps = batch_times(mlp, placement, overhead, cap) if not offline else []
    first = n // 4  # the warm-up quarter is not measured

    arrival = np.empty(0 if offline else n)  # one buffer for every rate's arrival times

    def run(rate: float, judge: float | None = None) -> Batches | None:
        """The batches at a whole-system rate (`arrival` holds its arrival times); None as soon as the p99 latency
        must miss `judge`."""
        assert unit is not None
        np.divide(unit, rate / devices, out=arrival)  # this device's share of a round-robin stream
        return serve_queries(arrival, pairs, steps, step, cap, judge, first)

    def measured(batches: Batches | None) -> tuple[np.ndarray, float]:
        """(latencies after the warm-up quarter, device utilisation) of the run whose arrivals `arrival` holds."""
        assert batches is not None
        busy = batches.busy_s / (float(batches.finish_s.max()) - float(arrival.min()))
        return batches.latency_s(arrival, first), busy

    if offline:
        lat, util, qps, meets = np.full(1, step(cap)), 1.0, offline_qps * devices, True
    elif spec.arrival_rate_per_s is not None:
        qps = spec.arrival_rate_per_s
        lat, util = measured(run(qps))
        meets = bound is None or Percentiles.of(lat).p99 <= bound
    else:
        assert bound is not None

        def trial(rate: float) -> tuple[bool, Batches | None]:
            got = run(rate, bound)
            return got is not None and got.meets(arrival, first, bound), got

        low = offline_qps * devices / 1000
        found = highest_rate(low, offline_qps * devices * 1.2, trial, SEARCH_ITERATIONS)
        meets = found is not None
        qps = found[0] if found is not None else low
        if found is not None:  # its batches are kept; its arrival times are recomputed
            np.divide(unit, qps / devices, out=arrival)  # type: ignore[arg-type]
        got = found[1] if found is not None else run(low)
        unit = None  # the latencies below take the memory
        lat, util = measured(got)
    power = device_power_w(device, util, table) * devices
    tiers = ", ".join(f"{k} {fmt_bytes(v)}" for k, v in placement.bytes_by_tier.items())  # binary, as the memory line
    latency = Percentiles.of(lat)  # once: a Server run measures millions of queries (a query's first token is its end)
    return ServingResult(
        scenario=spec.scenario, throughput_tokens_per_s=0.0, throughput_samples_per_s=qps,
        ttft_s=latency, tpot_s=Percentiles.of(np.zeros(0)), latency_s=latency,
        kv_cache_bytes=0.0, max_batch=cap, replicas=devices,
        replica=ReplicaLayout(tp=1, pp=1, ep=1, precision=precision, kv_precision=None, num_devices=1),
        power_w=power, energy_per_token_j=None, energy_per_query_j=energy_per_unit_j(power, qps),
        provenance=table.provenance, error_band=band, utilisation=min(util, 1.0), arrival_rate_per_s=qps,
        meets_slo=meets,
        notes=(f"embedding tables by tier: {tiers}",
               f"a query holds {mean_pairs:.0f} user-item pairs on average; throughput counts queries "
               "(MLPerf samples)"),
        embedding_placement=placement.tier_of_table, lookup_s_per_pair=placement.lookup_s_per_pair,
        pairs_per_query=mean_pairs)


__all__ = ["Placement", "batch_time", "batch_times", "place_tables", "predict_recommender", "unit_arrivals"]
