#!/usr/bin/env bash
# Install the emulator into ./.venv (created on first use) and put its command on PATH for the caller.
#   bash scripts/setup.sh          runtime only
#   bash scripts/setup.sh test     with the test tools
# An existing torch >= 2.4 (CUDA or CPU, in the interpreter that runs this) is reused through
# --system-site-packages; otherwise the CPU build torch==2.13.0 is installed, never a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv --system-site-packages .venv
fi
vpy=.venv/bin/python
if ! "$vpy" - <<'PY' 2>/dev/null
import sys, torch
major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
sys.exit(0 if (major, minor) >= (2, 4) else 1)
PY
then
  echo "setup: no torch >= 2.4 found; installing the CPU build torch==2.13.0" >&2
  "$vpy" -m pip install --quiet "torch==2.13.0"
fi
if [ "$extra" = "test" ]; then
  "$vpy" -m pip install --quiet -e ".[test]"
else
  "$vpy" -m pip install --quiet -e .
fi
