"""`emulator predict SCENARIO [--json]`."""

from __future__ import annotations

import argparse
import sys

from emulator.cli.output import print_json
from emulator.cli.render import render_prediction
from emulator.predict import predict_scenario
from emulator.scenario import load_scenario


def command(args: argparse.Namespace) -> None:
    scenario = load_scenario(args.scenario)
    for warning in scenario.warnings:  # plausibility: never fatal, never silent
        print(f"warning: {warning}", file=sys.stderr)
    prediction = predict_scenario(scenario)
    if args.json:
        print_json(prediction.to_json() | {"warnings": list(scenario.warnings)})
    else:
        print(render_prediction(prediction, scenario.serving))
