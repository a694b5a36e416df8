"""`emulator calibrate` and `emulator validate` on this CPU, as CI runs them, and a calibration killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(EMULATOR_CALIBRATIONS=str(tmp_path / "calibrations"), EMULATOR_RESULTS=str(tmp_path / "results.sqlite"),
               PYTHONPATH=str(ROOT))
    return env


def _emulator(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emulator", *args], capture_output=True, text=True, cwd=ROOT,
                          env=_env(tmp_path), timeout=timeout)


def test_killed_calibration_leaves_no_half_written_state_and_a_rerun_completes(tmp_path: Path) -> None:
    """SIGKILL during a calibration leaves no partial calibration file or store run; running it again succeeds."""
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "calibrate", "--device", "cpu", "--quick", "--only",
                             "copy,elementwise"], cwd=ROOT, env=_env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(4.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    folder = tmp_path / "calibrations"
    for f in folder.glob("*.json") if folder.exists() else []:
        json.loads(f.read_text())  # whatever exists is whole
    assert not list(folder.glob(".tmp-*")) if folder.exists() else True
    listed = _emulator(tmp_path, "results", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert all(r["kind"] == "calibration" for r in json.loads(listed.stdout))
    rerun = _emulator(tmp_path, "calibrate", "--device", "cpu", "--quick", "--only", "copy,elementwise", "--json")
    assert rerun.returncode == 0, rerun.stderr
    data = json.loads(rerun.stdout)
    assert set(data["families"]) >= {"copy", "elementwise"}
    runs = json.loads(_emulator(tmp_path, "results", "list", "--json").stdout)
    assert len(runs) == 1 and runs[0]["kind"] == "calibration"


# The target on a CPU: median |error| <= 10% and max <= 25%. On the shared 2-core virtual machine this was
# built on, six fresh calibrate-then-validate runs with the speed reference and the cold-call curve gave medians
# of 4.1-6.0% and maxima of 7.0-15.2% (before them, twelve runs met both bounds only six times; see the notes,
# `emulator.measure.speed` and `fit.cold_call_curve`).
CPU_MEDIAN_BOUND = 0.10
CPU_MAX_BOUND = 0.25


@pytest.mark.slow
def test_cpu_calibrate_quick_then_validate(tmp_path: Path) -> None:
    """On this CPU: `calibrate --quick` fits the kernels, and `validate` predicts whole workloads it never
    fitted (dense and MoE transformers and the recommender; train, prefill and decode) within the issue's bounds."""
    cal = _emulator(tmp_path, "calibrate", "--device", "cpu", "--quick", "--json")
    assert cal.returncode == 0, cal.stderr
    out = _emulator(tmp_path, "validate", "--device", "cpu", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result["cases"]) >= 6
    assert {c["phase"] for c in result["cases"]} >= {"train", "prefill", "decode"}
    table = "\n".join(f"{c['id']}: measured {c['measured']:.4f} s predicted {c['predicted']:.4f} s "
                      f"error {c['error']:+.1%}" for c in result["cases"])
    print(table)
    assert result["provenance"] == "calibrated"
    assert all(c["speed_vs_calibration"] > 0 for c in result["cases"])
    assert result["summary"]["median_abs_error"] <= CPU_MEDIAN_BOUND, table
    assert result["summary"]["max_abs_error"] <= CPU_MAX_BOUND, table
