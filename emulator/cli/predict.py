"""`emulator predict SCENARIO [--json]`."""

from __future__ import annotations

import argparse

from emulator.cli.render import print_json, render_prediction
from emulator.predict import predict_json
from emulator.scenario import load_scenario


def command(args: argparse.Namespace) -> None:
    out = predict_json(load_scenario(args.scenario))
    if args.json:
        print_json(out)
    else:
        print(render_prediction(out))
