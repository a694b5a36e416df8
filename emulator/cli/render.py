"""Tables for people: the one table rendering of every prediction, and of a run (measured beside predicted)."""

from __future__ import annotations

from typing import Any

from emulator.cli.layout import layout_lines
from emulator.cli.output import table
from emulator.cluster.training import NO_SINGLE_FIX, TrainingPrediction
from emulator.engine.prediction import InferencePrediction, Prediction
from emulator.serving import ServingPrediction
from emulator.units import fmt_bytes, fmt_flops, fmt_seconds


def render_prediction(p: Prediction) -> str:
    """The human table of any prediction (training on a cluster, one device, serving)."""
    low, high = p.step_time_range_s
    lines = [
        f"{p.model} on {p.device} ({p.mode}, {p.num_devices} device(s){f', {p.system}' if p.system else ''})",
        f"  step time            {fmt_seconds(p.step_time_s)}  (range {fmt_seconds(low)} .. {fmt_seconds(high)}; "
        f"provenance: {p.provenance}, ±{p.error_band * 100:.0f}%)",
        f"  tokens/s             {p.tokens_per_s:,.0f}  ({p.tokens_per_s_per_device:,.0f} per device)",
        f"  model FLOPs/step     {fmt_flops(p.flops_per_step)}  (MFU {p.mfu * 100:.1f}%)",
        f"  memory per device    {fmt_bytes(p.memory.total_bytes)} of {fmt_bytes(p.memory.capacity_bytes)}: "
        f"{'fits' if p.fits else 'DOES NOT FIT'}",
        f"  bound                {p.bound}",
    ]
    if p.stack:
        lines.append(f"  software stack       {p.stack['name']} ({p.stack['versions']})")
    if isinstance(p, TrainingPrediction):
        lines += _training_lines(p)
    if isinstance(p, InferencePrediction) and "decode" in p.phases:
        lines.append(f"  one batch            prefill {fmt_seconds(p.phases['prefill'].total_s)}, then decode steps "
                     f"of {fmt_seconds(p.phases['decode'].total_s)}")
    if isinstance(p, ServingPrediction):
        lines += _serving_lines(p)
    rows = [[fam, fmt_seconds(k.time_s), f"{k.time_s / p.step_time_s * 100:.1f}%" if p.step_time_s else "-",
             fmt_flops(k.flops), fmt_bytes(k.bytes), k.bound] for fam, k in p.kernels.items()]
    lines += ["", table(rows, ["family", "time", "share", "FLOPs", "bytes", "bound"])]
    if p.unknown_ops:
        lines.append("\nunknown ops (not costed): " + ", ".join(f"{k} x{v}" for k, v in p.unknown_ops.items()))
    if p.assumed:
        lines.append("assumed (Hugging Face defaults): " + ", ".join(f"{k} = {v}" for k, v in p.assumed.items()))
    lines += [f"note: {note}" for note in p.notes]
    lines.append("memory: " + ", ".join(f"{k} {fmt_bytes(v)}" for k, v in p.memory.parts.items()))
    return "\n".join(lines)


def _training_lines(p: TrainingPrediction) -> list[str]:
    s, plan = p.step, p.plan
    layout = ", ".join(f"{k} {getattr(plan, k)}" for k in ("tp", "pp", "dp", "cp", "ep") if getattr(plan, k) > 1)
    lines = [f"  plan                 {layout or 'one device'}; {plan.num_microbatches} micro-batch(es) of "
             f"{plan.microbatch_size}; ZeRO {plan.shard_stage}; recompute {plan.recompute}",
             f"  step breakdown       compute {fmt_seconds(s.compute_s)}, exposed communication "
             f"{fmt_seconds(s.exposed_communication_s)}, pipeline bubble {fmt_seconds(s.bubble_s)}",
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


def _serving_lines(p: ServingPrediction) -> list[str]:
    s = p.serving
    engine = f" on {s.engine}" if s.engine else ""
    lines = [f"  serving ({s.scenario})    {s.replicas} replica(s) of tp={s.replica.tp}{engine}: "
             f"{s.throughput_tokens_per_s:,.0f} output tokens/s, {s.throughput_samples_per_s:,.1f} samples/s, "
             f"max batch {s.max_batch}"]
    c = s.closed_loop
    if c is not None:
        lines.append(f"  closed loop          {c.concurrency} in flight: {c.tokens_per_s_per_device:,.1f} tokens/s per "
                     f"device, {c.tokens_per_s_per_user:,.1f} tokens/s per user; {c.num_measured_requests} "
                     "steady-state requests")
    means = {"TTFT": c.ttft_mean_s, "TPOT": c.tpot_mean_s, "ITL": c.itl_mean_s, "latency": c.latency_mean_s} \
        if c is not None else {}
    rows = (("TTFT", s.ttft_s), ("TPOT", s.tpot_s), ("ITL", c.itl_s if c is not None else None),
            ("latency", s.latency_s))
    for label, q in rows:
        if q is not None and q.p99:
            mean = f", mean {fmt_seconds(means[label])}" if label in means else ""
            lines.append(f"  {label:20s} p50 {fmt_seconds(q.p50)}, p90 {fmt_seconds(q.p90)}, p99 {fmt_seconds(q.p99)}"
                         f"{mean}")
    energy, unit = (s.energy_per_token_j, "token") if s.energy_per_token_j else (s.energy_per_query_j, "query")
    lines.append(f"  power                {s.power_w:,.0f} W for {p.num_devices} device(s); {energy or 0:.3g} J per "
                 f"{unit}; SLO met: {s.meets_slo}")
    return lines


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
