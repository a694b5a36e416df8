"""`emulator compare A.yaml B.yaml [...] [--json]`: scenarios predicted as `emulator predict` does and printed side by
side, each number with its change relative to the first scenario.

Scenarios of one kind (all training, or all serving) are compared on every figure of that kind; a mix of training
and serving scenarios is compared on the figures both kinds have (device, stack, layout, throughput, MFU, memory,
power and cost), and the output says which figures were left out. Power and cost are the sizing report's
(`sizing.economics`: device power from utilisation, host and network power, the default site's PUE and electricity
price, capex amortised over its years), for the scenario's system (or its device's default system).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from emulator.cli.output import print_json, table
from emulator.cluster import TrainingPrediction
from emulator.engine.prediction import Prediction
from emulator.errors import EmulatorError
from emulator.hardware import default_system, load_site
from emulator.predict import predict_scenario
from emulator.scenario import Scenario, load_scenario
from emulator.serving import ServingPrediction
from emulator.sizing.economics import rates, rollup
from emulator.units import HOUR_S, fmt_bytes, fmt_seconds

ECONOMICS = ("power and cost: emulator/sizing/economics.py (device idle..TDP by utilisation, host and network W per "
             "node, PUE, capex amortised plus energy) at site 'default' with capex pricing; inputs and their sources: "
             "`emulator profiles show NAME`")


def _pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def _num(v: float) -> str:
    return f"{v:,.1f}" if abs(v) < 1e4 else f"{v:,.0f}"


# key -> (label, format, kinds that have it: "all", "training" or "serving")
FIGURES: dict[str, tuple[str, Callable[[Any], str], str]] = {
    "kind": ("kind", str, "all"),
    "model": ("model", str, "all"),
    "device": ("device (system)", str, "all"),
    "num_devices": ("devices", str, "all"),
    "stack": ("software stack", str, "all"),
    "layout": ("layout", str, "all"),
    "provenance": ("provenance", str, "all"),
    "step_time_s": ("step time", fmt_seconds, "training"),
    "exposed_communication_s": ("exposed communication", fmt_seconds, "training"),
    "bubble_s": ("pipeline bubble", fmt_seconds, "training"),
    "time_to_train_s": ("time to train", fmt_seconds, "training"),
    "requests_per_s": ("requests/s", _num, "serving"),
    "ttft_p50_s": ("TTFT p50", fmt_seconds, "serving"),
    "ttft_p99_s": ("TTFT p99", fmt_seconds, "serving"),
    "tpot_p50_s": ("TPOT p50", fmt_seconds, "serving"),
    "tpot_p99_s": ("TPOT p99", fmt_seconds, "serving"),
    "latency_p99_s": ("latency p99", fmt_seconds, "serving"),
    "tokens_per_s_per_user": ("tokens/s per user", _num, "serving"),
    "meets_slo": ("SLO met", str, "serving"),
    "tokens_per_s": ("tokens/s (trained | output)", _num, "all"),
    "tokens_per_s_per_device": ("tokens/s per device", _num, "all"),
    "mfu": ("MFU", _pct, "all"),
    "hfu": ("HFU", _pct, "training"),
    "utilisation": ("utilisation (compute share)", _pct, "all"),
    "memory_per_device_bytes": ("memory per device", fmt_bytes, "all"),
    "fits": ("fits in memory", str, "all"),
    "power_mw": ("power at the meter (MW)", lambda v: f"{v:.4g}", "all"),
    "cost_usd_per_hour": ("cost $/hour", lambda v: f"{v:,.2f}", "all"),
    "cost_usd_per_million_tokens": ("cost $ per million tokens", lambda v: f"{v:,.3f}", "all"),
}


def _layout(p: Prediction) -> str:
    if isinstance(p, TrainingPrediction):
        sizes = ", ".join(f"{k} {getattr(p.plan, k)}" for k in ("tp", "pp", "dp", "cp", "ep") if getattr(p.plan, k) > 1)
        return f"{sizes or 'one device'}; ZeRO {p.plan.shard_stage}; recompute {p.plan.recompute}"
    if isinstance(p, ServingPrediction):
        r = p.serving.replica
        return f"{p.serving.replicas} x (tp {r.tp}, pp {r.pp}, ep {r.ep}), {p.serving.scenario}"
    return "one device"


def _utilisation(p: Prediction) -> float | None:
    if isinstance(p, TrainingPrediction):
        return p.step.utilisation
    if isinstance(p, ServingPrediction):
        return p.serving.utilisation
    return None


def figures(s: Scenario, p: Prediction) -> dict[str, Any]:
    """Every figure of FIGURES this prediction has (None where it has not)."""
    serving = p.serving if isinstance(p, ServingPrediction) else None
    out: dict[str, Any] = dict.fromkeys(FIGURES)
    out |= {"kind": "serving" if serving else "training", "model": p.model,
            "device": f"{p.device} ({p.system or 'no system'})", "num_devices": p.num_devices,
            "stack": p.stack.get("name", "-") if p.stack else "-", "layout": _layout(p),
            "provenance": f"{p.provenance} ±{p.error_band * 100:.0f}%", "tokens_per_s": p.tokens_per_s,
            "tokens_per_s_per_device": p.tokens_per_s_per_device, "mfu": p.mfu, "utilisation": _utilisation(p),
            "memory_per_device_bytes": p.memory.total_bytes, "fits": p.fits}
    if isinstance(p, TrainingPrediction):
        out |= {"step_time_s": p.step_time_s, "exposed_communication_s": p.step.exposed_communication_s,
                "bubble_s": p.step.bubble_s, "time_to_train_s": p.time_to_train_s, "hfu": p.hfu}
    elif not serving:
        out["step_time_s"] = p.step_time_s
    if serving:
        out |= {"requests_per_s": serving.throughput_samples_per_s, "ttft_p50_s": serving.ttft_s.p50,
                "ttft_p99_s": serving.ttft_s.p99, "tpot_p50_s": serving.tpot_s.p50, "tpot_p99_s": serving.tpot_s.p99,
                "latency_p99_s": serving.latency_s.p99, "meets_slo": serving.meets_slo,
                "tokens_per_s_per_user": serving.closed_loop.tokens_per_s_per_user if serving.closed_loop else None}
    system = s.system or default_system(s.device)
    util = out["utilisation"]
    if system is not None and util is not None:
        roll = rollup(rates(s.device, system, load_site(), "capex"), np.array([p.num_devices]), np.array([util]),
                      np.array([1.0]))
        per_hour = float(roll["cost_usd"][0])
        tokens_per_hour = p.tokens_per_s * HOUR_S
        out |= {"power_mw": float(roll["facility_mw"][0]), "cost_usd_per_hour": per_hour,
                "cost_usd_per_million_tokens": per_hour / (tokens_per_hour / 1e6) if tokens_per_hour > 0 else None}
    return out


def compare(paths: list[str]) -> dict[str, Any]:
    """The `--json` of `emulator compare`: each scenario's figures, the keys compared, and the relative change of
    each numeric figure against the first scenario."""
    rows = []
    for path in paths:
        s = load_scenario(path)
        rows.append({"scenario": path, **figures(s, predict_scenario(s))})
    kinds = {r["kind"] for r in rows}
    keys = [k for k, (_, _, kind) in FIGURES.items() if kind == "all" or kinds == {kind}]
    left_out = [k for k in FIGURES if k not in keys]
    base = rows[0]
    deltas = [{k: (r[k] / base[k] - 1) for k in keys if _numeric(r[k]) and _numeric(base[k]) and base[k] != 0}
              for r in rows]
    return {"baseline": base["scenario"], "kinds": sorted(kinds), "compared": keys,
            "left_out": left_out if len(kinds) > 1 else [], "scenarios": [{k: r[k] for k in ["scenario", *keys]}
                                                                         for r in rows],
            "relative_to_baseline": deltas, "economics": ECONOMICS}


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def render(out: dict[str, Any]) -> str:
    header = ["", *(f"[{i}] {s['scenario']}" for i, s in enumerate(out["scenarios"]))]
    rows = []
    for key in out["compared"]:
        label, fmt, _ = FIGURES[key]
        cells = [label]
        for s, delta in zip(out["scenarios"], out["relative_to_baseline"], strict=True):
            v = s[key]
            text = "-" if v is None else fmt(v)
            if key in delta and s is not out["scenarios"][0]:
                text += f" ({delta[key]:+.1%})"
            cells.append(text)
        rows.append(cells)
    lines = [table(rows, header), "",
             f"changes in parentheses are relative to [0] {out['baseline']}; every figure as `emulator predict` gives "
             "it (provenance and error band per scenario above)", ECONOMICS]
    if out["left_out"]:
        lines.append(f"training and serving scenarios: compared on the figures both have; left out: "
                     f"{', '.join(FIGURES[k][0] for k in out['left_out'])}")
    return "\n".join(lines)


def command(args: argparse.Namespace) -> None:
    if len(args.scenarios) < 2:
        raise EmulatorError("compare needs at least two scenarios. Fix: emulator compare A.yaml B.yaml [...] (or "
                            "emulator predict A.yaml for one).", field="scenarios")
    out = compare(args.scenarios)
    if args.json:
        print_json(out)
    else:
        print(render(out))


__all__ = ["FIGURES", "compare", "command", "figures", "render"]
