"""The command line: each subcommand parses, calls one library function, renders (a table, or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from emulator.errors import EmulatorError
from emulator.units import fmt_bytes, fmt_flops, fmt_seconds


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, default=str))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


# --- profiles -------------------------------------------------------------------------------------------


def cmd_profiles(args: argparse.Namespace) -> None:
    from emulator import hardware as hw

    if args.action == "list":
        devices = [hw.load_device(n) for n in hw.list_devices()]
        if args.json:
            _print_json({"devices": hw.list_devices(), "systems": hw.list_systems(), "sites": hw.list_sites()})
            return
        rows = [[d.name, d.display_name, f"{d.matrix_peak('bf16') / 1e12:.0f}" if "bf16" in d.matrix_flops_per_s else "-",
                 f"{d.memory_bytes / 1e9:.0f}", f"{d.memory_bandwidth_bytes_per_s / 1e12:.2f}", f"{d.power.tdp_w:.0f}"]
                for d in devices]
        print(_table(rows, ["device", "name", "bf16 TFLOP/s", "memory GB", "TB/s", "TDP W"]))
        print("\nsystems: " + ", ".join(hw.list_systems()) + "\nsites: " + ", ".join(hw.list_sites()))
        return
    if not args.name:
        raise EmulatorError("needs a NAME. Fix: `emulator profiles show h100-sxm` (see `emulator profiles list`).")
    name = args.name
    for loader, names in ((hw.load_device, hw.list_devices()), (hw.load_system, hw.list_systems()),
                          (hw.load_site, hw.list_sites())):
        if name in names:
            profile = loader(name)
            break
    else:
        profile = hw.load_device(name)  # raises with the nearest names
    summary = hw.profile_summary(profile)
    if args.json:
        _print_json(summary)
        return
    sources = summary.pop("sources", {})
    for key, value in summary.items():
        print(f"{key}: {value}")
    print("sources:")
    for key, value in sources.items():
        print(f"  {key}: {value}")


# --- models ---------------------------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> None:
    from emulator.workloads.hf import load_model
    from emulator.workloads.presets import list_models, preset

    if args.action == "list":
        models = [preset(n) for n in list_models()]
        if args.json:
            _print_json({m.name: m.summary() for m in models})
            return
        rows = [[m.name, type(m).__name__.removesuffix("Config"), f"{m.num_params() / 1e9:.2f}",
                 f"{m.num_active_params() / 1e9:.2f}"] for m in models]
        print(_table(rows, ["model", "kind", "params (B)", "active (B)"]))
        return
    if not args.name:
        raise EmulatorError("needs a NAME or a config.json path. Fix: `emulator models show llama3-8b`.")
    m = load_model(args.name, origin="<command line>")
    summary = m.summary()
    if args.json:
        _print_json(summary)
        return
    for key, value in summary.items():
        print(f"{key}: {value}")


# --- predict --------------------------------------------------------------------------------------------


def render_prediction(out: dict[str, Any]) -> str:
    lines = [
        f"{out['model']} on {out['device']} ({out['mode']}, {out['num_devices']} device(s))",
        f"  step time            {fmt_seconds(out['step_time_s'])}  (range {fmt_seconds(out['step_time_range_s'][0])}"
        f" .. {fmt_seconds(out['step_time_range_s'][1])}; provenance: {out['provenance']}, "
        f"±{out['error_band'] * 100:.0f}%)",
        f"  tokens/s             {out['tokens_per_s']:,.0f}  ({out['tokens_per_s_per_device']:,.0f} per device)",
        f"  model FLOPs/step     {fmt_flops(out['flops_per_step'])}  (MFU {out['mfu'] * 100:.1f}%)",
        f"  memory per device    {fmt_bytes(out['memory_per_device_bytes'])} of "
        f"{fmt_bytes(out['memory_capacity_bytes'])}: {'fits' if out['fits'] else 'DOES NOT FIT'}",
        f"  bound                {out['bound']}",
    ]
    if "ttft_s" in out:
        lines.append(f"  prefill (TTFT)       {fmt_seconds(out['ttft_s'])};  decode step (TPOT) {fmt_seconds(out['tpot_s'])}")
    rows = [[fam, fmt_seconds(k["time_s"]), f"{k['time_s'] / out['step_time_s'] * 100:.1f}%" if out["step_time_s"] else "-",
             fmt_flops(k["flops"]), fmt_bytes(k["bytes"]), k["bound"]] for fam, k in out["kernels"].items()]
    lines += ["", _table(rows, ["family", "time", "share", "FLOPs", "bytes", "bound"])]
    if out["unknown_ops"]:
        lines.append("\nunknown ops (not costed): " + ", ".join(f"{k} x{v}" for k, v in out["unknown_ops"].items()))
    for note in out.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("memory: " + ", ".join(f"{k} {fmt_bytes(v)}" for k, v in out["memory_breakdown"].items() if k != "total"))
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> None:
    from emulator.predict import predict
    from emulator.scenario import load_scenario

    out = predict(load_scenario(args.scenario)).to_json()
    if args.json:
        _print_json(out)
    else:
        print(render_prediction(out))


# --- parser ---------------------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "profiles": cmd_profiles,
    "models": cmd_models,
    "predict": cmd_predict,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emulator", description="Predict and measure AI workloads on accelerators.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("profiles", help="list or show hardware profiles")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("models", help="list or show model presets (or a config.json)")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("predict", help="predict a scenario on its device")
    p.add_argument("scenario")
    p.add_argument("--json", action="store_true")

    for extra in _EXTRA_PARSERS:
        extra(sub)
    return parser


# Later stages (run, calibrate, validate, results) register their subcommands here.
_EXTRA_PARSERS: list[Callable[[Any], None]] = []


class _Parser(argparse.ArgumentParser):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        COMMANDS[args.command](args)
    except EmulatorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
