#!/usr/bin/env bash
# Measure this machine's NVIDIA GPU end to end, in under 8 minutes, with nothing installed but the image:
#   (1) nvidia-smi header and the device fingerprint
#   (2) `emulator calibrate --quick`: the sweep (traced cost + measured seconds) and its fit
#   (3) best-rate matrix products (bf16, fp16, fp8) and a device-to-device copy: the two ceilings
#   (4) `emulator validate`: whole-model steps, measured against predicted
#   (5) whole-model step times with power and a per-kernel profile
# Usage: benchmarks/device_check.sh [OUT_DIR]   (default $OUT). Writes at most 8 files, no subfolders.
set -u
OUT_DIR="${1:-${OUT:?give an output folder or set OUT}}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/device_check.log"
: > "$LOG"
say() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }
status=0
step() {  # step SECONDS NAME CMD...: run with a timeout, log everything, remember failures
    local limit=$1 name=$2; shift 2
    say "$name (limit ${limit}s)"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    say "$name: rc=$rc in $((SECONDS - t0))s"
    [ $rc -eq 0 ] || status=1
}

# (1) who we are
say "nvidia-smi"
{ timeout 20 nvidia-smi -q | head -40; timeout 20 nvidia-smi; } > "$OUT_DIR/nvidia_smi.txt" 2>&1
step 60 fingerprint "$PY" -c "
import json, sys, torch
from emulator.measure.machine import device_fingerprint
json.dump(device_fingerprint('cuda' if torch.cuda.is_available() else 'cpu'), open(sys.argv[1], 'w'), indent=1)
print(open(sys.argv[1]).read())" "$OUT_DIR/fingerprint.json"

# (2) the quick calibration: sweep, fit, write <key>.json and <key>.points.json into the output folder
export EMULATOR_CALIBRATIONS="$OUT_DIR" EMULATOR_RESULTS="$OUT_DIR/.results.sqlite"
step 150 calibrate "$PY" -m emulator calibrate --device cuda --quick --no-record

# (3) the two ceilings: best matrix rate per dtype, and a large device-to-device copy
step 75 matmul_best "$PY" - "$OUT_DIR/matmul_best.json" <<'EOF'
import json, sys, torch
from emulator.measure.machine import device_fingerprint
from emulator.measure.timer import time_callable
from kernels import references as R

dev = torch.device("cuda")
rows = []
shapes = [(4096, 4096, 4096), (8192, 8192, 8192), (16384, 8192, 8192), (8192, 8192, 1024)]
for dtype in ("bf16", "fp16", "fp8"):
    for m, n, k in shapes:
        p = {"m": m, "n": n, "k": k}
        if dtype == "fp8":
            if not R.fp8_supported(dev):
                continue
            ins, fn = R.scaled_mm_inputs(p, device=dev, dtype=R.torch_dtype("fp8")), R.scaled_mm
        else:
            ins, fn = R.gemm_inputs(p, device=dev, dtype=R.torch_dtype(dtype)), R.gemm
        meas = time_callable(lambda: fn(*ins), device=dev, target_time_s=0.5, min_reps=10)
        rate = 2 * m * n * k / meas.median_s
        rows.append({"kind": "matmul", "dtype": dtype, "m": m, "n": n, "k": k, **meas.as_dict(), "flop_per_s": rate})
        print(f"{dtype:5s} {m}x{n}x{k}: {meas.median_s * 1e3:8.3f} ms  {rate / 1e12:7.1f} TFLOP/s  spread {meas.spread:.3f}")
        del ins
for num_bytes in (256 * 2**20, 2 * 2**30):
    ins = R.copy_inputs({"bytes": num_bytes}, device=dev, dtype=torch.bfloat16)
    meas = time_callable(lambda: R.copy(*ins), device=dev, target_time_s=0.5, min_reps=10)
    bw = 2 * num_bytes / meas.median_s  # bytes read + bytes written
    rows.append({"kind": "copy", "bytes": num_bytes, **meas.as_dict(), "bytes_per_s": bw})
    print(f"copy {num_bytes / 2**20:6.0f} MiB: {meas.median_s * 1e3:8.3f} ms  {bw / 1e12:6.2f} TB/s (read+write)")
    del ins
json.dump({"fingerprint": device_fingerprint(dev), "results": rows}, open(sys.argv[1], "w"), indent=1)
EOF

# (4) validation: whole-model steps measured against the prediction from the calibration just written
say "validate"
timeout --kill-after=10 150 "$PY" -m emulator validate --device cuda --json > "$OUT_DIR/validate.json" 2>>"$LOG" \
    || status=1
cat "$OUT_DIR/validate.json" >> "$LOG"

# (5) whole-model steps: power (NVML) and a per-kernel profile (written after each workload)
step 100 workloads "$PY" "$REPO/benchmarks/run_workloads.py" --device cuda --out "$OUT_DIR/workloads.json" \
    --target-time 0.5 --power-time 1.5
rm -f "$OUT_DIR/.results.sqlite"*

say "done (status $status); files:"
ls -la "$OUT_DIR" | tee -a "$LOG"
exit $status
