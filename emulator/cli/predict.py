"""`emulator predict SCENARIO [--json]`."""

from __future__ import annotations

import argparse
import sys

from emulator.cli.output import print_json
from emulator.cli.render import render_prediction
from emulator.launch import launch_files, write_launch
from emulator.predict import predict_scenario
from emulator.scenario import load_scenario


def command(args: argparse.Namespace) -> None:
    scenario = load_scenario(args.scenario)
    prediction = predict_scenario(scenario)
    if getattr(args, "launch", None):
        paths = write_launch(args.launch, launch_files(scenario, prediction))
        print(f"launch files: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    if args.json:
        print_json(prediction.to_json())
    else:
        print(render_prediction(prediction))
