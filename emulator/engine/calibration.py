"""Calibration files: per-device fitted efficiencies, how they are found, checked and transferred.

A calibration file (JSON, written by `emulator calibrate`) holds, for one device fingerprint, the fitted
`FamilyEfficiency` of every kernel family, the host's per-op dispatch time, the measured peak rates (used
for devices without a profile, such as the local CPU) and the held-out error of each fit.

Lookup for a profile D, in order:
1. a calibration whose `device` is D          -> provenance `calibrated`
2. a measured sibling's (`_sibling`): the newest calibrated device of D's family (an H100's for an H200), else, when
   D publishes achievable rates, the newest calibrated device that does too, D's vendor first. Its efficiencies
   keep their shape response and have their ceilings moved to D's achievable rates (`engine.transfer`)
   -> `transferred`, every family's error band widened by `TRANSFER_ERROR` (same family) or
   `CROSS_FAMILY_TRANSFER_ERROR` (another family)
3. otherwise the spec defaults, moved to D's achievable rates where it publishes some -> `spec`
A power limit on D (`DeviceProfile.power_limit_w`) then scales the math rates by the clock share it leaves
(`engine.power_limit`).
Files are searched in the user's data directory (`$EMULATOR_CALIBRATIONS`, else
`$XDG_DATA_HOME/emulator/calibrations`) before the shipped ones (`files.shipped("calibrations")`: the package's, or
the repository's `calibrations/` in a checkout).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emulator.engine.efficiency import SPEC_DEFAULTS, EfficiencyTable, FamilyEfficiency
from emulator.engine.power_limit import power_limited
from emulator.engine.transfer import spec_for, transferred
from emulator.errors import EmulatorError
from emulator.files import read_json, shipped
from emulator.hardware import DeviceProfile, Links, MemoryTier, Power, Price, list_devices, load_device

SCHEMA_VERSION = 1
# Extra relative error for efficiencies carried to a sibling chip (different clocks, memory, power limits): the
# H100's measured steps predicted from the H200's calibration and back came within 4.8-6.8% median (README).
TRANSFER_ERROR = 0.05
# Another family's shape response (small-GEMM efficiency, per-call overheads, attention against GEMM) rests on no
# measurement of the chip; its achievable rates fix the ceilings only. Estimate: twice the in-family widening.
CROSS_FAMILY_TRANSFER_ERROR = 0.10
_FAMILY_KEYS = {f for f in FamilyEfficiency.__slots__}  # type: ignore[attr-defined]


def shipped_dir() -> Path:
    return shipped("calibrations")


def user_dir() -> Path:
    if os.environ.get("EMULATOR_CALIBRATIONS"):
        return Path(os.environ["EMULATOR_CALIBRATIONS"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "emulator" / "calibrations"


def search_dirs() -> list[Path]:
    return [user_dir(), shipped_dir()]


_FIX = "re-run `emulator calibrate` on that device to rewrite it, or delete the file"


def _bad(path: str, field: str, why: str) -> EmulatorError:
    return EmulatorError(f"{why} Fix: {_FIX}.", file=path, field=field)


def parse_calibration(data: Any, path: str) -> dict[str, Any]:
    """Validate a calibration's structure; a corrupted file is a clear error, never a wrong prediction."""
    if not isinstance(data, Mapping):
        raise _bad(path, "(top level)", "is not a JSON object.")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise _bad(path, "schema_version", f"is {version!r}; this version of the emulator reads {SCHEMA_VERSION}.")
    for key in ("fingerprint", "families", "created"):
        if key not in data:
            raise _bad(path, key, "is missing.")
    families = data["families"]
    if not isinstance(families, Mapping) or not families:
        raise _bad(path, "families", "must be a non-empty object of kernel families.")
    for fam, params in families.items():
        if not isinstance(params, Mapping):
            raise _bad(path, f"families.{fam}", "must be an object.")
        try:
            FamilyEfficiency(**{k: v for k, v in params.items() if k in _FAMILY_KEYS})
        except (TypeError, ValueError) as e:
            raise _bad(path, f"families.{fam}", f"holds invalid efficiencies ({e}).") from None
    curve = data.get("cold_call_curve", [])
    if not (isinstance(curve, list) and all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, (int, float)) and v >= 0 for v in pair)
            for pair in curve) and [pair[0] for pair in curve] == sorted({pair[0] for pair in curve})):
        raise _bad(path, "cold_call_curve",
                   f"is {curve!r}; it must be [bytes, seconds] pairs (>= 0) by rising bytes.")
    reference = data.get("speed_reference_s")
    if reference is not None and not (isinstance(reference, (int, float)) and reference > 0):
        raise _bad(path, "speed_reference_s", f"is {reference!r}; it must be the speed reference's seconds (> 0).")
    device = data.get("device")
    if device is not None and device not in list_devices():
        raise _bad(path, "device", f"names '{device}', which is not a shipped device profile.")
    return dict(data)


def read_calibration(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A calibration file, read by the strict file layer (duplicate keys refused) and validated."""
    path = str(path)
    return parse_calibration(read_json(path, fix=_FIX), path)


# A low-precision GEMM family fitted on fewer points than this has seen too few shapes to say how small, skinny or
# decode-shaped GEMMs run (the shipped H100/H200 fp8 sweeps: 6 squares, 512^3 to 16384^3), unless its points
# include products this narrow (a CPU's bf16 sweep: down to one row).
MIN_SHAPE_POINTS = 24
SKINNY_DIM = 16


def base_shaped(eff: FamilyEfficiency, base: FamilyEfficiency, lacking: float = 0.0) -> FamilyEfficiency:
    """A low-precision GEMM family with the 16-bit family's shape response: its large-GEMM math fraction is its
    own; how the rate falls for small and skinny shapes (small-matrix half size, wave tile, call overhead) and how
    fast weights stream (memory) are the base family's, since a low-precision GEMM can run the same tiles over fewer
    bytes. `lacking`: the share of evidence the family lacks, which widens its error by as much of the base's."""
    return dataclasses.replace(eff, memory=max(eff.memory, base.memory), half_dim=base.half_dim, tile=base.tile,
                               overhead_s=base.overhead_s, cache_speedup=base.cache_speedup,
                               error=max(eff.error, base.error) + lacking * base.error)


def _with_base_shape(fam: str, eff: FamilyEfficiency, p: Mapping[str, Any],
                     families: Mapping[str, FamilyEfficiency]) -> FamilyEfficiency:
    """A `gemm.<dtype>` family fitted on too few shapes takes the 16-bit `gemm` family's shape response
    (`base_shaped`), its error widened by the share of evidence it lacks; not one whose points include products as
    narrow as decode's (a CPU's bf16 sweep)."""
    base = families.get("gemm")
    if (base is None or not fam.startswith("gemm.") or int(p.get("num_points", MIN_SHAPE_POINTS)) >= MIN_SHAPE_POINTS
            or float(p.get("min_output_dim", math.inf)) <= SKINNY_DIM):
        return eff
    return base_shaped(eff, base, 1.0 - int(p.get("num_points", 0)) / MIN_SHAPE_POINTS)


def table_from(data: Mapping[str, Any], path: str, provenance: str = "calibrated", extra_error: float = 0.0,
               keep_peaks: bool = True) -> EfficiencyTable:
    families = {
        fam: FamilyEfficiency(**{**{k: v for k, v in p.items() if k in _FAMILY_KEYS},
                                 "error": float(p.get("error", 0.25))})
        for fam, p in data["families"].items()
    }
    families = {fam: _with_base_shape(fam, eff, data["families"][fam], families) for fam, eff in families.items()}
    families = {fam: dataclasses.replace(eff, error=eff.error + extra_error) for fam, eff in families.items()}
    return EfficiencyTable(
        families=families,
        provenance=provenance,
        source=path,
        host_overhead_s=float(data.get("host_overhead_s", 0.0)) if provenance == "calibrated" else 0.0,
        program_overhead_s=float(data.get("program_overhead_s", 0.0)) if provenance == "calibrated" else 0.0,
        synchronous=bool(data.get("synchronous", False)),
        peaks=dict(data.get("peaks", {})) if keep_peaks else {},
        reference_s=float(data["speed_reference_s"]) if keep_peaks and data.get("speed_reference_s") else None,
        cold_call_curve=tuple((float(b), float(t)) for b, t in data.get("cold_call_curve", ())) if keep_peaks else (),
    )


def _files() -> list[Path]:
    out: list[Path] = []
    for d in search_dirs():
        if d.is_dir():
            out += sorted(d.glob("*.json"))
    return out


@functools.lru_cache(maxsize=64)
def _index(signature: tuple[tuple[str, int, int], ...]) -> dict[str, tuple[str, dict[str, Any]]]:
    """device name -> (path, data) of the first valid calibration found for it (user files win)."""
    index: dict[str, tuple[str, dict[str, Any]]] = {}
    for path, _, _ in signature:
        if path.endswith(".points.json"):
            continue
        data = read_calibration(path)
        device = data.get("device")
        if device and device not in index:
            index[device] = (path, data)
    return index


def _signature() -> tuple[tuple[str, int, int], ...]:
    """Each calibration file with its version (modification time in ns and size): a rewrite within one tick of a
    coarse clock still changes the size or the ns, so the index is never served stale."""
    return tuple((str(p), (st := p.stat()).st_mtime_ns, st.st_size) for p in _files())


def efficiency_for(device: DeviceProfile, *, use_calibrations: bool = True) -> EfficiencyTable:
    """The best efficiency table for a device profile (calibrated, transferred, or spec), under its power limit."""
    return power_limited(_at_tdp(device, use_calibrations), device)


def _sibling(device: DeviceProfile, index: Mapping[str, tuple[str, dict[str, Any]]]
             ) -> tuple[DeviceProfile, str, dict[str, Any]] | None:
    """The measured device whose calibration `device` takes: the newest of its family, else, when `device`
    publishes achievable rates, the newest that does too (its own vendor's first); None when there is none."""
    options = []
    for name, (path, data) in index.items():
        other = load_device(name)
        same = other.family == device.family
        if same or (device.achievable is not None and other.achievable is not None):
            options.append(((same, other.vendor == device.vendor, other.launch_year, name), other, path, data))
    if not options:
        return None
    _, other, path, data = max(options, key=lambda option: option[0])
    return other, path, data


def _at_tdp(device: DeviceProfile, use_calibrations: bool) -> EfficiencyTable:
    if not use_calibrations:
        return SPEC_DEFAULTS
    index = _index(_signature())
    if device.name in index:
        path, data = index[device.name]
        # A GPU's own profile holds its peaks; measured peaks are kept only for profile-less devices.
        # Predictions assume a runtime whose host keeps ahead of the device (CUDA graphs, overlapped
        # dispatch): the eager-mode host overhead measured here applies to `run` and `validate` only.
        return dataclasses.replace(table_from(data, path, "calibrated", keep_peaks=False), host_overhead_s=0.0,
                                   program_overhead_s=0.0)
    found = _sibling(device, index)
    if found is None:
        return spec_for(device)
    sibling, path, data = found
    same = sibling.family == device.family
    table = table_from(data, path, "transferred", TRANSFER_ERROR if same else CROSS_FAMILY_TRANSFER_ERROR,
                       keep_peaks=False)
    why = (f"same family, band +{TRANSFER_ERROR:.0%}" if same else
           f"family {sibling.family} for {device.family}, band +{CROSS_FAMILY_TRANSFER_ERROR:.0%}")
    return transferred(table, device, sibling, why)


def load_for_device(path: str, device: DeviceProfile | None, fingerprint_key: str | None = None) -> EfficiencyTable:
    """Load a calibration given explicitly; refuse one made on another device."""
    data = read_calibration(path)
    if device is not None and data.get("device") not in (device.name, None):
        raise EmulatorError(
            f"was measured on '{data.get('device')}', not on '{device.name}'. Fix: pass the calibration of "
            f"{device.name}, or calibrate it with `emulator calibrate`.", file=path, field="device")
    if fingerprint_key is not None and data["fingerprint"].get("key") != fingerprint_key:
        raise EmulatorError(
            f"was measured on '{data['fingerprint'].get('key')}', but this machine is '{fingerprint_key}'. Fix: run "
            "`emulator calibrate` here, or pass this machine's calibration.", file=path, field="fingerprint.key")
    return table_from(data, path, "calibrated")


# --- devices without a profile, and matching a measured device to its profile ----------------------------


def profile_for_fingerprint(fingerprint: Mapping[str, Any]) -> DeviceProfile | None:
    """The shipped profile of a measured GPU (by its model token in the runtime name), or None (CPUs)."""
    if fingerprint.get("kind") != "cuda":
        return None
    tokens = set(str(fingerprint.get("name", "")).lower().replace("-", " ").split())
    matches = [n for n in list_devices() if n.split("-")[0] in tokens]
    return load_device(matches[0]) if len(matches) == 1 else None


def local_profile(data: Mapping[str, Any]) -> DeviceProfile:
    """A profile for a device known only through its calibration (the local CPU): measured peaks and sizes."""
    fp = data["fingerprint"]
    peaks = data.get("peaks", {})
    measured = f"measured by `emulator calibrate` on {fp.get('key')} ({data.get('created')})"
    matrix = {k.split(".", 1)[1]: float(v) for k, v in peaks.items() if k.startswith("matrix.")}
    vector = {"fp32": float(peaks.get("vector.fp32") or max(matrix.values(), default=1e9) / 4)}
    total = float(fp.get("total_memory_bytes") or 16 * 2**30)
    cache = data.get("cache_bytes")
    tiers = []
    if cache:
        tiers.append(MemoryTier(name="cache", capacity_bytes=float(cache), bandwidth_bytes_per_s=None, kind="cache"))
    tiers.append(MemoryTier(name="dram", capacity_bytes=total, bandwidth_bytes_per_s=float(peaks.get("memory", 1e10)),
                            kind="dram", main=True))
    if not matrix:  # no GEMM was measured (`calibrate --only ...`): matrix work at the vector rate
        matrix = {"fp32": vector["fp32"]}
    sources = {f"matrix_flops_per_s.{d}": measured for d in matrix}
    sources.update({"vector_flops_per_s.fp32": measured, "memory.dram.capacity_bytes": "operating system (sysconf)",
                    "memory.dram.bandwidth_bytes_per_s": measured, "usable_memory_bytes": "operating system (sysconf)",
                    "num_compute_units": "torch.get_num_threads()", "links.host_bytes_per_s": "not applicable (host)",
                    "launch_overhead_s": "folded into the fitted per-family overheads",
                    "power.tdp_w": "unknown for a local CPU: nominal value, not used for time",
                    "power.idle_w": "unknown for a local CPU: nominal value, not used for time",
                    "price.capex_usd": "unknown: nominal", "price.rental_usd_per_hour": "unknown: nominal",
                    "launch_year": "unknown: nominal"})
    if cache:
        sources["memory.cache.capacity_bytes"] = "sysfs cache size of cpu0"
        sources["memory.cache.bandwidth_bytes_per_s"] = "not measured separately: a fitted speed-up over DRAM"
    return DeviceProfile(
        name=str(fp.get("key", "local")), display_name=str(fp.get("name", "local device")), vendor="local",
        family=str(fp.get("key", "local")), kind="gpu" if fp.get("kind") == "cuda" else "asic",
        num_compute_units=int(fp.get("num_threads") or 1), matrix_flops_per_s=matrix,
        vector_flops_per_s=vector, memory=tuple(tiers), usable_memory_bytes=total,
        links=Links(scale_up_bytes_per_s=None, host_bytes_per_s=1e9), launch_overhead_s=1e-9,
        power=Power(tdp_w=100.0, idle_w=10.0), price=Price(capex_usd=1.0, rental_usd_per_hour=1.0),
        launch_year=2020, sources=sources,
    )
