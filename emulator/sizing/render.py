"""report.md and report.html from report.json's data: one list of blocks (headings, paragraphs, tables, figures)
written out twice, so the two files always hold the same tables.

Sections: the target; the recommendation (or, when no plan meets every constraint, what binds and the smallest
change); one row per candidate with its best plan and why the others lost; plans rejected per candidate; best
per objective; the search; the Pareto front (one row per distinct outcome); economics inputs with sources; the
figures, each captioned once; conventions.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.sizing.constraints import latency_name, shown
from emulator.sizing.diagnose import by_how_much
from emulator.stacks.accuracy import lines as accuracy_lines

Row = dict[str, Any]
TOP_N = 20


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True, slots=True)
class Para:
    text: str
    lead: str = ""  # bold opening words


@dataclass(frozen=True, slots=True)
class Table:
    head: list[str]
    body: list[list[str]]


@dataclass(frozen=True, slots=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True, slots=True)
class Figure:
    file: str
    title: str
    caption: str


Block = Heading | Para | Table | Bullets | Figure


def _time(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s / 86400:.1f} d" if s >= 86400 else f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _plan(row: Row) -> str:
    return " ".join(f"{k}={v}" for k, v in row["plan"].items() if k != "sequence_parallel")


def _rate(per_s: float) -> str:
    return f"{per_s:,.0f}" if per_s >= 100 else f"{per_s:.3g}"


def _usd(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _train(report: dict[str, Any]) -> bool:
    return bool(report["sizing"]["goal"] == "train")


def _row_time(report: dict[str, Any], r: Row) -> float:
    return float(r["effective_time_to_train_s"] if _train(report) else r["latency_p99_s"])


def _latency_head(report: dict[str, Any]) -> str:
    rows = [c["best"] for c in report["candidates"] if c["best"]]
    return latency_name(rows[0]) if rows else "p99 latency"


def _candidates(report: dict[str, Any]) -> list[Block]:
    train = _train(report)
    per_m = "USD per M tokens"
    if not train and all((c["best"] or {}).get("cost_per_million_tokens_usd") is None for c in report["candidates"]):
        per_m = "USD per M queries"
    head = (["candidate", "status", "devices", "plan", "time-to-train"] if train else
            ["candidate", "status", "devices", "layout", "req/s per replica", _latency_head(report)])
    head += ["MW at the meter", "MWh" + ("" if train else " per year"), "capex (USD)",
             "cost of the run (USD)" if train else "cost per year (USD)", per_m, "provenance", "verdict"]
    body = []
    for c in report["candidates"]:
        r = c["best"]
        name = f"{c['device']} in {c['system']}"
        if r is None:
            body.append([name, c["status"]] + ["-"] * (len(head) - 3) + [c["verdict"]])
            continue
        cells = [name, c["status"], f"{r['num_devices']:,} ({r['nodes']:,} node{'s' if r['nodes'] != 1 else ''})"]
        if train:
            cells += [_plan(r), _time(r["effective_time_to_train_s"])]
        else:
            n = r["plan"]["replicas"]
            cells += [f"{n:,} replica{'s' if n != 1 else ''} x tp {r['plan']['tp']}",
                      _rate(r["rate_per_replica_per_s"]), _time(r["latency_p99_s"])]
        unit = r.get("cost_per_million_tokens_usd")
        unit = r.get("cost_per_million_queries_usd") if per_m.endswith("queries") else unit
        cells += [f"{r['facility_mw']:,.3f}", f"{r['energy_mwh']:,.1f}", _usd(r["capex_usd"]), _usd(r["cost_usd"]),
                  "-" if unit is None else f"{unit:,.4g}", f"{r['provenance']} ±{r['error_band']:.0%}", c["verdict"]]
        body.append(cells)
    reasons = sorted({k for c in report["candidates"] for k in c["rejected"]})
    counts = [[f"{c['device']} in {c['system']}"] + [f"{c['plans'][k]:,}" for k in ("enumerated", "evaluated",
                                                                                   "feasible")]
              + [f"{c['rejected'].get(k, 0):,}" for k in reasons] for c in report["candidates"]]
    cost = ("the cost is the share of it amortised over the run's hours, plus energy" if train else
            "the cost per year is one year's amortised share of it, plus a year's energy")
    cost = cost if report["sizing"]["pricing"] == "capex" else "the cost is rental"
    return [Heading(2, "Per candidate"),
            Para("Each candidate's best plan by the objective (a candidate with no feasible plan shows its closest "
                 f"plan and the limits it misses). capex is the upfront purchase of the whole cluster; {cost}. "
                 "Figures come from the models named in the provenance column and the profile inputs listed under "
                 "Economics inputs."),
            Table(head, body), Heading(3, "Plans rejected per candidate, by reason"),
            Table(["candidate", "enumerated", "evaluated", "feasible"] + reasons, counts)]


def _infeasible(report: dict[str, Any]) -> list[Block]:
    d = report["infeasible"]
    if d is None:
        return []
    table = []
    for s in d["constraints"]:
        reach = s["best_meeting_others"] if s["best_meeting_others"] is not None else s["best"]
        table.append([s["constraint"], s["field"], shown(s["limit"], s["unit"]),
                      "-" if s["best"] is None else shown(s["best"], s["unit"]),
                      "-" if s["best_meeting_others"] is None else shown(s["best_meeting_others"], s["unit"]),
                      by_how_much(reach, s["limit"]) if s["binds"] else "-"])
    out: list[Block] = [Heading(2, "What binds"),
                        Table(["constraint", "field", "limit", "best of any plan", "best meeting the other limits",
                               "over the limit by"], table)]
    if d["smallest_change"]:
        out.append(Para(d["smallest_change"]["text"] + ".", lead="Smallest change that meets every constraint:"))
    if d["alternatives"]:
        out += [Para("", lead="Other changes that meet every constraint:"),
                Bullets([a["text"] for a in d["alternatives"]])]
    if d["notes"]:
        out += [Para("", lead="Also checked:"), Bullets(d["notes"])]
    return out


def _summary(report: dict[str, Any]) -> Para:
    s, rec = report["sizing"], report["recommended"]
    if rec is None:
        d = report["infeasible"]
        binds = [c["constraint"] for c in d["constraints"] if c["binds"]] if d else []
        fix = (f"smallest change that meets every constraint: {d['smallest_change']['settings']}"
               if d and d["smallest_change"] else "no limit alone fixes it (see What binds)")
        what = (f"{', '.join(binds)} bind{'s' if len(binds) == 1 else ''}" if binds else
                "no plan survives pruning (see Plans rejected per candidate)")
        return Para(f"{what}; {fix}.", lead="No plan meets every constraint.")
    train = _train(report)
    return Para(f"{rec['device']} x {rec['num_devices']:,} ({_plan(rec)}), "
                + (f"time-to-train {_time(rec['effective_time_to_train_s'])} (MFU {rec['mfu']:.1%}), " if train
                   else f"{latency_name(rec)} {_time(rec['latency_p99_s'])}, ")
                + f"{rec['facility_mw']:.3f} MW at the meter, {rec['energy_mwh']:,.1f} MWh, capex "
                f"{rec['capex_usd']:,.0f} USD, cost {rec['cost_usd']:,.0f} USD{'' if train else ' per year'} "
                f"(provenance {rec['provenance']}, error band ±{rec['error_band']:.0%})."
                + "".join(f" Validated {text}." for text in accuracy_lines(report.get("validated", {}).get(
                    rec["device"], {}))),
                lead=f"Recommended ({s['objective']}):")


def _same(r: Row) -> str:
    eq = r["equivalent"]
    if eq["num_plans"] == 1:
        return "1"
    return f"{eq['num_plans']} ({'; '.join(k + ' ' + '/'.join(map(str, v)) for k, v in eq['vary'].items())})"


def blocks(report: dict[str, Any]) -> list[Block]:
    """The report as blocks, in order."""
    s, search, train = report["sizing"], report["search"], _train(report)
    out: list[Block] = [
        Heading(1, f"Sizing report: {s['goal']} {s['model']} ({s['file']})"),
        Para(f"Target: {json.dumps(s['target'], sort_keys=True)}; constraints: "
             f"{json.dumps(s['constraints'], sort_keys=True)}; objective: {s['objective']}; pricing: {s['pricing']}; "
             f"site: {s['site']}."),
        _summary(report)]
    out += _infeasible(report) + _candidates(report)
    if report["best"]:
        out += [Heading(2, "Best per objective"), Table(
            ["objective", "device", "devices", "plan", "time-to-train" if train else _latency_head(report), "MW",
             "capex (USD)", "cost (USD)", "MWh"],
            [[obj, r["device"], f"{r['num_devices']:,}", _plan(r), _time(_row_time(report, r)),
              f"{r['facility_mw']:.3f}", _usd(r["capex_usd"]), _usd(r["cost_usd"]), f"{r['energy_mwh']:,.1f}"]
             for obj, r in report["best"].items()])]
    out += [Heading(2, "Search"),
            Para(f"{search['enumerated']:,} plans enumerated, {search['evaluated']:,} evaluated, "
                 f"{search['feasible']:,} feasible; {search['pareto']:,} plans on the Pareto front (time, cost, MW) "
                 f"at {search['pareto_points']:,} distinct points.")]
    if search["rejected"]:
        out.append(Table(["rejected because", "count", "example"],
                         [[k, f"{v['count']:,}", v["example"]] for k, v in search["rejected"].items()]))
    if report["pareto"]:
        n = len(report["pareto"])
        out += [Heading(2, "Pareto front"),
                Para(f"One row per distinct point ({min(n, TOP_N)} of {n} shown, fastest first); 'plans' counts the "
                     "plans reaching it and what varies among them."),
                Table(["device", "devices", "plan", "time", "MW", "capex (USD)", "cost (USD)", "plans"],
                      [[r["device"], f"{r['num_devices']:,}", _plan(r), _time(_row_time(report, r)),
                        f"{r['facility_mw']:.3f}", _usd(r["capex_usd"]), _usd(r["cost_usd"]), _same(r)]
                       for r in report["pareto"][:TOP_N]])]
    out.append(Heading(2, "Economics inputs (from the profiles, with their sources)"))
    for dev, items in report["economics_inputs"].items():
        out += [Heading(3, dev), Table(["input", "value", "profile", "source"],
                                       [[k, f"{v['value']:g}", v["profile"], v["source"]]
                                        for k, v in sorted(items.items())])]
    out.append(Heading(2, "Figures"))
    out += [Figure(f["file"], f["title"], f["caption"]) for f in report.get("figures", [])]
    out += [Heading(2, "Conventions"), Bullets([f"{k}: {v}" for k, v in report["conventions"].items()])]
    return out


def render_markdown(report: dict[str, Any]) -> str:
    lines: list[str] = []
    for b in blocks(report):
        if isinstance(b, Heading):
            lines += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            lines += [(f"**{b.lead}** " if b.lead else "") + b.text, ""]
        elif isinstance(b, Table):
            lines += ["| " + " | ".join(b.head) + " |", "|" + "---|" * len(b.head)]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in b.body] + [""]
        elif isinstance(b, Bullets):
            lines += [f"- {item}" for item in b.items] + [""]
        else:
            lines += [f"![{b.title}]({b.file})", "", f"*{b.caption}*", ""]
    return "\n".join(lines)


def render_html(report: dict[str, Any], folder: Path) -> str:
    """A self-contained page: the same blocks, the figures inlined as data URIs; no scripts."""
    e = html.escape
    parts: list[str] = []
    for b in blocks(report):
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            parts.append("<p>" + (f"<strong>{e(b.lead)}</strong> " if b.lead else "") + e(b.text) + "</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{e(c)}</th>" for c in b.head)
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in b.body)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(b, Bullets):
            parts.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        else:
            data = base64.b64encode((folder / b.file).read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt=\"{e(b.title)}\" src=\"data:image/png;base64,{data}\">"
                         f"<figcaption>{e(b.caption)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;"
             "font-size:13px;margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}"
             "figcaption{font-size:13px;color:#444}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sizing report</title>"
            f"<link rel=\"icon\" href=\"data:,\"><style>{style}</style></head><body>\n" + "\n".join(parts)
            + "\n</body></html>\n")


__all__ = ["blocks", "render_html", "render_markdown"]
