"""`emulator run SCENARIO --device cpu|cuda[:N]`: execute a scenario here, measured beside predicted."""

from __future__ import annotations

import argparse
import json

from emulator.cli.render import render_run
from emulator.measure.device import parse_device
from emulator.measure.machine import device_fingerprint
from emulator.results import ResultsStore
from emulator.scenario import load_scenario
from emulator.validation.distributed import launch
from emulator.validation.run import run_scenario


def command(args: argparse.Namespace) -> None:
    """`emulator run`: parse, run, render (several ranks go through torchrun: `emulator.validation.distributed`)."""
    if args.nproc > 1:
        device = parse_device(args.device).type
        measured = launch(args.scenario, args.nproc, device)
        if args.record:
            ResultsStore().record_run("run", device_fingerprint(device), {"scenario": args.scenario,
                                                                          "nproc": args.nproc}, measured)
        print(json.dumps(measured, indent=2, default=str))
        return
    result = run_scenario(load_scenario(args.scenario), args.device, target_time_s=args.target_time,
                          profile=not args.no_profile, record=args.record)
    out = result.to_json()
    print(json.dumps(out, indent=2, default=str) if args.json else render_run(out))
