"""`emulator predict SCENARIO [--json] [--trace FILE.json] [--requests FILE.csv] [--cdf FILE.png]
[--sweep-concurrency LEVELS [--plot FILE.png]]`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator

from emulator.cli.output import print_json
from emulator.cli.plots import cdf_plot
from emulator.cli.render import render_prediction
from emulator.cli.sweep import sweep_command
from emulator.engine.prediction import Prediction
from emulator.errors import EmulatorError
from emulator.files import write_json_atomic
from emulator.launch import launch_files, write_launch
from emulator.predict import predict_scenario, prediction_timeline, request_log
from emulator.scenario import Scenario, load_scenario


@contextlib.contextmanager
def writing(path: str, flag: str) -> Iterator[None]:
    """A file the command writes: a clear error instead of a traceback when it cannot."""
    try:
        yield
    except OSError as e:
        raise EmulatorError(f"cannot write {path}: {e.strerror or e}. Fix: give {flag} a path in a folder you can "
                            "write to.", field=flag) from e


def _trace(scenario: Scenario, prediction: Prediction, path: str) -> str:
    timeline = prediction_timeline(scenario, prediction)
    write_json_atomic(timeline.to_chrome(), path)
    return f"a trace of {len(timeline.spans)} events (open it in https://ui.perfetto.dev)"


def _requests(scenario: Scenario, prediction: Prediction, path: str) -> str:
    log = request_log(scenario, prediction)
    log.write_csv(path)
    return f"{len(log)} request records ({log.description})"


def _cdf(scenario: Scenario, prediction: Prediction, path: str) -> str:
    log = request_log(scenario, prediction)
    cdf_plot(log, path, prediction.provenance, prediction.error_band)
    return f"TTFT and latency CDFs of {len(log)} requests"


# (argument, flag, writer): the files one prediction can write beside its table.
OUTPUTS: tuple[tuple[str, str, Callable[[Scenario, Prediction, str], str]], ...] = (
    ("trace", "--trace", _trace), ("requests", "--requests", _requests), ("cdf", "--cdf", _cdf))


def command(args: argparse.Namespace) -> None:
    scenario = load_scenario(args.scenario)
    for warning in scenario.warnings:  # plausibility: never fatal, never silent
        print(f"warning: {warning}", file=sys.stderr)
    if args.sweep_concurrency:
        if args.trace or args.requests or args.cdf:
            raise EmulatorError("--trace, --requests and --cdf describe one prediction, not a sweep. Fix: run them "
                                "without --sweep-concurrency (with inference.concurrency set to the level you want).",
                                file=args.scenario, field="--sweep-concurrency")
        with writing(args.plot or "", "--plot"):
            sweep_command(args, scenario)
        return
    if args.plot:
        raise EmulatorError("--plot draws a concurrency sweep. Fix: add --sweep-concurrency 1,2,4,...,256, or use "
                            "--cdf FILE.png for the latency CDF of one serving prediction.", field="--plot")
    prediction = predict_scenario(scenario)
    wrote = []
    for attr, flag, write in OUTPUTS:
        path = getattr(args, attr)
        if path:
            with writing(path, flag):
                wrote.append(f"wrote {path}: {write(scenario, prediction, path)}")
    if getattr(args, "launch", None):
        paths = write_launch(args.launch, launch_files(scenario, prediction))
        print(f"launch files: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    if args.json:
        print_json(prediction.to_json() | {"warnings": list(scenario.warnings)})
    else:
        print(render_prediction(prediction, scenario.serving))
    for line in wrote:
        print(line, file=sys.stderr if args.json else sys.stdout)
