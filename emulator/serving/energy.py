"""Energy of serving: device power from its profile's power states scaled by utilisation.

    power per device = idle_w + (tdp_w - idle_w) x utilisation
utilisation = the busy fraction of the replica's time (iterations running) times the activity of the kernels it
runs (1: the predicted kernels are compute or memory bound nearly all of an iteration; an assumption until NVML
measurements are shipped). A calibration that records a measured board power under load (`power_w` in its JSON)
replaces the TDP as the full-load power. Energy per output token = total power x duration / output tokens; per
query likewise. Host and network power are left to the economics stage.
"""

from __future__ import annotations

import functools
import os

from emulator.engine.calibration import read_calibration
from emulator.engine.efficiency import EfficiencyTable
from emulator.errors import EmulatorError
from emulator.hardware import DeviceProfile


@functools.lru_cache(maxsize=32)
def _measured_power_w(path: str, mtime_ns: int) -> float | None:
    """`power_w` of a calibration file (cached per file version: serving searches ask once per candidate)."""
    try:
        measured = read_calibration(path).get("power_w")
    except EmulatorError:  # changed since its table was loaded: the table stays in use, with the TDP
        return None
    return float(measured) if isinstance(measured, (int, float)) and not isinstance(measured, bool) else None


def full_load_w(device: DeviceProfile, table: EfficiencyTable | None = None) -> float:
    """Board power at full load: a calibration's measured power where it has one, else the profile's TDP; never
    above the device's power limit."""
    if table is not None and table.source.endswith(".json") and os.path.isfile(table.source):
        measured = _measured_power_w(table.source, os.stat(table.source).st_mtime_ns)
        if measured is not None and device.power.idle_w < measured <= device.power.tdp_w * 1.2:
            return min(measured, device.max_power_w)
    return device.max_power_w


def device_power_w(device: DeviceProfile, utilisation: float, table: EfficiencyTable | None = None) -> float:
    u = min(max(utilisation, 0.0), 1.0)
    return device.power.idle_w + (full_load_w(device, table) - device.power.idle_w) * u


def energy_per_unit_j(power_w: float, units_per_s: float) -> float:
    """Joules per output token (or per query) at a sustained rate."""
    return power_w / units_per_s if units_per_s > 0 else float("inf")


__all__ = ["device_power_w", "energy_per_unit_j", "full_load_w"]
