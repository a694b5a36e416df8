"""Calibration files: lookup, transfer, corruption, foreign devices, and the shipped H200 fit replayed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.calibration import (
    efficiency_for,
    load_for_device,
    profile_for_fingerprint,
    read_calibration,
    shipped_dir,
    table_from,
)
from emulator.errors import EmulatorError
from emulator.hardware import load_device
from emulator.validate import replay

SHIPPED = shipped_dir() / "cuda-nvidia-h200-sm90.json"
RUN = shipped_dir() / "runs" / "h200-2026-11-26-shipped"


@pytest.fixture(autouse=True)
def _no_user_calibrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMULATOR_CALIBRATIONS", str(tmp_path / "user-calibrations"))


def test_h200_is_calibrated_and_h100_transferred() -> None:
    """The shipped H200 calibration makes H200 predictions calibrated and H100 ones transferred; others spec."""
    assert efficiency_for(load_device("h200-sxm")).provenance == "calibrated"
    h100 = efficiency_for(load_device("h100-sxm"))
    assert h100.provenance == "transferred"
    assert h100.error_band > efficiency_for(load_device("h200-sxm")).error_band
    assert efficiency_for(load_device("a100-sxm")).provenance == "spec"


def test_shipped_h200_calibration_replays_within_bounds() -> None:
    """The recorded H200 whole-model step times are predicted within 10% median and 25% max |error|."""
    data = read_calibration(SHIPPED)
    measured = json.loads((RUN / "validate.json").read_text())["cases"]
    profile = profile_for_fingerprint(data["fingerprint"])
    assert profile is not None and profile.name == "h200-sxm"
    out = replay(measured, profile, table_from(data, str(SHIPPED)))
    assert out["summary"]["median_abs_error"] <= 0.10, out
    assert out["summary"]["max_abs_error"] <= 0.25, out


def test_corrupted_calibration_is_a_clear_error(tmp_path: Path) -> None:
    """A truncated file and a file with invalid efficiencies both name the file and the fix."""
    bad = tmp_path / "x.json"
    bad.write_text(SHIPPED.read_text()[:200])
    with pytest.raises(EmulatorError, match="corrupted or truncated"):
        read_calibration(bad)
    data = json.loads(SHIPPED.read_text())
    data["families"]["gemm"]["math"] = -1
    bad.write_text(json.dumps(data))
    with pytest.raises(EmulatorError, match="families.gemm"):
        read_calibration(bad)


def test_foreign_device_calibration_is_refused() -> None:
    """Passing the H200 calibration for another device, or another machine, is an error, never used silently."""
    with pytest.raises(EmulatorError, match="h200-sxm"):
        load_for_device(str(SHIPPED), load_device("b200"))
    with pytest.raises(EmulatorError, match="this machine"):
        load_for_device(str(SHIPPED), None, fingerprint_key="cpu-some-other-machine-2t")


def test_user_calibration_wins_and_corruption_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A calibration in the user's folder is found first; a corrupt one there is an error, not a fallback."""
    user = tmp_path / "mine"
    user.mkdir()
    monkeypatch.setenv("EMULATOR_CALIBRATIONS", str(user))
    data = json.loads(SHIPPED.read_text())
    data["families"]["gemm"]["math"] = 0.5
    (user / "cuda-nvidia-h200-sm90.json").write_text(json.dumps(data))
    table = efficiency_for(load_device("h200-sxm"))
    assert table.source.startswith(str(user)) and table.get("gemm").math == 0.5
    (user / "cuda-nvidia-h200-sm90.json").write_text("{not json")
    with pytest.raises(EmulatorError):
        efficiency_for(load_device("h200-sxm"))
