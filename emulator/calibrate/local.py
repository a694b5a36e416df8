"""This machine's calibration: found by the fingerprint of the device measured here (for `run` and `validate`)."""

from __future__ import annotations

import dataclasses

from emulator.engine.calibration import (
    load_for_device,
    local_profile,
    profile_for_fingerprint,
    read_calibration,
    shipped_dir,
    user_dir,
)
from emulator.engine.efficiency import EfficiencyTable
from emulator.errors import EmulatorError
from emulator.hardware import DeviceProfile
from emulator.measure.machine import device_fingerprint


def local_calibration(device: str) -> tuple[DeviceProfile, EfficiencyTable]:
    """This machine's device and calibrated table, for run and validate; a clear error when uncalibrated."""
    fp = device_fingerprint(device)
    path = user_dir() / f"{fp['key']}.json"
    if not path.exists():
        shipped = shipped_dir() / f"{fp['key']}.json"
        if not shipped.exists():
            raise EmulatorError(
                f"this {fp['kind']} ({fp.get('name')}) has no calibration ({path} does not exist). Fix: run "
                f"`emulator calibrate --device {device} --quick` first.", field="device")
        path = shipped
    table = load_for_device(str(path), None, fingerprint_key=fp["key"])
    data = read_calibration(path)
    profile = profile_for_fingerprint(fp) or local_profile(data)
    if data.get("device"):
        table = dataclasses.replace(table, peaks={})
    return profile, table
