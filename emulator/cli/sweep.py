"""`emulator predict SCENARIO --sweep-concurrency LEVELS [--plot FILE.png] [--json]`: a serving scenario's closed loop
at each level, as a table (or JSON) and the interactivity-throughput plot."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from emulator.cli.output import print_json, table
from emulator.cli.plots import sweep_plot
from emulator.errors import EmulatorError
from emulator.scenario import Scenario
from emulator.serving.sweep import MAX_LEVELS, ConcurrencySweep, sweep_concurrency
from emulator.sizing.pareto import pareto_mask
from emulator.units import fmt_seconds

FIX = "Fix: give whole numbers >= 1 separated by commas, e.g. 1,2,4,...,256 ('...' doubles up to the next value)."


def parse_levels(text: str) -> tuple[int, ...]:
    """"1,2,4,...,256" -> (1, 2, 4, 8, ..., 256): '...' doubles from the value before it up to the value after."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    out: list[int] = []
    for k, item in enumerate(items):
        if item == "...":
            if not out or k + 1 >= len(items) or items[k + 1] == "...":
                raise EmulatorError(f"--sweep-concurrency '{text}': '...' needs a number before and after it. {FIX}")
            continue
        if not item.isdigit() or int(item) < 1:
            raise EmulatorError(f"--sweep-concurrency '{text}': '{item}' is not a whole number >= 1. {FIX}")
        n = int(item)
        if k > 0 and items[k - 1] == "...":
            while out[-1] * 2 < n and len(out) <= MAX_LEVELS:
                out.append(out[-1] * 2)
        out.append(n)
    if not out:
        raise EmulatorError(f"--sweep-concurrency '{text}' names no level. {FIX}")
    return tuple(sorted(set(out)))


def pareto_front(sweep: ConcurrencySweep) -> np.ndarray:
    """Levels no other level beats on both tokens/s per user and tokens/s per device."""
    return pareto_mask(np.array([[-p.tokens_per_s_per_user, -p.tokens_per_s_per_device] for p in sweep.points]))


def render_sweep(sweep: ConcurrencySweep, front: np.ndarray) -> str:
    rows = [[str(p.concurrency), fmt_seconds(p.ttft_s.p50), fmt_seconds(p.ttft_s.p99), fmt_seconds(p.tpot_s.p50),
             f"{p.tokens_per_s_per_user:,.1f}", f"{p.tokens_per_s_per_device:,.1f}", "yes" if p.meets_slo else "no",
             "*" if on else ""] for p, on in zip(sweep.points, front, strict=True)]
    head = (f"{sweep.model} on {sweep.num_devices} x {sweep.device}: {sweep.replicas} replica(s) of "
            f"tp={sweep.replica.tp} on {sweep.engine or 'the default engine'}, closed loop at each concurrency "
            f"(requests in flight over the deployment)")
    return "\n".join([head, "", table(rows, ["concurrency", "TTFT p50", "TTFT p99", "TPOT p50", "tokens/s/user",
                                             "tokens/s/device", "SLO met", "Pareto"]),
                      f"(request-level simulation of each steady state; provenance: {sweep.provenance}, "
                      f"±{sweep.error_band * 100:.0f}%; tokens/s/user = 1 / mean TPOT; * on the Pareto front)"])


def sweep_command(args: argparse.Namespace, scenario: Scenario) -> None:
    sweep = sweep_concurrency(scenario, parse_levels(args.sweep_concurrency))
    front = pareto_front(sweep)
    if args.plot:
        sweep_plot(sweep, front, args.plot)
    if args.json:
        out = sweep.as_dict()
        for point, on in zip(out["points"], front, strict=True):
            point["on_pareto_front"] = bool(on)
        print_json(out)
    else:
        print(render_sweep(sweep, front))
    if args.plot:
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)


__all__ = ["parse_levels", "render_sweep", "sweep_command"]
