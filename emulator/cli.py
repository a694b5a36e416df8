"""The command line: each subcommand parses, calls one library function, renders (a table, or JSON)."""

from __future__ import annotations

import argparse
import json
import os
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
    if "breakdown" in out:
        b = out["breakdown"]
        lines.append(f"  step breakdown       compute {fmt_seconds(b['compute_s'])}, exposed communication "
                     f"{fmt_seconds(b['exposed_communication_s'])}, pipeline bubble {fmt_seconds(b['bubble_s'])}")
        lines.append(f"  MFU without attn     {out['mfu_without_attention'] * 100:.1f}%;  HFU {out['hfu'] * 100:.1f}%")
    if out.get("time_to_train_s"):
        g = out["goodput"]
        lines.append(f"  time to train        {fmt_seconds(out['time_to_train_s'])} ({out['device_hours']:,.0f} "
                     f"device-hours); with failures and checkpoints {fmt_seconds(out['effective_time_to_train_s'])} "
                     f"(goodput {g['goodput'] * 100:.1f}%)")
    for fix in (out.get("fit_advice") or {}).get("fixes", [])[:4]:
        lines.append(f"  would fit with       {fix['change']} ({fmt_bytes(fix['memory_per_device_bytes'])})")
    if "prefill_s" in out:
        lines.append(f"  one batch            prefill {fmt_seconds(out['prefill_s'])}, then decode steps of "
                     f"{fmt_seconds(out['decode_step_s'])}")
    if "serving_scenario" in out:
        lines.append(f"  serving ({out['serving_scenario']})    {out['replicas']} replica(s) of tp={out['replica']['tp']}: "
                     f"{out['throughput_tokens_per_s'] or 0:,.0f} output tokens/s, "
                     f"{out['throughput_samples_per_s']:,.1f} samples/s, max batch {out['max_batch']}")
        for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("latency_s", "latency")):
            if out.get(key):
                p = out[key]
                lines.append(f"  {label:20s} p50 {fmt_seconds(p['p50'])}, p90 {fmt_seconds(p['p90'])}, "
                             f"p99 {fmt_seconds(p['p99'])}")
        energy = out.get("energy_per_token_j") or out.get("energy_per_query_j")
        lines.append(f"  power                {out['power_w']:,.0f} W for {out['num_devices']} device(s); {energy or 0:.3g} J per "
                     f"{'token' if out.get('energy_per_token_j') else 'query'}; SLO met: {out.get('meets_slo')}")
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
    from emulator.predict import predict_json
    from emulator.scenario import load_scenario

    out = predict_json(load_scenario(args.scenario))
    if args.json:
        _print_json(out)
    else:
        print(render_prediction(out))


# --- calibrate, validate, results -----------------------------------------------------------------------


def cmd_calibrate(args: argparse.Namespace) -> None:
    from emulator.calibrate import calibrate_device

    path, data = calibrate_device(args.device, quick=args.quick, out=args.out, points_file=args.points,
                                  record=not args.no_record, progress=not args.json,
                                  only=args.only.split(",") if args.only else None)
    if args.json:
        _print_json({"path": path, **data})
        return
    rows = [[fam, str(v["num_points"]), f"{v['error'] * 100:.1f}%", f"{v['math']:.2f}", f"{v['memory']:.2f}",
             fmt_seconds(v["overhead_s"]), str(v["tile"])] for fam, v in sorted(data["families"].items())]
    print(_table(rows, ["family", "points", "held-out error", "math eff", "memory eff", "overhead", "tile"]))
    print(f"\ncalibration of {data['fingerprint'].get('name')} ({data['device'] or 'no shipped profile'}) -> {path}")


def cmd_validate(args: argparse.Namespace) -> None:
    from emulator.validate import validate_device

    if args.published:
        from emulator.cluster import validate_published as training_cases
        from emulator.cluster.published import render as render_training
        from emulator.serving.published import render as render_serving
        from emulator.serving.published import validate_published as serving_cases

        training, serving = training_cases(), serving_cases()
        errors = sorted(abs(c["error"]) for c in (*training["cases"], *serving["cases"]))
        result = {
            "cases": [*training["cases"], *serving["cases"]],
            "summary": {"median_abs_error": errors[len(errors) // 2] if len(errors) % 2 else
                        (errors[len(errors) // 2 - 1] + errors[len(errors) // 2]) / 2,
                        "max_abs_error": errors[-1], "num_cases": len(errors),
                        "training": training["summary"], "inference": serving["summary"]},
        }
        if args.json:
            _print_json(result)
        else:
            print(render_training(training) + "\n\n" + render_serving(serving))
        return
    out = validate_device(args.device, only=args.only.split(",") if args.only else None, progress=not args.json)
    if args.json:
        _print_json(out)
        return
    rows = [[c["id"], fmt_seconds(c["measured"]), fmt_seconds(c["predicted"]), f"{c['error']:+.1%}"]
            for c in out["cases"]]
    print(_table(rows, ["workload", "measured", "predicted", "error"]))
    s = out["summary"]
    print(f"\nmedian |error| {s['median_abs_error']:.1%}, max |error| {s['max_abs_error']:.1%} "
          f"({out['provenance']} from {out['calibration']})")


def cmd_results(args: argparse.Namespace) -> None:
    from emulator.results import ResultsStore

    store = ResultsStore(args.db)
    if args.action == "list":
        runs = store.list_runs(args.limit)
        if args.json:
            _print_json(runs)
            return
        rows = [[str(r["id"]), r["kind"], r["created_at"], r["device_key"]] for r in runs]
        print(_table(rows, ["id", "kind", "created", "device"]))
    elif args.action == "show":
        if args.id is None:
            raise EmulatorError("needs a run id. Fix: `emulator results show ID` (see `emulator results list`).")
        _print_json(store.get_run(args.id))
    else:
        store.export(args.format, args.output or sys.stdout)


# --- parser ---------------------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "profiles": cmd_profiles,
    "models": cmd_models,
    "predict": cmd_predict,
    "calibrate": cmd_calibrate,
    "validate": cmd_validate,
    "results": cmd_results,
}

# Commands that measure on this machine. On CPUs, MKL's OpenMP workers spin for 200 ms after each GEMM
# (KMP_BLOCKTIME) and starve torch's own OpenMP workers: small kernels then take a scheduler tick (~16 ms)
# instead of microseconds. Letting them sleep at once makes CPU timings repeatable; set before torch loads.
MEASURING = ("run", "calibrate", "validate")


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

    p = sub.add_parser("calibrate", help="measure kernel sweeps on this machine and fit its efficiencies")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=1, help="CPU threads to measure with (default 1; part of the calibration key)")
    p.add_argument("--quick", action="store_true", help="the short sweep (2 min on a 2-core CPU, 4 on an H100)")
    p.add_argument("--out", help="calibration file to write (default: the user's calibrations folder)")
    p.add_argument("--points", help="refit saved points (a *.points.json) instead of measuring")
    p.add_argument("--only", help="comma-separated kernel families to re-measure; the device's other points are kept")
    p.add_argument("--no-record", action="store_true", help="do not write the run to the results store")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("validate", help="measured against predicted on this machine")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=1, help="CPU threads to measure with (default 1; part of the calibration key)")
    p.add_argument("--only", help="comma-separated workload ids")
    p.add_argument("--published", action="store_true", help="against published results")
    p.add_argument("--json", action="store_true")

    from emulator import run as run_command
    from emulator.sizing import cli as size_command

    run_command.add_parser(sub)
    size_command.add_parser(sub)

    p = sub.add_parser("results", help="the results store (SQLite)")
    p.add_argument("action", choices=["list", "show", "export"])
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--db", help="store path (default: $EMULATOR_RESULTS or the user's data folder)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--format", choices=["csv", "json"], default="json")
    p.add_argument("--output", help="file to export to (default: stdout)")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.command in MEASURING:
        os.environ.setdefault("KMP_BLOCKTIME", "0")
        if str(getattr(args, "device", "")).startswith("cpu") and getattr(args, "threads", None):
            # One core by default: with several threads every parallel kernel waits at a barrier for the
            # slowest core, and on shared or virtual machines one preempted core stalls them all (we saw the
            # same kernel take 8x longer for seconds at a time); one thread gives repeatable calibrations.
            os.environ["OMP_NUM_THREADS"] = str(args.threads)
            import torch

            torch.set_num_threads(args.threads)
        from emulator.measure import keep_freed_memory

        keep_freed_memory()
    try:
        command = COMMANDS.get(args.command) or args.func
        command(args)
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
