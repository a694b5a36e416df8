"""The parser of every subcommand and the dispatch to its module, imported only when that command runs.

Commands import what they need at the top of their own module; this one imports none of them, so `--help`,
`--version`, `profiles`, `models`, `stacks` and `results` never load torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from emulator import __version__
from emulator.errors import EmulatorError

# subcommand -> "module:function" run with the parsed arguments.
COMMANDS = {
    "profiles": "emulator.cli.listing:profiles",
    "models": "emulator.cli.listing:models",
    "stacks": "emulator.cli.listing:stacks",
    "results": "emulator.cli.listing:results",
    "predict": "emulator.cli.predict:command",
    "compare": "emulator.cli.compare:command",
    "calibrate": "emulator.cli.measure:calibrate",
    "validate": "emulator.cli.measure:validate",
    "run": "emulator.cli.run:command",
    "size": "emulator.cli.size:command",
}

# Commands that measure on this machine. On CPUs, MKL's OpenMP workers spin for 200 ms after each GEMM
# (KMP_BLOCKTIME) and starve torch's own OpenMP workers: small kernels then take a scheduler tick (~16 ms)
# instead of microseconds. Letting them sleep at once makes CPU timings repeatable; set before torch loads.
MEASURING = ("run", "calibrate", "validate")


def version_line() -> str:
    """`emulator --version`: this package's and torch's installed versions, one line. Both come from package
    metadata, so torch is never imported (importing it takes one to two seconds)."""
    # Imported here, not at the top: the metadata machinery costs every other command ~20 ms and only this
    # option reads it.
    import importlib.metadata

    def installed(dist: str, otherwise: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return otherwise

    # A source checkout run without installing has no metadata of its own: its __version__ says the same.
    return f"emulator {installed('emulator', __version__)} (torch {installed('torch', 'not installed')})"


class _VersionAction(argparse.Action):
    """argparse's `version` action, with the line built only when the option is given (see `version_line`)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(version_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emulator", description="Predict and measure AI workloads on accelerators.")
    parser.add_argument("--version", action=_VersionAction, help="print the emulator's and torch's versions and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profiles", help="list or show hardware profiles")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("models", help="list or show model presets (or a config.json)")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("stacks", help="list or show software stack profiles (frameworks, serving engines)")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?")
    p.add_argument("--kind", choices=["training", "serving"],
                   help="training framework or serving engine (needed where a name is both, such as eager)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("predict", help="predict a scenario on its device")
    p.add_argument("scenario")
    p.add_argument("--json", action="store_true")
    p.add_argument("--trace", metavar="FILE.json",
                   help="write a Chrome/Perfetto trace: a training step per pipeline stage, or a serving run")
    p.add_argument("--requests", metavar="FILE.csv", help="serving: write the simulated per-request records as CSV")
    p.add_argument("--cdf", metavar="FILE.png", help="serving: plot the CDFs of TTFT and end-to-end latency")
    p.add_argument("--sweep-concurrency", metavar="LEVELS",
                   help="serving: the closed loop at each level, e.g. 1,2,4,...,256 ('...' doubles)")
    p.add_argument("--plot", metavar="FILE.png", help="with --sweep-concurrency: tokens/s per device against per user")
    p.add_argument("--launch", metavar="DIR", help="also write the plan's launch files (torchrun + Megatron-LM or "
                   "torchtitan TOML; vllm / trtllm-serve / SGLang commands) into DIR")

    p = sub.add_parser("compare", help="predict several scenarios and print them side by side")
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("calibrate", help="measure kernel sweeps on this machine and fit its efficiencies")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads to measure with (default 1; part of the calibration key)")
    p.add_argument("--quick", action="store_true", help="the short sweep (2 min on a 2-core CPU, 4 on an H100)")
    p.add_argument("--out", help="calibration file to write (default: the user's calibrations folder)")
    p.add_argument("--points", help="refit saved points (a *.points.json) instead of measuring")
    p.add_argument("--only", help="comma-separated kernel families to re-measure; the device's other points are kept")
    p.add_argument("--no-record", action="store_true", help="do not write the run to the results store")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("validate", help="measured against predicted on this machine")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads to measure with (default 1; part of the calibration key)")
    p.add_argument("--only", help="comma-separated workload ids")
    p.add_argument("--published", action="store_true", help="against published results")
    p.add_argument("--aic-all", action="store_true",
                   help="with --published: every usable AIConfigurator row, not the stratified sample")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("run", help="run a scenario for real here and compare with its prediction")
    p.add_argument("scenario")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=1, help="CPU threads to run with (default 1, as calibrate)")
    p.add_argument("--target-time", type=float, default=1.0, help="timed seconds per measured phase (at most)")
    p.add_argument("--no-profile", action="store_true", help="skip the per-kernel profile")
    p.add_argument("--no-record", dest="record", action="store_false",
                   help="do not write the run to the results store")
    p.add_argument("--nproc", type=int, default=1, help="ranks to launch through torchrun (gloo on CPU, NCCL on GPU)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="run a scale model with this fraction of the layers (DLRM: table rows), e.g. 0.25")
    p.add_argument("--yes", action="store_true", help="run even when estimated past a minute (no question asked)")
    p.add_argument("--quiet", action="store_true", help="no estimate or progress on stderr")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("size", help="size a cluster for a target: a ranked, costed plan and a report folder",
                       description="Search devices x counts x plans for a sizing file's target and write "
                                   "report.json, report.md, report.html and PNG plots.")
    p.add_argument("sizing", help="a sizing YAML file (see the README's 'Sizing reports')")
    p.add_argument("--out", default=None, help="report folder (default: reports/<sizing file name>)")
    p.add_argument("--json", action="store_true", help="print report.json to stdout")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")

    p = sub.add_parser("results", help="the results store (SQLite)")
    p.add_argument("action", choices=["list", "show", "export"])
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--db", help="store path (default: $EMULATOR_RESULTS or the user's data folder)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--format", choices=["csv", "json"], default="json")
    p.add_argument("--output", help="file to export to (default: stdout)")
    p.add_argument("--json", action="store_true")
    return parser


def _prepare_measuring(args: argparse.Namespace) -> None:
    """Settings a measuring command needs before torch loads; imported here so that the other commands never
    load torch."""
    os.environ.setdefault("KMP_BLOCKTIME", "0")
    if str(getattr(args, "device", "")).startswith("cpu") and getattr(args, "threads", None):
        # One core by default: with several threads every parallel kernel waits at a barrier for the slowest
        # core, and on shared or virtual machines one preempted core stalls them all (we saw the same kernel
        # take 8x longer for seconds at a time); one thread gives repeatable calibrations.
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    from emulator.measure.machine import keep_freed_memory

    keep_freed_memory()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        if args.command in MEASURING:
            _prepare_measuring(args)
        module, function = COMMANDS[args.command].split(":")
        getattr(importlib.import_module(module), function)(args)
    except EmulatorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0
