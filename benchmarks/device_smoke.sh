#!/usr/bin/env bash
# After a merge day: the shipped calibration's `validate` and `emulator run` (training and serving, scale models)
# on an NVIDIA GPU, each with a time limit, everything under OUT_DIR (at most 8 files). About 3 minutes.
# Usage: benchmarks/device_smoke.sh [OUT_DIR]   (default $OUT)
set -u
OUT_DIR="${1:-${OUT:?give an output folder or set OUT}}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" EMULATOR_RESULTS="$OUT_DIR/.results.sqlite"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/smoke.log"
: > "$LOG"
status=0
run() {  # run LIMIT NAME CMD...: stdout to NAME.json, stderr to the log
    local limit=$1 name=$2; shift 2
    echo "== $(date -u +%H:%M:%S) $name" | tee -a "$LOG"
    timeout --kill-after=10 "$limit" "$@" > "$OUT_DIR/$name.json" 2>>"$LOG" || { status=1; echo "== $name failed" | tee -a "$LOG"; }
}
run 150 validate "$PY" -m emulator validate --device cuda --json
run 120 run_serve "$PY" -m emulator run "$REPO/examples/llama3-8b-h100-serve.yaml" --device cuda --scale 0.25 --yes --json
run 150 run_train "$PY" -m emulator run "$REPO/examples/llama3-70b-h100-train.yaml" --device cuda --scale 0.02 --yes --json
rm -f "$OUT_DIR/.results.sqlite"*
tail -c 3000 "$LOG"
exit $status
