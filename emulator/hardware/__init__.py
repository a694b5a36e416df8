"""Hardware as data: device, system and site profiles (`profiles`) and their loader (`load`).

    checks.py    errors that carry a field path; the checks every profile passes (positive, sourced numbers)
    profiles.py  frozen, validated dataclasses: DeviceProfile, SystemProfile, Site and their parts
    load.py      finding profiles by name or path, YAML to dataclasses, the default system of a device
"""

from emulator.hardware.load import (
    default_system,
    list_devices,
    list_sites,
    list_systems,
    load_device,
    load_site,
    load_system,
    profile_summary,
    profiles_root,
)
from emulator.hardware.profiles import (
    DTYPES,
    Achievable,
    DeviceProfile,
    Links,
    MemoryTier,
    Power,
    Price,
    ScaleOut,
    ScaleUp,
    Site,
    SystemPower,
    SystemPrice,
    SystemProfile,
)

__all__ = [
    "DTYPES", "Achievable", "DeviceProfile", "Links", "MemoryTier", "Power", "Price", "ScaleOut", "ScaleUp", "Site",
    "SystemPower", "SystemPrice", "SystemProfile", "default_system", "list_devices", "list_sites", "list_systems",
    "load_device", "load_site", "load_system", "profile_summary", "profiles_root",
]
