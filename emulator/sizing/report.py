"""The report folder: report.json (canonical), report.md, report.html (self-contained) and PNG plots.

report.json is deterministic: sorted keys, floats rounded to 6 significant digits, no timestamps, the sizing
file named by its base name only, rows in a stable order, so one sizing file gives a byte-identical file.
Plots use matplotlib's Agg backend with the `Software` metadata removed; every figure is captioned with the
provenance and error band of the predictions it shows. The HTML embeds the PNGs as base64 data URIs and loads
nothing else, so it opens offline.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any

import emulator.sizing.economics as economics
from emulator.sizing.plots import draw_all
from emulator.sizing.search import SearchResult
from emulator.sizing.select import OBJECTIVE_KEYS
from emulator.sizing.spec import Sizing

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


def _time_key(goal: str) -> str:
    return "effective_time_to_train_s" if goal == "train" else "latency_p99_s"


def build_report(result: SearchResult, sz: Sizing) -> dict[str, Any]:
    """The canonical report as plain data (what report.json holds)."""
    rows, tkey = result.rows, _time_key(sz.goal)
    okey = OBJECTIVE_KEYS[sz.objective]
    okey = tkey if okey == "time" else okey
    ranked = sorted(result.feasible, key=lambda i: (rows[i][okey], rows[i][tkey], rows[i]["cost_usd"]))
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
    report = {
        "schema_version": SCHEMA_VERSION,
        "sizing": {"file": os.path.basename(sz.path), "goal": sz.goal, "model": sz.model_name,
                   "objective": sz.objective, "pricing": sz.pricing, "site": sz.site.name, "target": target,
                   "constraints": {"max_devices": c.max_devices, "power_cap_mw": c.power_cap_mw,
                                   "budget_usd": c.budget_usd},
                   "candidates": [{"device": x.device.name, "system": x.system.name} for x in sz.candidates]},
        "search": {"enumerated": result.num_enumerated, "evaluated": result.num_evaluated,
                   "feasible": len(result.feasible), "pareto": len(result.pareto),
                   "rejected": {k: dict(v) for k, v in sorted(result.rejected.items())}},
        "recommended": rows[result.best[sz.objective]],
        "best": {k: rows[i] for k, i in sorted(result.best.items())},
        "pareto": [rows[i] for i in result.pareto],
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
            "cost": ("capex amortised over the site's years for the run's hours, plus energy at the site's USD/kWh"
                     if sz.pricing == "capex" else "rental USD per device-hour (energy included)")
                    + ("" if sz.goal == "train" else "; serving cost_usd is one year of service"),
            "error_band": "fractional half-width of the time predictions (provenance spec: the documented "
                          "uncertainty of the default efficiencies)",
        },
    }
    return _round(report)


def canonical_json(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n"


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s / 86400:.1f} d" if s >= 86400 else f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _plan(row: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in row["plan"].items() if k != "sequence_parallel")


def _table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    train = report["sizing"]["goal"] == "train"
    head = ["objective", "device", "devices", "plan", "time-to-train" if train else "p99 latency", "MW",
            "cost (USD)", "MWh"]
    body = []
    for obj, r in report["best"].items():
        t = r["effective_time_to_train_s"] if train else r["latency_p99_s"]
        body.append([obj, r["device"], str(r["num_devices"]), _plan(r), _fmt_time(t), f"{r['facility_mw']:.3f}",
                     f"{r['cost_usd']:,.0f}", f"{r['energy_mwh']:,.1f}"])
    return head, body


def _md_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
    return "\n".join(lines)


def render_markdown(report: dict[str, Any], figures: list[dict[str, str]]) -> str:
    s, rec, search = report["sizing"], report["recommended"], report["search"]
    train = s["goal"] == "train"
    out = [f"# Sizing report: {s['goal']} {s['model']} ({s['file']})", "",
           f"Target: {json.dumps(s['target'], sort_keys=True)}; constraints: "
           f"{json.dumps(s['constraints'], sort_keys=True)}; objective: **{s['objective']}**; pricing: {s['pricing']}; "
           f"site: {s['site']}.", "",
           f"**Recommended** ({s['objective']}): {rec['device']} x {rec['num_devices']} ({_plan(rec)}), "
           + (f"time-to-train {_fmt_time(rec['effective_time_to_train_s'])} (MFU {rec['mfu']:.1%}), "
              if train else f"p99 latency {_fmt_time(rec['latency_p99_s'])}, ")
           + f"{rec['facility_mw']:.3f} MW at the meter, {rec['energy_mwh']:,.1f} MWh, {rec['cost_usd']:,.0f} USD "
           f"(provenance {rec['provenance']}, error band ±{rec['error_band']:.0%}).", "",
           "## Best per objective", "", _md_table(*_table_rows(report)), "",
           f"## Search\n\n{search['enumerated']:,} plans enumerated, {search['evaluated']:,} evaluated, "
           f"{search['feasible']:,} feasible, {search['pareto']} on the Pareto front (time, cost, MW).", "",
           _md_table(["rejected because", "count", "example"],
                     [[k, f"{v['count']:,}", v["example"]] for k, v in search["rejected"].items()]), "",
           "## Pareto front", "",
           _md_table(["device", "devices", "plan", "time", "MW", "cost (USD)"],
                     [[r["device"], str(r["num_devices"]), _plan(r),
                       _fmt_time(r["effective_time_to_train_s"] if train else r["latency_p99_s"]),
                       f"{r['facility_mw']:.3f}", f"{r['cost_usd']:,.0f}"] for r in report["pareto"][:TOP_N]]), "",
           "## Economics inputs (from the profiles, with their sources)", ""]
    for dev, items in report["economics_inputs"].items():
        out += [f"### {dev}", "", _md_table(["input", "value", "profile", "source"],
                                            [[k, f"{v['value']:g}", v["profile"], v["source"]]
                                             for k, v in sorted(items.items())]), ""]
    out += ["## Figures", ""]
    for f in figures:
        out += [f"![{f['title']}]({f['file']})", "", f"*{f['caption']}*", ""]
    out += ["## Conventions", ""] + [f"- {k}: {v}" for k, v in report["conventions"].items()] + [""]
    return "\n".join(out)


def _html_table(head: list[str], body: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def render_html(markdown: str, report: dict[str, Any], figures: list[dict[str, str]], folder: Path) -> str:
    """A self-contained page: the summary, the tables and the figures inlined as data URIs; no scripts."""
    s, search = report["sizing"], report["search"]
    parts = [f"<h1>Sizing report: {html.escape(s['goal'])} {html.escape(s['model'])}</h1>"]
    rec_line = next(line for line in markdown.splitlines() if line.startswith("**Recommended**"))
    parts.append("<p>" + html.escape(rec_line.replace("**", "")) + "</p>")
    parts += ["<h2>Best per objective</h2>", _html_table(*_table_rows(report)), "<h2>Search</h2>",
              f"<p>{search['enumerated']:,} enumerated, {search['evaluated']:,} evaluated, {search['feasible']:,} "
              f"feasible, {search['pareto']} on the Pareto front.</p>",
              _html_table(["rejected because", "count", "example"],
                          [[k, f"{v['count']:,}", v["example"]] for k, v in search["rejected"].items()])]
    for f in figures:
        data = base64.b64encode((folder / f["file"]).read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt=\"{html.escape(f['title'])}\" src=\"data:image/png;base64,{data}\">"
                     f"<figcaption>{html.escape(f['caption'])}</figcaption></figure>")
    parts.append("<h2>Economics inputs</h2>")
    for dev, items in report["economics_inputs"].items():
        parts += [f"<h3>{html.escape(dev)}</h3>", _html_table(["input", "value", "profile", "source"], [
            [k, f"{v['value']:g}", v["profile"], v["source"]] for k, v in sorted(items.items())])]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}"
             "figcaption{font-size:13px;color:#444}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sizing report</title>"
            f"<link rel=\"icon\" href=\"data:,\"><style>{style}</style></head><body>\n" + "\n".join(parts)
            + "\n</body></html>\n")


def write_report(result: SearchResult, sz: Sizing, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write report.json, report.md, report.html and the PNG plots into `out_dir`; return the report."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    report = build_report(result, sz)
    figures = draw_all(result, sz, report, folder)
    report["figures"] = figures
    (folder / "report.json").write_text(canonical_json(report))
    md = render_markdown(report, figures)
    (folder / "report.md").write_text(md)
    (folder / "report.html").write_text(render_html(md, report, figures, folder))
    return report


__all__ = ["SCHEMA_VERSION", "build_report", "canonical_json", "render_html", "render_markdown", "write_report"]
