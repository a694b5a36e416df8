#!/usr/bin/env bash
# Measure this machine's NVIDIA GPU end to end, in under 8 minutes, with nothing installed but the image:
#   (1) nvidia-smi header and the device fingerprint
#   (2) `emulator calibrate --quick`: the sweep (traced cost + measured seconds) and its fit
#   (3) best-rate matrix products (bf16, fp16, fp8) and a device-to-device copy: the two ceilings
#   (4) `emulator validate`: whole-model steps, measured against predicted
#   (5) whole-model step times with power and a per-kernel profile
#   (6) what the stack models rest on: launch gaps eager and in CUDA graphs, expert GEMMs, fp8 scaling, decode
#       steps eager and graph-replayed (benchmarks/device_extras.py)
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
import json, torch
from emulator.measure.machine import device_fingerprint
print(json.dumps(device_fingerprint('cuda' if torch.cuda.is_available() else 'cpu'), indent=1))"

# (2) the quick calibration: sweep, fit, write <key>.json and <key>.points.json into the output folder
export EMULATOR_CALIBRATIONS="$OUT_DIR" EMULATOR_RESULTS="$OUT_DIR/.results.sqlite"
step 150 calibrate "$PY" -m emulator calibrate --device cuda --quick --no-record

# (3) the two ceilings: best matrix rate per dtype, and a large device-to-device copy
step 75 matmul_best "$PY" "$REPO/benchmarks/device_extras.py" --sections ceilings --out "$OUT_DIR/matmul_best.json"

# (4) validation: whole-model steps measured against the prediction from the calibration just written
say "validate"
timeout --kill-after=10 150 "$PY" -m emulator validate --device cuda --json > "$OUT_DIR/validate.json" 2>>"$LOG" \
    || status=1
cat "$OUT_DIR/validate.json" >> "$LOG"

# (5) whole-model steps: power (NVML) and a per-kernel profile (written after each workload)
step 100 workloads "$PY" "$REPO/benchmarks/run_workloads.py" --device cuda --out "$OUT_DIR/workloads.json" \
    --target-time 0.5 --power-time 1.5

# (6) facts for the software-stack models
step 180 extras "$PY" "$REPO/benchmarks/device_extras.py" --out "$OUT_DIR/extras.json"
rm -f "$OUT_DIR/.results.sqlite"*

say "done (status $status); files:"
ls -la "$OUT_DIR" | tee -a "$LOG"
exit $status
