"""Sizing: from a target (tokens by a date, or traffic within SLOs) to a ranked, costed cluster plan.

    spec.py       the sizing file: goal, model, candidates, constraints, objective (strict parsing)
    search.py     devices x counts x plans (serving: replica layouts), pruned early, evaluated in process
    economics.py  power device -> node -> facility -> MW; MWh; capex amortised plus energy, or rental
    pareto.py     the non-dominated set over time, cost and MW
    report.py     report.json (canonical), report.md, report.html and PNG plots
    select.py     constraints, Pareto front, best per objective, the binding constraint when none fits

`size(load_sizing(path))` returns a `SearchResult`; `write_report(result, sizing, out_dir)` writes the folder.
"""

from emulator.sizing.report import write_report
from emulator.sizing.search import SearchResult
from emulator.sizing.select import size
from emulator.sizing.spec import Sizing, load_sizing

__all__ = ["SearchResult", "Sizing", "load_sizing", "size", "write_report"]
