"""Listings that need no torch: hardware profiles, model presets, software stacks and the results store."""

from __future__ import annotations

import argparse
import json
import sys

from emulator import hardware as hw
from emulator.cli.output import print_json, table
from emulator.errors import EmulatorError, nearest
from emulator.results import ResultsStore
from emulator.stacks import STACK_KINDS, StackProfile, list_stacks, load_stack
from emulator.stacks.accuracy import MODEL_CLASSES
from emulator.stacks.accuracy import records as accuracy_records
from emulator.units import TB, GiB
from emulator.workloads.load import load_model
from emulator.workloads.presets import list_models, preset


def profiles(args: argparse.Namespace) -> None:
    if args.action == "list":
        devices = [hw.load_device(n) for n in hw.list_devices()]
        if args.json:
            print_json({"devices": hw.list_devices(), "systems": hw.list_systems(), "sites": hw.list_sites()})
            return
        rows = [[d.name, d.display_name,
                 f"{d.matrix_peak('bf16') / 1e12:.0f}" if "bf16" in d.matrix_flops_per_s else "-",
                 f"{d.physical_memory_bytes / GiB:.0f}", f"{d.memory_bytes / GiB:.1f}",
                 f"{d.memory_bandwidth_bytes_per_s / TB:.2f}", f"{d.power.tdp_w:.0f}"]
                for d in devices]
        # Per device. A datasheet's "80 GB" of HBM is 80 GiB of chips; "usable" is what the runtime can allocate.
        print(table(rows, ["device", "name", "bf16 TFLOP/s", "memory GiB", "usable GiB", "memory TB/s", "TDP W"]))
        print("\nper device; memory as the datasheet means it (its \"80 GB\" is 80 GiB), usable as the runtime "
              "reports it; sources: `emulator profiles show NAME`")
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
        print_json(summary)
        return
    sources = summary.pop("sources", {})
    for key, value in summary.items():
        print(f"{key}: {value}")
    print("sources:")
    for key, value in sources.items():
        print(f"  {key}: {value}")



def models(args: argparse.Namespace) -> None:
    if args.action == "list":
        models = [preset(n) for n in list_models()]
        if args.json:
            print_json({m.name: m.summary() for m in models})
            return
        rows = [[m.name, type(m).__name__.removesuffix("Config"), f"{m.num_params() / 1e9:.2f}",
                 f"{m.num_active_params() / 1e9:.2f}"] for m in models]
        print(table(rows, ["model", "kind", "params (B)", "active (B)"]))
        return
    if not args.name:
        raise EmulatorError("needs a NAME or a config.json path. Fix: `emulator models show llama3-8b`.")
    m = load_model(args.name, origin="<command line>")
    summary = m.summary()
    if args.json:
        print_json(summary)
        return
    for key, value in summary.items():
        print(f"{key}: {value}")


def _stack(name: str, kind: str | None) -> StackProfile:
    """The shipped stack `name`, of `kind` when given; without one, the only kind that has the name."""
    kinds = [k for k in STACK_KINDS if name in list_stacks(k)]
    if kind in kinds or (kind is None and len(kinds) == 1):
        return load_stack(name, kind or kinds[0])
    if kind is None and kinds:
        raise EmulatorError(f"'{name}' is a {' and a '.join(kinds)} stack. Fix: add "
                            f"{' or '.join(f'--kind {k}' for k in kinds)}.")
    if kinds:
        raise EmulatorError(f"'{name}' is a {kinds[0]} stack, not a {kind} one. Fix: use --kind {kinds[0]}, or a "
                            f"name from `emulator stacks list --kind {kind}`.")
    hint = nearest(name, {n for k in STACK_KINDS for n in list_stacks(k)})
    raise EmulatorError(f"'{name}' is not a shipped stack; {hint}{'' if hint.endswith('?') else '.'} Fix: use a "
                        f"name from `emulator stacks list`.")


def stacks(args: argparse.Namespace) -> None:
    if args.action == "list":
        profiles = [load_stack(n, k) for k in ([args.kind] if args.kind else STACK_KINDS) for n in list_stacks(k)]
        if args.json:
            print_json([{"name": s.name, "kind": s.kind, "title": s.title, "versions": s.versions} for s in profiles])
            return
        print(table([[s.kind, s.name, s.title, s.versions] for s in profiles], ["kind", "stack", "title", "versions"]))
        return
    if not args.name:
        raise EmulatorError("needs a NAME. Fix: `emulator stacks show megatron-core` (see `emulator stacks list`).")
    stack = _stack(args.name, args.kind)
    # Its end-to-end errors against published measurements, every device family (stacks.accuracy)
    checked = [r for r in accuracy_records() if r.stack == stack.name]
    shown = stack.as_dict() | {"validated": [r.as_dict() for r in checked]}
    if args.json:
        print_json(shown)
        return
    print(f"{stack.label}\ntitle: {stack.title}\nkind: {stack.kind}\nfile: {stack.path}\nitems:")
    for key, item in shown["items"].items():
        # Values as the profile writes them (JSON is YAML's flow style); sources run long, so each has its line.
        origin = "fit" if "fit" in item else "source"
        print(f"  {key}: {json.dumps(item['value'])}\n      {origin}: {item[origin]}")
    print("validated:" + ("" if checked else " no published measurements compared yet"))
    for r in checked:
        print(f"  on {r.device_family} devices, {r.describe()}")
        for whose, errors in r.by_model_class.items():
            print(f"      {errors.describe(r.metric, f' of {MODEL_CLASSES[whose]}')}; {errors.num_cases} cases")


def results(args: argparse.Namespace) -> None:
    store = ResultsStore(args.db)
    if args.action == "list":
        runs = store.list_runs(args.limit)
        if args.json:
            print_json(runs)
            return
        rows = [[str(r["id"]), r["kind"], r["created_at"], r["device_key"]] for r in runs]
        print(table(rows, ["id", "kind", "created", "device"]))
    elif args.action == "show":
        if args.id is None:
            raise EmulatorError("needs a run id. Fix: `emulator results show ID` (see `emulator results list`).")
        print_json(store.get_run(args.id))
    else:
        store.export(args.format, args.output or sys.stdout)
