"""`emulator predict SCENARIO [--json]`."""

from __future__ import annotations

import argparse

from emulator.cli.output import print_json
from emulator.cli.render import render_prediction
from emulator.predict import predict_scenario
from emulator.scenario import load_scenario


def command(args: argparse.Namespace) -> None:
    prediction = predict_scenario(load_scenario(args.scenario))
    if args.json:
        print_json(prediction.to_json())
    else:
        print(render_prediction(prediction))
