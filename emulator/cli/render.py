"""Tables for people: the one table rendering of every prediction, and of a run (measured beside predicted)."""

from __future__ import annotations

from typing import Any

from emulator.cli.layout import layout_lines
from emulator.cli.output import table
from emulator.cluster.training import NO_SINGLE_FIX, TrainingPrediction
from emulator.engine.prediction import InferencePrediction, Prediction
from emulator.scenario import ServingSpec, Slo
from emulator.serving import ServingPrediction, ServingResult
from emulator.stacks.accuracy import lines as accuracy_lines
from emulator.units import fmt_bytes, fmt_flops, fmt_seconds


def render_prediction(p: Prediction, spec: ServingSpec | None = None) -> str:
    """The human table of any prediction (training on a cluster, one device, serving); `spec`, the scenario's
    serving keys, lets a serving table say which batch, rate and SLO were given and which were searched."""
    low, high = p.step_time_range_s
    what = ""
    if isinstance(p, InferencePrediction):
        kernels = f" as {p.stack['name']} runs it" if p.stack and p.stack["name"] != "eager" else ""
        what = f"one batch of {p.batch_size} request(s) end to end on one device{kernels}; "
    lines = [
        f"{p.model} on {p.device} ({p.mode}, {p.num_devices} device(s){f', {p.system}' if p.system else ''})",
        f"  step time            {fmt_seconds(p.step_time_s)}  ({what}range {fmt_seconds(low)} .. "
        f"{fmt_seconds(high)}; provenance: {p.provenance}, ±{p.error_band * 100:.0f}%)",
        f"  {_throughput_label(p):21s}{p.tokens_per_s:,.0f}  "
        f"(all {p.num_devices} device(s); {p.tokens_per_s_per_device:,.0f} per device)",
    ]
    if isinstance(p, InferencePrediction):
        lines += _utilisation_lines(p)
    else:
        lines.append(f"  model FLOPs/step     {fmt_flops(p.flops_per_step)}  (MFU {p.mfu * 100:.1f}%)")
    lines += [f"  memory per device    {fmt_bytes(p.memory.total_bytes)} of {fmt_bytes(p.memory.capacity_bytes)}: "
              f"{'fits' if p.fits else 'DOES NOT FIT'}",
              f"  bound                {p.bound}"]
    if p.stack:
        lines.append(f"  software stack       {p.stack['name']} ({p.stack['versions']})")
    lines += [f"  {'' if i else 'validated':21s}{text}" for i, text in enumerate(accuracy_lines(p.validated))]
    if isinstance(p, TrainingPrediction):
        lines += _training_lines(p)
    if isinstance(p, InferencePrediction) and "decode" in p.phases:
        lines.append(f"  one batch            prefill {fmt_seconds(p.phases['prefill'].total_s)}, then decode steps "
                     f"of {fmt_seconds(p.phases['decode'].total_s)}")
    if isinstance(p, ServingPrediction):
        lines += serving_lines(p, spec)
    rows = [[fam, fmt_seconds(k.time_s), f"{k.time_s / p.step_time_s * 100:.1f}%" if p.step_time_s else "-",
             fmt_flops(k.flops), fmt_bytes(k.bytes), k.bound] for fam, k in p.kernels.items()]
    lines += ["", table(rows, ["family", "time", "share", "FLOPs", "bytes", "bound"])]
    if p.unknown_ops:
        lines.append("\nunknown ops (not costed): " + ", ".join(f"{k} x{v}" for k, v in p.unknown_ops.items()))
    if p.assumed:
        lines.append("assumed (Hugging Face defaults): " + ", ".join(f"{k} = {v}" for k, v in p.assumed.items()))
    lines += [f"note: {note}" for note in p.notes]
    lines.append(_memory_line(p))
    return "\n".join(lines)


def _throughput_label(p: Prediction) -> str:
    """What the throughput row counts: trained tokens, served output tokens, or a recommender's queries."""
    if not isinstance(p, ServingPrediction):
        return "tokens/s"
    return "output tokens/s" if p.serving.throughput_tokens_per_s else "queries/s"


def _utilisation_lines(p: InferencePrediction) -> list[str]:
    """Model FLOPs of the batch and the utilisation that means something per phase: MFU where the phase is compute
    bound (prefill), memory-bandwidth utilisation where it streams weights and KV cache (decode)."""
    lines = [f"  model FLOPs/batch    {fmt_flops(p.flops_per_step)}  (one batch of {p.batch_size} request(s); "
             f"counted from the trace)"]
    parts = []
    for name, u in p.phase_utilisation().items():
        label = "batch" if name == "prefill" and "decode" not in p.phases else name
        mfu, mbu = f"MFU {u['mfu'] * 100:.1f}%", f"memory bandwidth {u['memory_bandwidth_utilisation'] * 100:.1f}%"
        parts.append(f"{label} {mbu}, {mfu}" if name == "decode" else f"{label} {mfu}, {mbu}")
    lines.append(f"  utilisation          {'; '.join(parts)} (one device; of its dense matrix peak and main-memory "
                 "bandwidth)")
    return lines


def _memory_line(p: Prediction) -> str:
    """One device's memory by component; a serving replica's KV pool also in tokens, as the serving model sizes it."""
    s = p.serving if isinstance(p, ServingPrediction) else None
    parts = []
    for key, value in p.memory.parts.items():
        text = f"{key} {fmt_bytes(value)}"
        if key == "kv_cache" and s is not None and s.kv_cache_tokens_per_replica:
            text += (f" (the KV pool: {s.kv_cache_tokens_per_replica:,} tokens per replica of {s.replica.num_devices} "
                     "device(s))")
        parts.append(text)
    where = "one device of a replica" if s is not None and s.memory_parts is not None else "one device"
    return f"memory per device ({where}): " + ", ".join(parts)


def _host_wait(seconds: float) -> str:
    """The part of compute the devices wait on the host's dispatch outside CUDA graphs (`cluster.host`), if any."""
    return f" (of which waiting on the host {fmt_seconds(seconds)})" if seconds > 0 else ""


def _training_lines(p: TrainingPrediction) -> list[str]:
    s, plan = p.step, p.plan
    layout = ", ".join(f"{k} {getattr(plan, k)}" for k in ("tp", "pp", "dp", "cp", "ep") if getattr(plan, k) > 1)
    lines = [f"  plan                 {layout or 'one device'}; {plan.num_microbatches} micro-batch(es) of "
             f"{plan.microbatch_size}; ZeRO {plan.shard_stage}; recompute {plan.recompute}",
             f"  step breakdown       compute {fmt_seconds(s.compute_s)}{_host_wait(s.host_wait_s)}, exposed "
             f"communication {fmt_seconds(s.exposed_communication_s)}, pipeline bubble {fmt_seconds(s.bubble_s)}",
             f"  MFU without attn     {p.mfu_without_attention * 100:.1f}%;  HFU {p.hfu * 100:.1f}%"]
    ttt, effective = p.time_to_train_s, p.goodput.effective_time_s
    if ttt and effective:
        lines.append(f"  time to train        {fmt_seconds(ttt)} ({p.device_hours or 0:,.0f} device-hours); with "
                     f"failures and checkpoints {fmt_seconds(effective)} (goodput {p.goodput.fraction * 100:.1f}%)")
    if p.fit_advice is not None:
        over = p.fit_advice
        lines.append(f"  over memory by       {fmt_bytes(over.over_by_bytes)} ({over.over_by_fraction:+.0%})")
        lines += [f"  would fit with       {change} ({fmt_bytes(need)})" for change, need in over.fixes[:4]]
        if not over.fixes:
            lines.append(f"  would fit with       {NO_SINGLE_FIX}")
    return lines + layout_lines(p.layout, plan.pp)


def serving_lines(p: ServingPrediction, spec: ServingSpec | None = None) -> list[str]:
    """The serving result: layout, throughput, the batch and rate it ran at (and whether each was given or
    searched), latency percentiles (TTFT, TPOT, end to end), the SLO and power."""
    s = p.serving
    engine = f" on {s.engine}" if s.engine else ""
    dp = " (attention data parallel)" if s.replica.attention_dp else ""
    lines = [f"  {f'serving ({s.scenario})':21s}{s.replicas} replica(s) of tp={s.replica.tp}{dp}{engine}: "
             + (f"{s.throughput_tokens_per_s:,.0f} output tokens/s, " if s.throughput_tokens_per_s else "")
             + f"{s.throughput_samples_per_s:,.1f} samples/s (requests or queries; all {p.num_devices} device(s)), "
             f"max batch {s.max_batch}"]
    lines.append(f"  ran at               {_batch_and_rate(s, spec)}")
    c = s.closed_loop
    if c is not None:
        lines.append(f"  closed loop          {c.concurrency} in flight: {c.tokens_per_s_per_device:,.1f} tokens/s per "
                     f"device, {c.tokens_per_s_per_user:,.1f} tokens/s per user; {c.num_measured_requests} "
                     + ("requests, every one measured (first burst and drain too)" if c.measured == "all"
                        else "steady-state requests"))
    means = {"TTFT": c.ttft_mean_s, "TPOT": c.tpot_mean_s, "ITL": c.itl_mean_s, "latency": c.latency_mean_s} \
        if c is not None else {}
    rows = (("TTFT", "TTFT (first token)", s.ttft_s), ("TPOT", "TPOT (per token)", s.tpot_s),
            ("ITL", "ITL (token gaps)", c.itl_s if c is not None else None),
            ("latency", "end-to-end latency" if s.tpot_s.p99 else "query latency", s.latency_s))
    for key, label, q in rows:
        if q is not None and q.p99:
            mean = f", mean {fmt_seconds(means[key])}" if key in means else ""
            lines.append(f"  {label:20s} p50 {fmt_seconds(q.p50)}, p90 {fmt_seconds(q.p90)}, p99 {fmt_seconds(q.p99)}"
                         f"{mean}")
    lines.append(f"  SLO                  {slo_text(s, spec)}")
    floor = s.latency_floor
    if floor is not None:
        lines.append(f"  latency floor        p99 TTFT {fmt_seconds(floor.ttft_s)}, p99 TPOT "
                     f"{fmt_seconds(floor.tpot_s)} with one request at a time (concurrency 1): no load does better, "
                     "so an SLO below these cannot be met on this layout")
    energy, unit = (s.energy_per_token_j, "token") if s.energy_per_token_j else (s.energy_per_query_j, "query")
    lines.append(f"  power                {s.power_w:,.0f} W for all {p.num_devices} device(s) "
                 f"({s.power_w / p.num_devices:,.0f} W per device); {energy or 0:.3g} J per {unit}")
    return lines


def _batch_and_rate(s: ServingResult, spec: ServingSpec | None) -> str:
    """The batch each replica ran and the request rate of the whole deployment, each with where it came from."""
    given_batch = spec is not None and spec.batch_size is not None
    batch_source = "given: batch_size" if given_batch else "searched: the highest-throughput batch whose contexts fit"
    if s.scenario == "concurrency" and not given_batch:
        batch_source = "the replica's share of the requests in flight"
    batch = f"batch {s.max_batch} per replica ({batch_source})"
    rate = s.arrival_rate_per_s if s.arrival_rate_per_s is not None else s.throughput_samples_per_s
    if s.scenario == "offline":
        source = "what the replicas sustain with every request queued at t=0"
    elif s.scenario == "concurrency":
        source = f"what {s.closed_loop.concurrency if s.closed_loop else '?'} requests in flight sustain"
    elif spec is not None and spec.trace is not None:
        source = f"the trace {spec.trace}"
    elif spec is not None and spec.arrival_rate_per_s is not None:
        source = "given: arrival_rate_per_s"
    elif not s.meets_slo:
        source = "the lightest load the search tried; it misses the SLO"
    else:
        source = "searched: the highest Poisson rate meeting the SLO"
    return f"{batch}; rate {rate:,.3g} requests/s ({source})"


def slo_text(s: ServingResult, spec: ServingSpec | None) -> str:
    """Whether the run met its SLO, with each p99 against its bound; 'no SLO' where there is none to meet."""
    if s.scenario == "offline":
        return "no SLO (offline)"
    slo = spec.slo if spec is not None else Slo()
    checks = [(label, q.p99, bound) for label, q, bound in
              (("TTFT", s.ttft_s, slo.ttft_p99_s), ("TPOT", s.tpot_s, slo.tpot_p99_s),
               ("latency", s.latency_s, slo.latency_p99_s)) if bound is not None]
    if spec is not None and not checks:
        return "no SLO set"
    verdict = "met" if s.meets_slo else "MISSED"
    return verdict + "".join(f"{', ' if i else ': '}p99 {label} {fmt_seconds(value)} "
                             f"{'<=' if value <= bound else '>'} {fmt_seconds(bound)}"
                             for i, (label, value, bound) in enumerate(checks))


def render_run(out: dict[str, Any]) -> str:
    """The human table of a `RunResult.to_json()`: measured and predicted side by side."""
    m, p = out["measured"], out["predicted"]
    label = f"predicted ({p['provenance']}, ±{p['error_band'] * 100:.0f}%)" if p else "predicted"
    power = m["power"]
    if isinstance(power, str):
        power_text = power  # "not measured (reason)"
    else:
        power_text = (f"{power['mean_power_w'] or 0:.0f} W mean, {power['peak_power_w'] or 0:.0f} W peak, SM clock "
                      f"{power['mean_sm_clock_mhz'] or 0:.0f} MHz, max {power['max_temperature_c'] or 0:.0f} °C")
    rows = [["step time", f"{fmt_seconds(m['step_time_s'])} (p20 {fmt_seconds(m['p20_s'])}, p80 "
             f"{fmt_seconds(m['p80_s'])})", fmt_seconds(p["step_time_s"]) if p else "n/a"],
            ["tokens/s", f"{m['tokens_per_s']:,.1f}", f"{p['tokens_per_s']:,.1f}" if p else "n/a"],
            ["power", power_text, ""]]
    if m["energy_per_step_j"] is not None:
        rows.append(["energy", f"{m['energy_per_step_j']:.3g} J/step, {m['energy_per_token_j']:.3g} J/token", ""])
    for name, ph in out.get("phases", {}).items():
        rows.append([f"  {name}", fmt_seconds(ph["measured_s"]),
                     fmt_seconds(ph["predicted_s"]) if ph["predicted_s"] is not None else "n/a"])
    lines = [f"{out['model']} ({out['mode']}) on {out['device']}", "",
             table(rows, ["", "measured", label])]
    if out["error"] is not None:
        lines.append(f"\nerror (predicted / measured - 1): {out['error']:+.1%}")
    predicted = p["kernels"] if p else {}
    families = list(dict.fromkeys([*m["families"], *predicted]))
    if m["families"] or predicted:
        fam_rows = [[f, fmt_seconds(m["families"][f]) if f in m["families"] else "-",
                     fmt_seconds(predicted[f]["time_s"]) if f in predicted else "-"] for f in families]
        lines += ["", table(fam_rows, ["family", "measured", "predicted"]),
                  "(measured: the profiler's self time per step, which includes its own per-op overhead)"]
    lines += [f"note: {n}" for n in out["notes"]]
    return "\n".join(lines)
