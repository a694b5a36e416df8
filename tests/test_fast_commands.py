"""Listings and help never import torch: they answer at once, even where torch is slow to load.

Each command runs in a fresh interpreter (this one has imported torch already); how fast they answer is timed in
benchmarks/test_fast_commands_speed.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Run the command as the `emulator` script does, then report its exit status and whether torch was imported;
# the emulator modules loaded say which one pulled torch in when a check fails.
PROBE = """
import json, sys
from emulator.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "torch": "torch" in sys.modules,
                  "emulator": sorted(m for m in sys.modules if m.startswith(("emulator", "kernels")))}))
"""

COMMANDS = [
    ["--help"],
    ["--version"],
    ["profiles", "list"],
    ["profiles", "list", "--json"],
    ["profiles", "show", "h100-sxm"],
    ["models", "list"],
    ["models", "list", "--json"],
    ["models", "show", "llama3-8b"],
    ["results", "list"],
    ["results", "list", "--json"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_command_answers_without_importing_torch(argv: list[str], tmp_path: Path) -> None:
    """The command exits 0 and torch is not among the modules loaded afterwards."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "EMULATOR_RESULTS": str(tmp_path / "results.sqlite"), "EMULATOR_CALIBRATIONS": str(tmp_path / "cal")}
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0, proc.stderr
    assert not report["torch"], f"`emulator {' '.join(argv)}` imported torch; modules loaded: {report['emulator']}"
