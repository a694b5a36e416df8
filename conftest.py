"""Every test is hermetic: the user's own calibrations, results store and profile folder never change a result.

From the start of the session (before test modules are collected, since some load profiles at import), every
`EMULATOR_*` variable of the caller's shell is removed (`EMULATOR_PROFILES` would replace the shipped devices)
and `EMULATOR_CALIBRATIONS`, `EMULATOR_RESULTS`, `XDG_DATA_HOME` and the disk cache `EMULATOR_CACHE` point into an
empty temporary folder: what session- and module-scoped fixtures see. Each test then gets its own
(`tmp_path / "calibrations"`, `tmp_path / "results.sqlite"`, `tmp_path / "cache"`). Subprocesses inherit the same
environment. The repository's shipped
calibrations (`calibrations/*.json`) are part of the product and stay visible. `EMULATOR_ACCURACY`, the
benchmarks' switch, is the harness's own and is kept.

The calibration index (`emulator.engine.calibration`) is cached by its files' paths and modification times;
its caches are emptied before and after every test, so no test sees another's calibration files.

`cpu_validation` runs `emulator calibrate --device cpu --quick` then `emulator validate --device cpu` in that
environment: the smoke test in tests/test_calibrate_cli.py and the accuracy benchmark read the same run. This
file sits at the repository's root so that tests/ and benchmarks/ share one definition of each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent
HARNESS_VARIABLES = {"EMULATOR_ACCURACY"}  # the test harness's own switches, not the tool's settings


def isolate(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Point the user's data at `folder` and drop the caller's `EMULATOR_*` settings."""
    for key in [k for k in os.environ if k.startswith("EMULATOR_") and k not in HARNESS_VARIABLES]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("EMULATOR_CALIBRATIONS", str(folder / "calibrations"))
    monkeypatch.setenv("EMULATOR_RESULTS", str(folder / "results.sqlite"))
    monkeypatch.setenv("XDG_DATA_HOME", str(folder / "xdg-data"))
    monkeypatch.setenv("EMULATOR_CACHE", str(folder / "cache"))


def forget_calibrations() -> None:
    """Empty every cache of the calibration lookup (when it has been imported at all)."""
    module = sys.modules.get("emulator.engine.calibration")
    for value in vars(module).values() if module is not None else ():
        if callable(getattr(value, "cache_clear", None)) and hasattr(value, "cache_info"):
            value.cache_clear()


def pytest_configure(config: pytest.Config) -> None:
    """Isolate the whole session, collection included."""
    monkeypatch = pytest.MonkeyPatch()
    folder = Path(tempfile.mkdtemp(prefix="emulator-tests-"))
    isolate(monkeypatch, folder)
    config.emulator_session_data = (monkeypatch, folder)  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give the caller's environment back and remove the session's folder."""
    state = getattr(config, "emulator_session_data", None)
    if state is not None:
        monkeypatch, folder = state
        monkeypatch.undo()
        shutil.rmtree(folder, ignore_errors=True)
        config.emulator_session_data = None  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The user's data folder for one test: its own `tmp_path`, empty, with a fresh calibration index."""
    isolate(monkeypatch, tmp_path)
    forget_calibrations()
    yield tmp_path
    forget_calibrations()


def run_emulator(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`python -m emulator ARGS` on this checkout (the working directory comes first on the path), in the calling
    test's hermetic environment."""
    return subprocess.run([sys.executable, "-m", "emulator", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


@pytest.fixture
def emulator_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`emulator_cli(*args, timeout=600)`: run the command line as a user would, in this test's environment."""
    return run_emulator


@dataclass(frozen=True, slots=True)
class CpuValidation:
    """`calibrate --device cpu --quick --json` and then `validate --device cpu --json`, as parsed."""

    calibration: dict[str, Any]
    result: dict[str, Any]

    @property
    def table(self) -> str:
        """The validation as a person reads it: one line per workload, then the summary."""
        r = self.result
        lines = [f"validate --device cpu ({r['provenance']} from {r['calibration']}):"]
        lines += [f"  {c['id']:24s} {c['phase']:8s} measured {c['measured'] * 1e3:9.2f} ms  "
                  f"predicted {c['predicted'] * 1e3:9.2f} ms  error {c['error']:+6.1%}" for c in r["cases"]]
        lines.append(f"  median |error| {r['summary']['median_abs_error']:.1%}, "
                     f"max |error| {r['summary']['max_abs_error']:.1%}")
        return "\n".join(lines)


@pytest.fixture
def cpu_validation(hermetic: Path, capsys: pytest.CaptureFixture[str]) -> CpuValidation:
    """This CPU calibrated (quick) into the test's own folder, then validated; the table goes to the log."""
    cal = run_emulator("calibrate", "--device", "cpu", "--quick", "--json")
    assert cal.returncode == 0, cal.stderr
    out = run_emulator("validate", "--device", "cpu", "--json")
    assert out.returncode == 0, out.stderr
    run = CpuValidation(calibration=json.loads(cal.stdout), result=json.loads(out.stdout))
    with capsys.disabled():
        print(f"\n{run.table}")
    return run
