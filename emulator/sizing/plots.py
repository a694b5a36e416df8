"""PNG plots of a sizing report (matplotlib, Agg backend, no `Software` metadata: identical bytes per input).

roofline.png             the workload's kernels (best plan per device) on each device's roofline: colour per
                         device, marker per kernel family (a legend, not labels that overlap)
breakdown.png            step-time breakdown of the best plan per device (serving: p99 TTFT and decode time)
scaling.png              devices against time-to-train, per device (training)
pareto.png               cost and MW at the meter against time: the Pareto front, colour and marker per device
latency_throughput.png   p99 latency against throughput per device, per replica layout (serving)
Device k is drawn in colour C{k} with marker MARKERS[k] in every plot. Each figure's caption (returned, and
printed once under it by the report) states the provenance and error band of the predictions it plots; the PNG
holds only the plot.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from emulator.cluster import predict_training
from emulator.engine.calibration import efficiency_for
from emulator.engine.predict import predict_batch
from emulator.errors import EmulatorError
from emulator.scenario import Inference, Parallel, Scenario
from emulator.sizing.constraints import latency_name
from emulator.sizing.search import SearchResult, plan_of, training_scenario
from emulator.sizing.spec import Sizing
from emulator.stacks import stack_for, stack_of
from emulator.workloads.config import DLRMConfig

DPI = 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")


def _plt() -> Any:
    # matplotlib loads only when a report draws, and its Agg backend (no display) is chosen before pyplot loads.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "emulator", "font.size": 9})
    return plt


def _band(rows: list[dict[str, Any]]) -> str:
    provs = sorted({r["provenance"] for r in rows}) or ["spec"]
    band = max((r["error_band"] for r in rows), default=0.0)
    return f"provenance: {', '.join(provs)}; error band ±{band:.0%}"


def _save(plt: Any, fig: Any, folder: Path, name: str, caption: str) -> dict[str, str]:
    fig.savefig(folder / name, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return {"file": name, "title": name[:-4].replace("_", " "), "caption": caption}


def _log_axes(ax: Any, has_points: bool) -> None:
    """Log axes, or a note where no plan was evaluated (a log axis needs a positive point to place its ticks)."""
    if has_points:
        ax.set(xscale="log", yscale="log")
    else:
        ax.text(0.5, 0.5, "no evaluated plan", transform=ax.transAxes, ha="center", color="#666")


def _kernels(result: SearchResult, sz: Sizing, report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """family -> {time_s, flops, bytes} of the best plan's prediction per device."""
    out: dict[str, dict[str, Any]] = {}
    for name, row in report["per_device"].items():
        if row is None:
            continue
        cand = next(c for c in sz.candidates if c.device.name == name)
        if sz.goal == "train":
            pred = predict_training(training_scenario(sz, cand, plan_of(sz, row)), efficiency_for(cand.device))
            out[name] = {f: k.as_dict() for f, k in pred.kernels.items()}
        else:
            spec = sz.serve.spec  # type: ignore[union-attr]
            spec = dataclasses.replace(spec, engine=stack_for(spec.engine, "serving", cand.device.vendor))
            s = Scenario(path=sz.path, model=sz.model, device=cand.device, system=cand.system,
                         num_devices=row["plan"]["tp"], inference=Inference(
                             input_tokens=int(spec.input_tokens.expected),
                             output_tokens=int(spec.output_tokens.expected), batch_size=8, precision=spec.precision,
                             parallel=Parallel(tp=row["plan"]["tp"])))
            try:
                batch = predict_batch(s, engine=stack_of(spec, "serving"))  # as the serving model times it
                out[name] = {f: k.as_dict() for f, k in batch.kernels.items()}
            except EmulatorError:  # a device the one-batch view cannot time (its context, its formats) is left off
                continue
    return out


def roofline(plt: Any, result: SearchResult, sz: Sizing, report: dict[str, Any], folder: Path) -> dict[str, str]:
    kernels = _kernels(result, sz, report)
    fig, ax = plt.subplots(figsize=(8, 5.2))
    prec = sz.train.precision if sz.train else sz.serve.spec.precision  # type: ignore[union-attr]
    x = np.logspace(-1, 4, 200)
    families = sorted({f for per in kernels.values() for f in per})
    shapes = {f: MARKERS[k % len(MARKERS)] for k, f in enumerate(families)}
    for k, cand in enumerate(sz.candidates):
        d = cand.device
        color = f"C{k}"
        ax.plot(x, np.minimum(d.mfu_peak(prec), d.memory_bandwidth_bytes_per_s * x), color=color, label=d.name)
        for fam, f in sorted(kernels.get(d.name, {}).items()):
            if f.get("flops", 0) > 0 and f.get("bytes", 0) > 0 and f.get("time_s", 0) > 0:
                ax.scatter(f["flops"] / f["bytes"], f["flops"] / f["time_s"], color=color, marker=shapes[fam], s=28,
                           edgecolors="k", linewidths=0.4)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP/byte)", ylabel="FLOP/s",
           title="kernels of the best plan per device on each roofline")
    devices = ax.legend(title="device (roofline)", fontsize=7, title_fontsize=7, loc="upper left")
    ax.add_artist(devices)
    handles = [plt.Line2D([], [], ls="", marker=shapes[f], color="#888", markeredgecolor="k", markeredgewidth=0.4,
                          label=f) for f in families]
    if handles:
        ax.legend(handles=handles, title="kernel family", fontsize=7, title_fontsize=7, loc="lower right")
    return _save(plt, fig, folder, "roofline.png",
                 f"Kernel families of each device's best plan (achieved FLOP/s at their intensity) under the "
                 f"device's {prec} roofline; {_band(result.rows)}.")


def breakdown(plt: Any, result: SearchResult, sz: Sizing, report: dict[str, Any], folder: Path) -> dict[str, str]:
    rows = [r for r in report["per_device"].values() if r is not None]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(rows)))
    labels = [f"{r['device']} x{r['num_devices']}" for r in rows]
    if sz.goal == "train":
        parts = ("compute_s", "exposed_communication_s", "bubble_s", "optimizer_s")
        left = [0.0] * len(rows)
        for k, p in enumerate(parts):
            vals = [r["breakdown"][p] for r in rows]
            ax.barh(labels, vals, left=left, color=f"C{k}", label=p[:-2].replace("_", " "))
            left = [a + b for a, b in zip(left, vals, strict=True)]
        ax.set_xlabel("seconds per step")
        what = "Step time of each device's best plan by part"
    else:
        dlrm = isinstance(sz.model, DLRMConfig)
        ttft = [r["ttft_s"].get("p99", 0.0) if not dlrm else r["latency_s"].get("p99", 0.0)
                for r in rows]
        decode = [0.0 if dlrm else r["tpot_s"].get("p99", 0.0) * sz.serve.spec.output_tokens.expected  # type: ignore
                  for r in rows]
        ax.barh(labels, ttft, color="C0", label="p99 TTFT (recommender: p99 latency)")
        ax.barh(labels, decode, left=ttft, color="C1", label="p99 TPOT x output tokens")
        ax.set_xlabel("seconds")
        what = "Request latency of each device's best layout at its highest in-SLO rate"
    if rows:
        ax.legend(fontsize=7)
    fig.subplots_adjust(bottom=0.3 if len(rows) < 3 else 0.2, left=0.2)
    return _save(plt, fig, folder, "breakdown.png", f"{what}; {_band(rows)}.")


def scaling(plt: Any, result: SearchResult, sz: Sizing, report: dict[str, Any], folder: Path) -> dict[str, str]:
    fig, ax = plt.subplots(figsize=(8, 5))
    for k, cand in enumerate(sz.candidates):
        points = report["scaling"].get(cand.device.name, [])
        if points:
            ax.plot([p[0] for p in points], [p[1] / 86400 for p in points], "-", marker=MARKERS[k % len(MARKERS)],
                    color=f"C{k}", label=cand.device.name, ms=3)
    if sz.train and sz.train.deadline_days:
        ax.axhline(sz.train.deadline_days, color="k", ls="--", lw=0.8, label="deadline")
    _log_axes(ax, any(report["scaling"].values()))
    ax.set(xlabel="devices", ylabel="effective time-to-train (days)",
           title="scaling: the fastest plan at each device count")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _save(plt, fig, folder, "scaling.png", f"Fastest evaluated plan per device count (failures and "
                 f"checkpoints included); {_band(result.rows)}.")


def pareto(plt: Any, result: SearchResult, sz: Sizing, report: dict[str, Any], folder: Path) -> dict[str, str]:
    train = sz.goal == "train"
    tkey = "effective_time_to_train_s" if train else "latency_p99_s"
    scale, unit = (86400, "days") if train else (1e-3, "ms")
    fig, (cost_ax, mw_ax) = plt.subplots(1, 2, figsize=(10, 4.8))
    feasible = bool(result.feasible)
    cloud = [result.rows[i] for i in result.feasible] if feasible else result.rows
    front = report["pareto"]
    repeated = len({c.device.name for c in sz.candidates}) < len(sz.candidates)
    for k, cand in enumerate(sz.candidates):
        which = (cand.device.name, cand.system.name)
        mine = [r for r in cloud if (r["device"], r["system"]) == which]
        ours = [r for r in front if (r["device"], r["system"]) == which]
        name = f"{which[0]} in {which[1]}" if repeated else which[0]
        style = {"color": f"C{k}", "marker": MARKERS[k % len(MARKERS)]}
        for ax, key in ((cost_ax, "cost_usd"), (mw_ax, "facility_mw")):
            ax.scatter([r[tkey] / scale for r in mine], [r[key] for r in mine], s=6, alpha=0.18, linewidths=0,
                       **style)
            ax.scatter([r[tkey] / scale for r in ours], [r[key] for r in ours], s=30, edgecolors="k",
                       linewidths=0.5, label=f"{name} ({len(ours)} on the front)" if feasible
                       else f"{name} ({len(mine)} evaluated)", **style)
    limits = [(cost_ax, sz.constraints.budget_usd, "budget"), (mw_ax, sz.constraints.power_cap_mw, "power cap")]
    for ax, value, what in limits:
        if value is not None:
            ax.axhline(value, color="k", ls="--", lw=0.8, label=what)
    if train and sz.train and sz.train.deadline_days:
        for ax in (cost_ax, mw_ax):
            ax.axvline(sz.train.deadline_days, color="k", ls=":", lw=0.8, label="deadline")
    xlabel = f"{'time-to-train' if train else latency_name(result.rows[0]) if result.rows else 'p99 latency'} ({unit})"
    for ax in (cost_ax, mw_ax):
        _log_axes(ax, bool(cloud))
    cost_ax.set(xlabel=xlabel, ylabel="cost (USD)" + ("" if train else " per year"),
                title="cost against time")
    mw_ax.set(xlabel=xlabel, ylabel="MW at the meter", title="power against time")
    for ax in (cost_ax, mw_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    what = ("Every feasible plan (faint) and the Pareto front over time, cost and MW (outlined), one colour and "
            "marker per device" if feasible else "No plan meets every constraint: every evaluated plan, one colour "
                                                 "and marker per device, against the limits (dashed, dotted)")
    return _save(plt, fig, folder, "pareto.png", f"{what}; {_band(cloud)}.")


def latency_throughput(plt: Any, result: SearchResult, sz: Sizing, report: dict[str, Any],
                       folder: Path) -> dict[str, str]:
    fig, ax = plt.subplots(figsize=(8, 5))
    for k, cand in enumerate(sz.candidates):
        mine = sorted((r for r in result.rows if r["device"] == cand.device.name), key=lambda r: r["plan"]["tp"])
        if mine:
            ax.plot([r["throughput_per_device_per_s"] for r in mine], [r["latency_p99_s"] * 1e3 for r in mine], "-",
                    marker=MARKERS[k % len(MARKERS)], color=f"C{k}", label=cand.device.name)
            for r in mine:
                label = f"tp{r['plan']['tp']}" + (" dp-attn" if r["plan"].get("attention_dp") else "")
                ax.annotate(label, (r["throughput_per_device_per_s"], r["latency_p99_s"] * 1e3), fontsize=7)
    ax.set(xlabel="requests per second per device (highest rate in SLO)",
           ylabel=f"{latency_name(result.rows[0]) if result.rows else 'p99 latency'} (ms)",
           title="serving: latency against throughput per replica layout")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _save(plt, fig, folder, "latency_throughput.png", f"p99 TTFT (recommender: query latency) at the highest "
                 f"per-replica rate meeting the SLO; {_band(result.rows)}.")


def draw_all(result: SearchResult, sz: Sizing, report: dict[str, Any], folder: Path) -> list[dict[str, str]]:
    plt = _plt()
    figs = [roofline, breakdown] + ([scaling] if sz.goal == "train" else [latency_throughput]) + [pareto]
    return [f(plt, result, sz, report, folder) for f in figs]


__all__ = ["draw_all"]
