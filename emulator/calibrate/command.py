"""`emulator calibrate`: measure the sweep (or reload saved points), fit it, write the calibration file
atomically and record the run in the results store.

    emulator calibrate --device cuda --quick
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from emulator.calibrate.fit import cold_call_curve, fit_points, measured_peaks, point_calls
from emulator.calibrate.points import CalPoint, collect, read_points_json, write_points_json
from emulator.calibrate.sweeps import sweep
from emulator.engine.calibration import SCHEMA_VERSION, local_profile, profile_for_fingerprint, table_from, user_dir
from emulator.engine.trace import trace_workload
from emulator.errors import EmulatorError
from emulator.files import write_json_atomic
from emulator.measure.machine import device_fingerprint, host_overhead_s, last_level_cache_bytes
from emulator.measure.speed import Reference, at_reference_speed
from emulator.measure.timer import time_callable
from emulator.results import ResultsStore
from emulator.workloads.hf import from_hf_config
from emulator.workloads.program import build_step

# A family whose held-out error passes this predicts poorly enough that calibrate says so.
HIGH_ERROR = 0.30


def fit_warnings(families: dict[str, Any]) -> list[str]:
    """One line per fitted family that predicts poorly (held-out error over `HIGH_ERROR`) or whose efficiency the
    fit held at 1 (`fit.EFFICIENCY_CAP`)."""
    out = []
    for fam, v in sorted(families.items()):
        if v["error"] > HIGH_ERROR:
            out.append(f"{fam}: held-out error {v['error']:.0%} (over {HIGH_ERROR:.0%}) on {v['num_points']} points; "
                       "predictions that use it carry that error band. Re-run without --quick (more points) or on "
                       "a quieter machine.")
        for name, wanted in v.get("clamped", {}).items():
            out.append(f"{fam}: {name} efficiency held at 1.0 (unbounded, the fit gives {wanted:.2f}): its points "
                       "ran faster than the measured peak, their data left in a cache or the peak measured low.")
    return out


def build_calibration(points: Sequence[CalPoint], fingerprint: dict[str, Any],
                      host: dict[str, float] | None = None) -> dict[str, Any]:
    """Fit measured points into a calibration file's content (see `emulator.engine.calibration`)."""
    profile = profile_for_fingerprint(fingerprint)
    # A CPU sweep's points are fitted at one speed, the mean of the reference readings around them (see
    # `emulator.measure.speed`), and so are the host costs measured before the sweep.
    readings = [p.reference_s for p in points if p.reference_s]
    reference_s = sum(readings) / len(readings) if readings else None
    points = [p.at_reference(reference_s) for p in points]
    evicted = [p for p in points if p.params.get("evict")]  # not kernels of a family: see `sweeps._vector`
    points = [p for p in points if not p.params.get("evict")]
    host = dict(host or {})
    if reference_s and host.get("reference_s"):
        host = {k: at_reference_speed(v, host["reference_s"], reference_s) for k, v in host.items()}
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fingerprint": fingerprint,
        "device": profile.name if profile else None,
        "cache_bytes": fingerprint.get("l2_cache_bytes") or fingerprint.get("cache_bytes"),
        "synchronous": fingerprint.get("kind") != "cuda",
        "host_overhead_s": host.get("op", 0.0),
        "program_overhead_s": host.get("program", 0.0),
        "num_points": len(points) + len(evicted),
        "families": {"default": {}},
    }
    if reference_s:
        data["speed_reference_s"] = reference_s
    if profile is None:
        data["peaks"] = measured_peaks(points, [point_calls(p) for p in points], data["cache_bytes"])
        profile = local_profile(data)
    # GPU timings flush the L2 before every repetition (`measure.time_callable`); CPU ones keep the cache warm
    # except for the points that cycle cold copies of their inputs.
    gpu = fingerprint.get("kind") == "cuda"
    data["families"] = fit_points(points, profile, peaks=data.get("peaks"), flushed=gpu, host=not gpu)
    data["warnings"] = fit_warnings(data["families"])
    if evicted and data["cache_bytes"]:
        data["cold_call_curve"] = cold_call_curve(evicted, table_from(data, "(fit)"), profile,
                                                  float(data["cache_bytes"]))
    return data


# A model small enough that its kernels take next to nothing: a step's wall time over its op count is the host's
# cost per op inside a real program (module calls, Python, autograd bookkeeping), beyond a bare op's dispatch.
_TINY_MODEL = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2,
               "num_key_value_heads": 1, "intermediate_size": 32, "vocab_size": 64, "max_position_embeddings": 64}


def program_overhead_s(device: torch.device) -> float:
    """Host seconds per dispatched op in eager model steps (train, prefill, decode of a tiny model)."""
    model = from_hf_config(_TINY_MODEL, origin="calibration (host overhead)", name="tiny")
    per_op = []
    for phase, batch, seq, kv in (("train", 1, 8, 0), ("prefill", 1, 8, 0), ("decode", 1, 1, 8)):
        step = build_step(model, phase, batch_size=batch, seq_len=seq, kv_len=kv, dtype=torch.float32, device=device)  # type: ignore[arg-type]
        m = time_callable(step, device=device, warmup=3, min_reps=10, target_time_s=0.2, flush_l2=False)
        ops = sum(c.count for c in trace_workload(model, phase, batch, seq, kv, torch.float32).calls)
        per_op.append((m.mean_s if device.type == "cpu" else m.median_s) / ops)
    return sum(per_op) / len(per_op)


def _merge_previous(points: list[CalPoint], families: set[str], path: str) -> list[CalPoint]:
    """`--only` re-measures some families: keep this device's earlier points of all the others."""
    previous = path.removesuffix(".json") + ".points.json"
    if not os.path.exists(previous):
        return points
    _, old = read_points_json(previous)
    return [p for p in old if p.family not in families] + points


def calibrate_device(device: str, *, quick: bool, out: str | None = None, points_file: str | None = None,
                     record: bool = True, progress: bool = True,
                     only: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
    """Measure (or reload) the sweep, fit it, write the calibration file and record the run. -> (path, data)."""
    if points_file:
        fingerprint, points = read_points_json(points_file)
        host = fingerprint.get("host_overhead")
    else:
        dev = torch.device(device)
        fingerprint = device_fingerprint(dev)
        fingerprint["cache_bytes"] = last_level_cache_bytes(dev)
        reference = Reference(dev) if dev.type == "cpu" else None
        before = reference.read() if reference else 0.0
        host = host_overhead_s(dev)
        host["program"] = program_overhead_s(dev)
        if reference:
            host["reference_s"] = (before + reference.read()) / 2
        fingerprint["host_overhead"] = host
        todo = sweep(dev.type, quick)
        if only:
            unknown = sorted(set(only) - {p.family for p in todo})
            if unknown:
                raise EmulatorError(f"unknown kernel families {unknown}; the sweep has "
                                    f"{sorted({p.family for p in todo})}.", field="--only")
            todo = [p for p in todo if p.family in only]
        points = collect(device, quick, progress=progress, points=todo, reference=reference)
        if only:
            points = _merge_previous(points, set(only), out or str(user_dir() / f"{fingerprint['key']}.json"))
    traced = [p for p in points if p.matrix_flops is not None]
    if len(traced) < len(points):
        print(f"warning: {len(points) - len(traced)} points could not be traced and are left out of the fit",
              file=sys.stderr)
    if not traced:
        raise EmulatorError("no calibration point could be traced; see the warnings above.", field="points")
    data = build_calibration(traced, fingerprint, host)
    path = out or str(user_dir() / f"{fingerprint['key']}.json")
    points_path = path.removesuffix(".json") + ".points.json"
    write_points_json(points, fingerprint, points_path)
    data["points_file"] = os.path.basename(points_path)
    write_json_atomic(data, path)
    if record:
        summary = {fam: {k: v[k] for k in ("error", "num_points", "math", "memory", "overhead_s")}
                   for fam, v in data["families"].items()}
        ResultsStore().record_run("calibration", fingerprint, {"device": device, "quick": quick},
                                  {"path": path, "families": summary}, points=[p.as_dict() for p in points])
    return path, data
