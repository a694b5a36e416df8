"""Sizing: from a target (tokens by a date, or traffic within SLOs) to a ranked, costed cluster plan.

    spec.py       the sizing file: goal, model, candidates, constraints, objective (strict parsing)
    search.py     devices x counts x plans (serving: replica layouts), pruned early, evaluated in process
    economics.py  power device -> node -> facility -> MW; MWh; capex amortised plus energy, or rental
    constraints.py  the limits (deadline, power cap, budget, serving device cap) checked on evaluated plans
    pareto.py     the non-dominated set over time, cost and MW; plans reaching the same point folded into one
    diagnose.py   when nothing fits: what binds, by how much, the smallest change that meets every limit (re-checked)
    select.py     limits applied, Pareto front, best per objective; `Infeasible` (with the diagnosis) if none fits
    candidates.py one answer per candidate: its best plan and what it takes, or its closest plan and what it misses
    plots.py      PNG plots (rooflines, breakdown, scaling, Pareto front, latency-throughput)
    render.py     report.md and report.html from one list of blocks
    report.py     report.json (canonical) and the folder

`size(load_sizing(path))` returns a `SearchResult` or raises `Infeasible`; `write_report(result, sizing, out_dir)`
writes the folder (`write_report(e.result, sizing, out_dir, e.diagnosis)` for a target no plan meets).
"""

from emulator.sizing.report import write_report
from emulator.sizing.search import SearchResult
from emulator.sizing.select import Infeasible, size
from emulator.sizing.spec import Sizing, load_sizing

__all__ = ["Infeasible", "SearchResult", "Sizing", "load_sizing", "size", "write_report"]
