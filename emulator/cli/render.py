"""Rendering for people: tables of predictions, runs and listings (JSON goes out as it is)."""

from __future__ import annotations

import json
from typing import Any

from emulator.units import fmt_bytes, fmt_flops, fmt_seconds


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def render_prediction(out: dict[str, Any]) -> str:
    lines = [
        f"{out['model']} on {out['device']} ({out['mode']}, {out['num_devices']} device(s))",
        f"  step time            {fmt_seconds(out['step_time_s'])}  (range {fmt_seconds(out['step_time_range_s'][0])}"
        f" .. {fmt_seconds(out['step_time_range_s'][1])}; provenance: {out['provenance']}, "
        f"±{out['error_band'] * 100:.0f}%)",
        f"  tokens/s             {out['tokens_per_s']:,.0f}  ({out['tokens_per_s_per_device']:,.0f} per device)",
        f"  model FLOPs/step     {fmt_flops(out['flops_per_step'])}  (MFU {out['mfu'] * 100:.1f}%)",
        f"  memory per device    {fmt_bytes(out['memory_per_device_bytes'])} of "
        f"{fmt_bytes(out['memory_capacity_bytes'])}: {'fits' if out['fits'] else 'DOES NOT FIT'}",
        f"  bound                {out['bound']}",
    ]
    if "breakdown" in out:
        b = out["breakdown"]
        lines.append(f"  step breakdown       compute {fmt_seconds(b['compute_s'])}, exposed communication "
                     f"{fmt_seconds(b['exposed_communication_s'])}, pipeline bubble {fmt_seconds(b['bubble_s'])}")
        lines.append(f"  MFU without attn     {out['mfu_without_attention'] * 100:.1f}%;  HFU {out['hfu'] * 100:.1f}%")
    if out.get("time_to_train_s"):
        g = out["goodput"]
        lines.append(f"  time to train        {fmt_seconds(out['time_to_train_s'])} ({out['device_hours']:,.0f} "
                     f"device-hours); with failures and checkpoints {fmt_seconds(out['effective_time_to_train_s'])} "
                     f"(goodput {g['goodput'] * 100:.1f}%)")
    for fix in (out.get("fit_advice") or {}).get("fixes", [])[:4]:
        lines.append(f"  would fit with       {fix['change']} ({fmt_bytes(fix['memory_per_device_bytes'])})")
    if "prefill_s" in out:
        lines.append(f"  one batch            prefill {fmt_seconds(out['prefill_s'])}, then decode steps of "
                     f"{fmt_seconds(out['decode_step_s'])}")
    if "serving_scenario" in out:
        lines.append(f"  serving ({out['serving_scenario']})    {out['replicas']} replica(s) of tp={out['replica']['tp']}: "
                     f"{out['throughput_tokens_per_s'] or 0:,.0f} output tokens/s, "
                     f"{out['throughput_samples_per_s']:,.1f} samples/s, max batch {out['max_batch']}")
        for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("latency_s", "latency")):
            if out.get(key):
                p = out[key]
                lines.append(f"  {label:20s} p50 {fmt_seconds(p['p50'])}, p90 {fmt_seconds(p['p90'])}, "
                             f"p99 {fmt_seconds(p['p99'])}")
        energy = out.get("energy_per_token_j") or out.get("energy_per_query_j")
        lines.append(f"  power                {out['power_w']:,.0f} W for {out['num_devices']} device(s); {energy or 0:.3g} J per "
                     f"{'token' if out.get('energy_per_token_j') else 'query'}; SLO met: {out.get('meets_slo')}")
    rows = [[fam, fmt_seconds(k["time_s"]), f"{k['time_s'] / out['step_time_s'] * 100:.1f}%" if out["step_time_s"] else "-",
             fmt_flops(k["flops"]), fmt_bytes(k["bytes"]), k["bound"]] for fam, k in out["kernels"].items()]
    lines += ["", table(rows, ["family", "time", "share", "FLOPs", "bytes", "bound"])]
    if out["unknown_ops"]:
        lines.append("\nunknown ops (not costed): " + ", ".join(f"{k} x{v}" for k, v in out["unknown_ops"].items()))
    for note in out.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("memory: " + ", ".join(f"{k} {fmt_bytes(v)}" for k, v in out["memory_breakdown"].items() if k != "total"))
    return "\n".join(lines)



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
