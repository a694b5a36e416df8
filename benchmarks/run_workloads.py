"""Measure whole-model steps on a real device: step time (median, p20, p80), power and a per-kernel profile.

Each workload is recorded with its exact config (the Hugging Face-style mapping), phase, shapes and dtype, so
a prediction can be recomputed later and set beside the measurement.

    PYTHONPATH=. python benchmarks/run_workloads.py --device cuda --out workloads.json
    PYTHONPATH=. python benchmarks/run_workloads.py --device cpu --tiny --out /tmp/workloads.json
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import traceback
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from emulator.files import write_json_atomic  # noqa: E402
from emulator.measure.machine import device_fingerprint  # noqa: E402
from emulator.measure.power import PowerSampler  # noqa: E402
from emulator.measure.profiler import profile_kernels  # noqa: E402
from emulator.measure.timer import time_callable  # noqa: E402
from emulator.validation.validate import CPU_WORKLOADS, CUDA_WORKLOADS, Workload  # noqa: E402

WORKLOADS = CUDA_WORKLOADS

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _predicted_cost(model: Any, w: Workload, b: int, s: int, kv: int) -> dict[str, float] | None:
    try:
        from emulator.engine.trace import trace_workload

        cost = trace_workload(model, w.phase, b, s, kv, DTYPES[w.dtype]).total_cost()
        return {k: float(v) for k, v in cost.as_dict().items()}
    except Exception as exc:  # noqa: BLE001 - the trace is a bonus here; the measurement is the point
        return {"error": f"{type(exc).__name__}: {exc}"}  # type: ignore[dict-item]


def run_one(w: Workload, device: torch.device, *, tiny: bool, target_time_s: float,
            power_time_s: float = 2.0) -> dict[str, Any]:
    from emulator.workloads.hf import from_hf_config
    from emulator.workloads.program import build_step

    config = dict(w.config)
    b, s, kv = w.batch_size, w.seq_len, w.kv_len
    record: dict[str, Any] = {"name": w.name, "config": config, "phase": w.phase, "batch_size": b, "seq_len": s,
                              "kv_len": kv, "dtype": w.dtype, "device": str(device)}
    model = from_hf_config(config, origin=f"workload {w.name}", name=w.name)
    record["predicted_cost"] = _predicted_cost(model, w, b, s, kv)
    t0 = time.perf_counter()
    step = build_step(model, w.phase, batch_size=b, seq_len=s, kv_len=kv, dtype=DTYPES[w.dtype],  # type: ignore[arg-type]
                      device=device)
    record["build_s"] = time.perf_counter() - t0
    m = time_callable(step, device=device, warmup=2, min_reps=5, max_reps=50, target_time_s=target_time_s,
                      flush_l2=False)  # a whole step streams far more than L2; flushing adds nothing
    record["measurement"] = m.as_dict(with_samples=True)
    # Power over a separate steady run of at least `power_time_s`: NVML's power reading is averaged over
    # about a second, so the short timed loop above would under-read it.
    num_steps, t0 = 0, time.perf_counter()
    with PowerSampler(device) as power:
        while num_steps < 3 or time.perf_counter() - t0 < power_time_s:
            step()
            num_steps += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    reading = power.reading.as_dict() if power.reading else {}
    reading["num_steps"] = num_steps
    energy = reading.get("energy_counter_j") or reading.get("energy_j")
    reading["energy_per_step_j"] = energy / num_steps if energy else None
    if reading.get("energy_counter_j") and reading.get("duration_s"):
        reading["mean_power_counter_w"] = reading["energy_counter_j"] / reading["duration_s"]
    record["power"] = reading
    tokens = b if w.phase == "decode" else b * s
    record["tokens_per_s"] = tokens / m.median_s
    cost = record["predicted_cost"] or {}
    if "matrix_flops" in cost:
        record["achieved_flop_per_s"] = (cost["matrix_flops"] + cost["vector_flops"]) / m.median_s
    if device.type == "cuda":
        record["max_memory_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
    record["profile_top"] = profile_kernels(step, device, top=15)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="the narrow CPU validation models (a CPU dry run)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default=None, help="comma-separated workload names")
    ap.add_argument("--target-time", type=float, default=1.0, help="timed seconds per workload (at most)")
    ap.add_argument("--power-time", type=float, default=2.0, help="seconds of steady steps for the power reading")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    pool = CPU_WORKLOADS if args.tiny else WORKLOADS
    chosen = [w for w in pool if not args.only or w.name in args.only.split(",")]
    result: dict[str, Any] = {"fingerprint": device_fingerprint(device), "tiny": args.tiny, "workloads": []}
    for w in chosen:
        t0 = time.perf_counter()
        try:
            rec = run_one(w, device, tiny=args.tiny, target_time_s=args.target_time, power_time_s=args.power_time)
        except Exception as exc:  # noqa: BLE001 - one failing workload must not lose the others
            rec = {"name": w.name, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        rec["wall_s"] = time.perf_counter() - t0
        result["workloads"].append(rec)
        write_json_atomic(result, args.out)  # after each workload, so a timeout keeps what finished
        if "error" in rec:
            print(f"{w.name:32s} ERROR {rec['error'][:200]}", file=sys.stderr, flush=True)
        else:
            m, pw = rec["measurement"], rec["power"] or {}
            flops = rec.get("achieved_flop_per_s")
            print(f"{w.name:32s} {m['median_s'] * 1e3:9.2f} ms (p20 {m['p20_s'] * 1e3:.2f}, p80 {m['p80_s'] * 1e3:.2f})"
                  f"  {rec['tokens_per_s']:10.0f} tok/s"
                  + (f"  {flops / 1e12:7.1f} TFLOP/s" if flops else "")
                  + (f"  {pw.get('mean_power_counter_w') or pw['mean_power_w']:.0f} W mean"
                     f" {pw['peak_power_w']:.0f} W peak {pw['energy_per_step_j']:.2f} J/step"
                     if pw.get("mean_power_w") else "")
                  + f"  [{rec['wall_s']:.0f}s]", file=sys.stderr, flush=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
