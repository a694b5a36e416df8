"""Search devices x counts x plans for a sizing target; prune early, evaluate with the cluster and serving models.

Training: for each candidate (device, system) every plan tp x pp x dp x microbatch x recompute x ZeRO is
enumerated (tp: powers of two within the scale-up domain; pp: divisors of the layer count; dp: divisors of the
global batch; sequence parallelism on whenever tp > 1), then pruned in order: over the device cap, failing
`check_plan` (divisibility), over the device's memory by the cluster model's memory formula. Survivors are
timed by the one training step `predict_training` uses (`cluster.step.training_step`, ZeRO-3 included): plans
that differ only in dp, ZeRO stage and batch share their traced rank program and stage times (cached), so each
plan adds only its micro-batch count, pipeline bubble and send/recv, data-parallel collectives (the network
model on its real group) and optimizer step. Time, power and cost are then numpy arrays over all plans of a
device.
Serving: each replica layout (tp) is simulated once at the highest rate that meets the SLO (`predict_serving`);
replicas scale linearly, so the count is ceil(target rate / rate per replica).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import emulator.sizing.economics as economics
from emulator.cluster import Plan, check_plan
from emulator.cluster.goodput import goodput
from emulator.cluster.network import Network
from emulator.cluster.shard import rank_program
from emulator.cluster.step import Overlap, training_steps
from emulator.cluster.training import memory_of, model_flops_per_microbatch
from emulator.engine.calibration import efficiency_for
from emulator.engine.prediction import mfu
from emulator.engine.stack import stack_table
from emulator.errors import EmulatorError
from emulator.scenario import Inference, Parallel, Scenario, Training
from emulator.serving import predict_serving
from emulator.serving.prediction import LatencyFloor
from emulator.sizing.pareto import pareto_mask
from emulator.sizing.spec import Candidate, Sizing, precision_of
from emulator.stacks import StackProfile, load_stack, runs_on, stack_for
from emulator.units import GiB, fmt_seconds
from emulator.workloads.config import DLRMConfig, TransformerConfig

DEFAULT_MAX_DEVICES = 65536
DEFAULT_MAX_TP = 16  # tensor parallelism past 16 ranks leaves GEMMs too thin to pay (Megatron-LM practice: tp <= 8)
DEFAULT_MIN_LAYERS_PER_STAGE = 4  # fewer layers per pipeline stage make the send/recv and bubble dominate
Progress = Callable[[str, int, int], None]


@dataclass(slots=True)
class SearchResult:
    """Evaluated candidates (plain rows), the Pareto set, the best per objective and rejections by reason."""

    goal: str
    rows: list[dict[str, Any]]  # every evaluated candidate, constraint flags included
    feasible: list[int]  # indices into rows meeting every constraint
    pareto: list[int]
    best: dict[str, int]  # objective -> row index
    rejected: dict[str, dict[str, Any]]  # reason -> {count, example}
    num_enumerated: int
    num_evaluated: int
    # (device, system) -> reason -> {count, example}: the same rejections, per candidate
    rejected_by_candidate: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)


def _reject(rejected: dict[str, dict[str, Any]], reason: str, example: str) -> None:
    slot = rejected.setdefault(reason, {"count": 0, "example": example})
    slot["count"] += 1


def _powers(limit: int) -> list[int]:
    return [2**i for i in range(int(math.log2(max(limit, 1))) + 1)]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def training_scenario(sz: Sizing, cand: Candidate, plan: Plan) -> Scenario:
    """The training scenario one plan of a sizing stands for (what `emulator predict` would read)."""
    tr = sz.train
    assert tr is not None
    par = Parallel(tp=plan.tp, pp=plan.pp, dp=plan.dp, microbatch_size=plan.microbatch_size,
                   sequence_parallel=plan.sequence_parallel, zero=plan.zero)
    return Scenario(path=sz.path, model=sz.model, device=cand.device, system=cand.system, num_devices=plan.num_devices,
                    training=Training(seq_len=tr.seq_len, global_batch_size=tr.global_batch_size,
                                      precision=precision_of(sz, cand), parallel=par, recompute=plan.recompute,
                                      total_tokens=tr.total_tokens, framework=tr.framework,
                                      framework_settings=tr.framework_settings))


def training_stack(sz: Sizing) -> StackProfile:
    """The sizing's training framework with the run's own settings over its items."""
    assert sz.train is not None
    return load_stack(sz.train.framework, "training", file=sz.path).with_settings(sz.train.framework_settings)


def enumerate_plans(sz: Sizing, cand: Candidate, rejected: dict[str, dict[str, Any]],
                    memory_cache: dict[Any, float]) -> tuple[int, list[tuple[Plan, float]]]:
    """(plans enumerated, [(plan, memory per device)] that pass the cap, divisibility and memory)."""
    model, tr, space = sz.model, sz.train, sz.search
    assert isinstance(model, TransformerConfig) and tr is not None
    cap = sz.constraints.max_devices or tr.max_devices or DEFAULT_MAX_DEVICES
    capacity = cand.device.memory_bytes
    domain = min(cand.system.scale_up.domain_size, DEFAULT_MAX_TP)
    tps = space.tp or [t for t in _powers(domain) if t <= model.num_heads]
    pps = space.pp or [p for p in _divisors(model.num_layers) if model.num_layers // p >= DEFAULT_MIN_LAYERS_PER_STAGE]
    dps = _divisors(tr.global_batch_size)
    counts = set(space.counts)
    precision = precision_of(sz, cand)
    selective = training_stack(sz).get("recompute.selective")  # what the stack's selective recompute keeps off memory
    kept: list[tuple[Plan, float]] = []
    n_enum = 0
    for tp in tps:
        for pp in pps:
            for mb in space.microbatch_size:
                for rec in space.recompute:
                    for zero in space.zero:
                        for dp in dps:
                            n_enum += 1
                            plan = Plan(tp=tp, pp=pp, dp=dp, microbatch_size=mb, sequence_parallel=tp > 1, zero=zero,
                                        recompute=rec, global_batch_size=tr.global_batch_size, seq_len=tr.seq_len)
                            n = plan.num_devices
                            if n > cap or (counts and n not in counts):
                                _reject(rejected, "device count", f"{n} devices (tp {tp} x pp {pp} x dp {dp}) is "
                                        f"over the cap of {cap} or outside search.counts")
                                continue
                            if zero > 0 and dp == 1:
                                _reject(rejected, "redundant", "ZeRO on dp 1 shards nothing (same as zero 0)")
                                continue
                            try:
                                check_plan(model, plan, n)
                            except EmulatorError as e:
                                _reject(rejected, "divisibility", str(e).split(". Fix")[0].split(": ", 1)[-1])
                                continue
                            key = (tp, pp, dp, mb, rec, zero, precision)
                            need = memory_cache.get(key)
                            if need is None:
                                need = memory_cache[key] = sum(memory_of(model, plan, precision, selective).values())
                            if need > capacity:
                                _reject(rejected, "memory", f"tp {tp} pp {pp} dp {dp} mb {mb} recompute {rec} zero "
                                        f"{zero}: needs {need / GiB:.0f} GiB, {cand.device.name} has "
                                        f"{capacity / GiB:.0f}")
                                continue
                            kept.append((plan, need))
    return n_enum, kept


def plan_of(sz: Sizing, row: dict[str, Any]) -> Plan:
    """The plan a training row was evaluated for."""
    assert sz.train is not None
    p = row["plan"]
    return Plan(tp=p["tp"], pp=p["pp"], dp=p["dp"], microbatch_size=p["microbatch_size"], recompute=p["recompute"],
                zero=p["zero"], sequence_parallel=p["sequence_parallel"], global_batch_size=sz.train.global_batch_size,
                seq_len=sz.train.seq_len)


def evaluate_training(sz: Sizing, cand: Candidate, plans: list[tuple[Plan, float]],
                      progress: Progress | None = None) -> list[dict[str, Any]]:
    """Rows of step time, throughput, MFU and utilisation for each plan, every one timed by the same step as
    `emulator predict` (`training_steps`, arrays over each group of plans sharing tp, pp, micro-batch and
    recompute, whose rank program and stage times are computed once; progress is reported per group)."""
    tr, model = sz.train, sz.model
    assert tr is not None and isinstance(model, TransformerConfig)
    stack = training_stack(sz)
    table = stack_table(efficiency_for(cand.device), stack, cand.device.family)
    net = Network.of(cand.system)
    precision = precision_of(sz, cand)
    peak = cand.device.mfu_peak(precision)
    overlap = Overlap.of(stack)
    tokens_per_step = float(tr.global_batch_size * tr.seq_len)
    groups: dict[tuple[Any, ...], list[tuple[Plan, float]]] = {}
    for plan, need in plans:
        groups.setdefault((plan.tp, plan.pp, plan.microbatch_size, plan.recompute), []).append((plan, need))
    rows: list[dict[str, Any]] = []
    for i, (_, members) in enumerate(sorted(groups.items())):
        if progress:
            progress(cand.device.name, i + 1, len(groups))
        flops_per_microbatch, _ = model_flops_per_microbatch(model, members[0][0].microbatch_size, tr.seq_len,
                                                             precision)
        # The group's plans differ only in dp and ZeRO stage: one rank program, their steps as arrays.
        group = [plan for plan, _ in members]
        prog = rank_program(model, group[0], precision, stack=stack)
        steps = training_steps(prog, group, net, cand.device, table, precision, overlap=overlap)
        step_s, util, band = steps.step_s.tolist(), steps.utilisation.tolist(), steps.error_band.tolist()
        compute = (steps.compute_s - steps.optimizer_s).tolist()
        exposed, bubble = steps.exposed_communication_s.tolist(), steps.bubble_s.tolist()
        optimizer = steps.optimizer_s.tolist()
        for j, (plan, need) in enumerate(members):
            flops = flops_per_microbatch * plan.num_microbatches * plan.dp
            rows.append({
                "device": cand.device.name, "system": cand.system.name, "num_devices": plan.num_devices,
                "plan": {"tp": plan.tp, "pp": plan.pp, "dp": plan.dp, "microbatch_size": plan.microbatch_size,
                         "recompute": plan.recompute, "zero": plan.zero, "sequence_parallel": plan.sequence_parallel,
                         "num_microbatches": plan.num_microbatches, "precision": precision},
                "step_time_s": step_s[j], "tokens_per_s": tokens_per_step / step_s[j],
                "mfu": mfu(flops, step_s[j], plan.num_devices, peak),
                "memory_per_device_bytes": need, "memory_capacity_bytes": cand.device.memory_bytes,
                "utilisation": util[j],
                "breakdown": {"compute_s": compute[j], "exposed_communication_s": exposed[j], "bubble_s": bubble[j],
                              "optimizer_s": optimizer[j]},
                "provenance": table.provenance, "error_band": band[j],
            })
    return rows


def finish_training(sz: Sizing, cand: Candidate, rows: list[dict[str, Any]]) -> None:
    """Add time-to-train (ideal and with failures), MW, MWh and cost to each row, vectorised over the rows."""
    tr = sz.train
    assert tr is not None
    if not rows:
        return
    n = np.array([r["num_devices"] for r in rows], dtype=float)
    ideal = tr.total_tokens / np.array([r["tokens_per_s"] for r in rows])
    params = float(sz.model.num_params())
    fraction = {k: goodput(params, int(k), 1.0).fraction for k in sorted(set(n.tolist()))}
    good = np.array([fraction[k] for k in n.tolist()])
    effective = ideal / good
    hours = effective / 3600
    econ = economics.rollup(economics.rates(cand.device, cand.system, sz.site, sz.pricing), n,
                            np.array([r["utilisation"] for r in rows]), hours)
    millions = tr.total_tokens / 1e6
    for i, r in enumerate(rows):
        r |= {"time_to_train_s": float(ideal[i]), "goodput": float(good[i]),
              "effective_time_to_train_s": float(effective[i]), "device_hours": float(n[i] * hours[i]),
              "device_w": float(econ["device_w"][i]), "nodes": int(econ["nodes"][i]),
              "it_mw": float(econ["it_mw"][i]), "facility_mw": float(econ["facility_mw"][i]),
              "energy_mwh": float(econ["mwh"][i]), "capex_usd": float(econ["capex_usd"][i]),
              "energy_cost_usd": float(econ["energy_usd"][i]), "cost_usd": float(econ["cost_usd"][i]),
              "cost_per_million_tokens_usd": float(econ["cost_usd"][i]) / millions,
              "energy_per_million_tokens_mwh": float(econ["mwh"][i]) / millions}


def search_serving(sz: Sizing, progress: Progress | None = None) -> tuple[list[dict[str, Any]], dict[str, Any],
                                                                          int]:
    """One simulation per (device, replica layout); replicas to carry the target rate; power and cost per hour."""
    target = sz.serve
    assert target is not None
    rows: list[dict[str, Any]] = []
    rejected: dict[str, dict[str, Any]] = {}
    n_enum = 0
    dlrm = isinstance(sz.model, DLRMConfig)
    cap = sz.constraints.max_devices or DEFAULT_MAX_DEVICES
    for ci, cand in enumerate(sz.candidates):
        engine = target.spec.engine
        runs = engine is None or runs_on(load_stack(engine, "serving"), cand.device.vendor)
        spec = dataclasses.replace(target.spec, precision=precision_of(sz, cand),
                                   engine=stack_for(engine, "serving", cand.device.vendor) if runs else engine)
        tps = [1] if dlrm else [t for t in _powers(cand.system.scale_up.domain_size)
                                if t <= getattr(sz.model, "num_heads", 1)][:4]
        for tp, dp_attention in _serving_layouts(sz.model, tps):
            n_enum += 1
            if progress:
                progress(cand.device.name, ci + 1, len(sz.candidates))
            ep = tp if dp_attention else 1
            layout = f"{cand.device.name} tp {tp}" + (" with attention DP" if dp_attention else "")
            if not runs:  # the named engine does not run on this vendor's chips
                _reject(rejected, "unsupported", f"{layout}: {engine} does not run on {cand.device.vendor}'s devices")
                continue
            inference = Inference(input_tokens=int(spec.input_tokens.expected),
                                  output_tokens=int(spec.output_tokens.expected), precision=spec.precision,
                                  kv_precision=spec.kv_precision, parallel=Parallel(tp=tp, ep=ep))
            scenario = Scenario(path=sz.path, model=sz.model, device=cand.device, system=cand.system,
                                num_devices=tp, inference=inference)
            try:
                pred = predict_serving(scenario, dataclasses.replace(spec, tp=tp, ep=ep, attention_dp=dp_attention),
                                       efficiency_for(cand.device))
            except EmulatorError as e:
                text = str(e).split(". Fix")[0].split(": ", 1)[-1]
                _reject(rejected, "memory" if "fit" in text or "memory" in text else "unsupported", f"{layout}: {text}")
                continue
            rate = pred.arrival_rate_per_s or 0.0
            if not pred.meets_slo or rate <= 0:
                _reject(rejected, "slo", f"{layout}: even a light load misses the SLO{_floor_text(pred.latency_floor)}")
                continue
            replicas = math.ceil(target.arrival_rate_per_s / rate - 1e-9)
            n = replicas * tp
            if n > cap:
                _reject(rejected, "device count", f"{layout}: {n} devices over the cap of {cap}")
                continue
            load = target.arrival_rate_per_s / (replicas * rate)
            util = min(pred.utilisation * load, 1.0)
            econ = economics.rollup(economics.rates(cand.device, cand.system, sz.site, sz.pricing),
                                    np.array([n]), np.array([util]), np.array([1.0]))
            per_hour = {k: float(v[0]) for k, v in econ.items()}
            year = economics.rollup(economics.rates(cand.device, cand.system, sz.site, sz.pricing),
                                    np.array([n]), np.array([util]), np.array([economics.HOURS_PER_YEAR]))
            queries_h = target.arrival_rate_per_s * 3600
            tokens_h = queries_h * spec.output_tokens.expected
            p99 = pred.latency_s.p99 if dlrm else pred.ttft_s.p99
            rows.append({
                "device": cand.device.name, "system": cand.system.name, "num_devices": n,
                "plan": {"tp": tp, "replicas": replicas, "precision": spec.precision,
                         **({"ep": ep, "attention_dp": True} if dp_attention else {})},
                "rate_per_replica_per_s": rate,
                "throughput_per_device_per_s": rate / tp, "utilisation": util, "latency_p99_s": p99,
                "ttft_s": pred.ttft_s.as_dict(), "tpot_s": pred.tpot_s.as_dict(), "latency_s": pred.latency_s.as_dict(),
                "device_w": per_hour["device_w"], "nodes": int(per_hour["nodes"]), "it_mw": per_hour["it_mw"],
                "facility_mw": per_hour["facility_mw"], "energy_mwh_per_hour": per_hour["mwh"],
                "capex_usd": per_hour["capex_usd"], "cost_usd_per_hour": per_hour["cost_usd"],
                "cost_usd": float(year["cost_usd"][0]), "energy_mwh": float(year["mwh"][0]),
                "cost_per_million_queries_usd": economics.per_million(per_hour["cost_usd"], queries_h),
                "cost_per_million_tokens_usd": None if dlrm else economics.per_million(per_hour["cost_usd"], tokens_h),
                "energy_per_million_queries_mwh": economics.per_million(per_hour["mwh"], queries_h),
                "provenance": pred.provenance, "error_band": pred.error_band,
            })
    return rows, rejected, n_enum


def _serving_layouts(model: Any, tps: list[int]) -> list[tuple[int, bool]]:
    """The replica layouts a serving search tries: (tp, attention data parallel). A MoE model's layouts of two or
    more ranks are also tried with attention data parallel over them and the experts spread over all of them
    (ep = tp: DeepSeek-style DP attention), where the experts divide."""
    out = [(tp, False) for tp in tps]
    if isinstance(model, TransformerConfig) and model.is_moe:
        out += [(tp, True) for tp in tps if tp > 1 and model.num_experts % tp == 0]
    return out


def _floor_text(floor: LatencyFloor | None) -> str:
    """The best p99s one request alone gets, which any SLO must allow (recommenders have no floor here)."""
    if floor is None:
        return ""
    return (f"; its floor, one request at a time, is p99 TTFT {fmt_seconds(floor.ttft_s)} and TPOT "
            f"{fmt_seconds(floor.tpot_s)}, so an SLO below these cannot be met with this device and tp")


__all__ = ["DEFAULT_MAX_DEVICES", "SearchResult", "enumerate_plans", "evaluate_training", "finish_training",
           "search_serving", "pareto_mask"]
