"""Listings, help and the version never import torch (nor numpy): they answer at once, even where torch is slow to load.

Each command runs in a fresh interpreter (this one has imported torch already); how fast they answer is timed in
benchmarks/test_fast_commands_speed.py and benchmarks/test_cli_speed.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.cli.main import COMMANDS as SUBCOMMANDS
from emulator.results import ResultsStore

ROOT = Path(__file__).resolve().parents[1]
# Run the command as the `emulator` script does, then report its exit status and which heavy packages were imported;
# the emulator modules loaded say which one pulled them in when a check fails.
PROBE = """
import json, sys
from emulator.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "heavy": sorted(m for m in ("torch", "numpy") if m in sys.modules),
                  "emulator": sorted(m for m in sys.modules if m.startswith(("emulator", "kernels")))}))
"""

# A model given as a config.json path, as `models show` accepts one (written beside the store in the test's folder).
CONFIG = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
          "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 100, "max_position_embeddings": 256}

COMMANDS = [
    ["--help"],
    ["--version"],
    *([name, "--help"] for name in SUBCOMMANDS),
    ["profiles", "list"],
    ["profiles", "list", "--json"],
    ["profiles", "show", "h100-sxm"],
    ["profiles", "show", "gb200-nvl72", "--json"],
    ["profiles", "show", "default"],
    ["models", "list"],
    ["models", "list", "--json"],
    ["models", "show", "llama3-8b"],
    ["models", "show", "deepseek-v3", "--json"],
    ["models", "show", "config.json"],
    ["stacks", "list"],
    ["stacks", "list", "--kind", "serving", "--json"],
    ["stacks", "show", "megatron-core"],
    ["stacks", "show", "eager", "--kind", "serving", "--json"],
    ["results", "list"],
    ["results", "list", "--json"],
    ["results", "show", "1"],
    ["results", "export", "--format", "csv"],
]

# Mistakes answer with their one-paragraph error (status 2), as light as the answers.
MISTAKES = [
    ["profiles", "show", "h100"],
    ["models", "show", "llama3-8c"],
    ["stacks", "show", "eager"],
    ["results", "show", "42"],
]


def _probe(argv: list[str], folder: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Run `emulator ARGV` in a fresh interpreter in `folder`, with a results store holding one run."""
    store = folder / "results.sqlite"
    ResultsStore(store).record_run("calibration", {"key": "cpu-test-1t"}, {"quick": True}, {"num_points": 0})
    (folder / "config.json").write_text(json.dumps(CONFIG))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "EMULATOR_RESULTS": str(store), "EMULATOR_CALIBRATIONS": str(folder / "cal")}
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


def _pulled_in(argv: list[str], report: dict) -> str:
    return f"`emulator {' '.join(argv)}` imported {', '.join(report['heavy'])}; modules loaded: {report['emulator']}"


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_command_answers_without_importing_torch(argv: list[str], tmp_path: Path) -> None:
    """The command exits 0, and neither torch nor numpy is among the modules loaded afterwards."""
    proc, report = _probe(argv, tmp_path)
    assert report["rc"] == 0, proc.stderr
    assert report["heavy"] == [], _pulled_in(argv, report)


@pytest.mark.parametrize("argv", MISTAKES, ids=" ".join)
def test_a_mistake_answers_without_importing_torch(argv: list[str], tmp_path: Path) -> None:
    """A wrong name exits 2 with its one-paragraph error, and neither torch nor numpy is loaded."""
    proc, report = _probe(argv, tmp_path)
    assert report["rc"] == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert report["heavy"] == [], _pulled_in(argv, report)

