"""The report folder: report.json (canonical), report.md, report.html (self-contained) and PNG plots.

report.json is deterministic: sorted keys, floats rounded to 6 significant digits, no timestamps, the sizing
file named by its base name only, rows in a stable order, so one sizing file gives a byte-identical file.
Plots use matplotlib's Agg backend with the `Software` metadata removed; every figure's caption (in the
Markdown, the HTML and report.json) states the provenance and error band of the predictions it shows. The HTML
embeds the PNGs as base64 data URIs and loads nothing else, so it opens offline. A target no plan meets still
gets its report: what binds, by how much, and the smallest change that meets every constraint.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import emulator.sizing.economics as economics
from emulator.errors import EmulatorError
from emulator.sizing.candidates import answers
from emulator.sizing.constraints import BY_NAME, device_cap_field
from emulator.sizing.diagnose import Change, Diagnosis, change_text, describe
from emulator.sizing.pareto import distinct
from emulator.sizing.plots import draw_all
from emulator.sizing.render import render_html, render_markdown
from emulator.sizing.search import SearchResult
from emulator.sizing.select import OBJECTIVE_KEYS
from emulator.sizing.spec import Sizing
from emulator.stacks import stack_for
from emulator.stacks.accuracy import class_of, validated
from emulator.workloads.config import TransformerConfig

SCHEMA_VERSION = 1
TOP_N = 20


def _round(x: Any) -> Any:
    """Floats to 6 significant digits (recursively), so the JSON does not carry float noise."""
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return float(f"{x:.6g}")
    if isinstance(x, dict):
        return {str(k): _round(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v) for v in x]
    return x


def _validated(sz: Sizing) -> dict[str, Any]:
    """Per candidate device, how far the stack its plans run on was from published measurements on that device's
    family (`stacks.accuracy.validated`): training's framework, an LLM's serving engine (a recommender has none)."""
    if sz.train is not None:
        name, kind, mode = sz.train.framework, "training", "training"
    elif sz.serve is not None and isinstance(sz.model, TransformerConfig):
        name, kind, mode = sz.serve.spec.engine, "serving", "inference"
    else:
        return {}
    whose = class_of(sz.model.is_moe if isinstance(sz.model, TransformerConfig) else None)
    out: dict[str, Any] = {}
    for cand in sz.candidates:
        try:
            stack = stack_for(name, kind, cand.device.vendor, file=sz.path)
        except EmulatorError:  # the named engine does not run on this vendor's chips: the search rejected it
            continue
        out[cand.device.name] = validated(stack, cand.device.family, mode, whose)
    return out


def _time_key(goal: str) -> str:
    return "effective_time_to_train_s" if goal == "train" else "latency_p99_s"


def _change(sz: Sizing, c: Change | None) -> dict[str, Any] | None:
    if c is None:
        return None
    fields = {name: device_cap_field(sz) if name == "max_devices" else BY_NAME[name].field for name, _ in c.limits}
    return {"limits": dict(c.limits), "fields": fields, "relative": c.relative, "plan": c.row,
            "num_feasible": c.num_feasible, "beyond_cap": c.beyond_cap, "settings": change_text(sz, c),
            "text": describe(sz, c)}


def _infeasible(sz: Sizing, d: Diagnosis | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"message": d.message, "field": d.field, "notes": list(d.notes),
            "constraints": [{"constraint": s.constraint.name, "field": s.field, "unit": s.constraint.unit,
                             "limit": s.limit, "best": s.best, "best_meeting_others": s.best_meeting_others,
                             "binds": s.binds, "plan": s.row} for s in d.shortfalls],
            "smallest_change": _change(sz, d.smallest),
            "alternatives": [_change(sz, c) for c in d.alternatives]}


def build_report(result: SearchResult, sz: Sizing, diagnosis: Diagnosis | None = None) -> dict[str, Any]:
    """The canonical report as plain data (what report.json holds); `diagnosis` when no plan is feasible."""
    rows, tkey = result.rows, _time_key(sz.goal)
    okey = OBJECTIVE_KEYS[sz.objective]
    okey = tkey if okey == "time" else okey
    ranked = sorted(result.feasible, key=lambda i: (rows[i][okey], rows[i][tkey], rows[i]["cost_usd"]))
    rec = rows[result.best[sz.objective]] if result.best else None
    per_device: dict[str, Any] = {}
    scaling: dict[str, list[list[float]]] = {}
    for cand in sz.candidates:
        name = cand.device.name
        mine = [i for i in ranked if rows[i]["device"] == name]
        every = sorted((i for i, r in enumerate(rows) if r["device"] == name), key=lambda i: rows[i][tkey])
        per_device[name] = rows[mine[0]] | {"feasible": True} if mine else (
            rows[every[0]] | {"feasible": False} if every else None)
        best_at: dict[int, float] = {}
        for i in every:
            best_at.setdefault(rows[i]["num_devices"], rows[i][tkey])
        scaling[name] = [[n, best_at[n]] for n in sorted(best_at)]
    target: dict[str, Any] = {}
    if sz.train:
        target = {"total_tokens": sz.train.total_tokens, "deadline_days": sz.train.deadline_days,
                  "max_devices": sz.train.max_devices, "seq_len": sz.train.seq_len,
                  "global_batch_size": sz.train.global_batch_size, "precision": sz.train.precision}
    elif sz.serve:
        s = sz.serve.spec
        target = {"arrival_rate_per_s": sz.serve.arrival_rate_per_s, "input_tokens": s.input_tokens.expected,
                  "output_tokens": s.output_tokens.expected, "precision": s.precision,
                  "slo": {k: getattr(s.slo, k) for k in ("ttft_p99_s", "tpot_p99_s", "latency_p99_s")}}
    c = sz.constraints
    pareto = distinct([rows[i] for i in result.pareto], (tkey, "cost_usd", "facility_mw"))
    report = {
        "schema_version": SCHEMA_VERSION,
        "sizing": {"file": os.path.basename(sz.path), "goal": sz.goal, "model": sz.model_name,
                   "objective": sz.objective, "pricing": sz.pricing, "site": sz.site.name, "target": target,
                   "constraints": {"max_devices": c.max_devices, "power_cap_mw": c.power_cap_mw,
                                   "budget_usd": c.budget_usd},
                   "candidates": [{"device": x.device.name, "system": x.system.name} for x in sz.candidates]},
        "search": {"enumerated": result.num_enumerated, "evaluated": result.num_evaluated,
                   "feasible": len(result.feasible), "pareto": len(result.pareto), "pareto_points": len(pareto),
                   "rejected": {k: dict(v) for k, v in sorted(result.rejected.items())}},
        "recommended": rec,
        "validated": _validated(sz),
        "best": {k: rows[i] for k, i in sorted(result.best.items())},
        "candidates": answers(result, sz, ranked, okey, rec),
        "infeasible": _infeasible(sz, diagnosis),
        "pareto": pareto,
        "top": [rows[i] for i in ranked[:TOP_N]],
        "per_device": per_device,
        "scaling": scaling,
        "economics_inputs": {x.device.name: economics.inputs(x.device, x.system, sz.site, sz.pricing)
                             for x in sz.candidates},
        "conventions": {
            "time": ("effective time-to-train: ideal tokens / tokens per s, divided by the goodput of failures, "
                     "checkpoints and restarts" if sz.goal == "train" else
                     "p99 TTFT (LLM) or p99 query latency (recommender) at the highest per-replica rate in the SLO"),
            "power": economics.__doc__.strip().splitlines()[0],
            "capex": "upfront purchase: devices x device capex + nodes x node capex excluding devices "
                     "(capex_usd); with pricing capex, cost_usd carries only its amortised share",
            "cost": ("capex amortised over the site's years for the run's hours, plus energy at the site's USD/kWh"
                     if sz.pricing == "capex" else "rental USD per device-hour (energy included)")
                    + ("" if sz.goal == "train" else "; serving cost_usd is one year of service"),
            "error_band": "fractional half-width of the time predictions (provenance spec: the documented "
                          "uncertainty of the default efficiencies)",
            "validated": "per candidate device: the end-to-end errors (predicted / measured - 1) of the stack its "
                         "plans run on, against published measurements of that device family "
                         "(stack_profiles/fits/validated.json, emulator/stacks/accuracy.py)",
            "pareto": "plans with the same device, count, time, cost and MW (to 6 digits) are one point; "
                      "`equivalent` counts them and lists the plan fields that vary",
        },
    }
    return _round(report)


def canonical_json(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n"


def write_report(result: SearchResult, sz: Sizing, out_dir: str | os.PathLike[str],
                 diagnosis: Diagnosis | None = None) -> dict[str, Any]:
    """Write report.json, report.md, report.html and the PNG plots into `out_dir`; return the report. Pass the
    `diagnosis` of an `Infeasible` error to report a target no plan meets."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    report = build_report(result, sz, diagnosis)
    report["figures"] = draw_all(result, sz, report, folder)
    (folder / "report.json").write_text(canonical_json(report))
    (folder / "report.md").write_text(render_markdown(report))
    (folder / "report.html").write_text(render_html(report, folder))
    return report


__all__ = ["SCHEMA_VERSION", "build_report", "canonical_json", "write_report"]
