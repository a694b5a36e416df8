"""`emulator run SCENARIO --device cpu|cuda[:N]`: execute a scenario here, measured beside predicted.

Before it starts, the run estimates its own wall time on this machine (`validation.runplan`). Past
`CONFIRM_ABOVE_S` it asks at a terminal, and otherwise refuses unless `--yes`, naming a `--scale` that fits.
"""

from __future__ import annotations

import argparse
import json
import sys

from emulator.cli.render import render_run
from emulator.errors import EmulatorError
from emulator.measure.device import parse_device
from emulator.measure.machine import device_fingerprint
from emulator.results import ResultsStore
from emulator.scenario import Scenario, load_scenario
from emulator.units import fmt_seconds
from emulator.validation.distributed import launch
from emulator.validation.run import run_scenario
from emulator.validation.runplan import RunPlan, available_memory_bytes, plan_run, suggested_scale

CONFIRM_ABOVE_S = 60.0  # a run estimated past a minute asks first


def _smaller(s: Scenario, plan: RunPlan, args: argparse.Namespace) -> str:
    """The advice for a run that is too long: the largest --scale estimated within the limit, or why none is."""
    device = parse_device(args.device)
    found = suggested_scale(s, plan, device, CONFIRM_ABOVE_S, target_time_s=args.target_time,
                            profile=not args.no_profile)
    if found is None:
        return ("even the smallest scale model (one layer; DLRM: one row per table) is estimated past a minute: lower "
                "batch_size or input_tokens in a copy of the scenario")
    scale, est = found
    return f"--scale {scale:g} to run a smaller scale model (about {est.describe()})"


def confirm(s: Scenario, plan: RunPlan, args: argparse.Namespace) -> bool:
    """Whether to go ahead: always under a minute or with --yes; else ask at a terminal, refuse elsewhere."""
    est = plan.estimate
    if not args.quiet:
        scale = plan.scale_model
        what = (f" for a {next(iter(scale.values())):,}-of-{scale['of']:,} scale model" if scale else "")
        print(f"estimated run time{what}: about {est.describe()}", file=sys.stderr)
    if est.total_s <= CONFIRM_ABOVE_S or args.yes:
        return True
    advice = _smaller(s, plan, args)
    if sys.stdin.isatty() and sys.stderr.isatty():
        print(f"This run is estimated at {fmt_seconds(est.total_s)}, past a minute. Alternatively {advice}.",
              file=sys.stderr)
        answer = input("Run it now? [y/N] ").strip().lower()
        if answer in ("y", "yes"):
            return True
        print("not run", file=sys.stderr)
        return False
    raise EmulatorError(
        f"`emulator run` of this scenario is estimated at about {est.describe()} on this machine, past the "
        f"one-minute limit for runs nobody confirmed. Fix: add --yes to run it anyway, or {advice}.", file=s.path,
        field="--yes")


def command(args: argparse.Namespace) -> None:
    """`emulator run`: parse, plan and confirm, run, render (several ranks go through torchrun:
    `emulator.validation.distributed`)."""
    if args.nproc > 1:
        device = parse_device(args.device).type
        measured = launch(args.scenario, args.nproc, device)
        if args.record:
            ResultsStore().record_run("run", device_fingerprint(device), {"scenario": args.scenario,
                                                                          "nproc": args.nproc}, measured)
        print(json.dumps(measured, indent=2, default=str))
        return
    scenario = load_scenario(args.scenario)
    dev = parse_device(args.device)
    plan = plan_run(scenario, dev, free_bytes=available_memory_bytes(dev), scale=args.scale,
                    target_time_s=args.target_time, profile=not args.no_profile)
    if not confirm(scenario, plan, args):
        return
    result = run_scenario(scenario, args.device, target_time_s=args.target_time, profile=not args.no_profile,
                          record=args.record, plan=plan, progress=not args.quiet)
    out = result.to_json()
    print(json.dumps(out, indent=2, default=str) if args.json else render_run(out))
