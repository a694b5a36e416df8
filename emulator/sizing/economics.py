"""Power, energy and cost of a cluster, rolled up from the profiles (every input carries its profile's source).

    device W   = idle_w + (tdp_w - idle_w) x utilisation          (emulator.serving.energy.device_power_w)
    node W     = host_w (CPUs, memory, fans, NICs) + network_w_per_node (its share of switches and optics)
    IT W       = devices x device W + nodes x node W,   nodes = ceil(devices / devices_per_node)
    facility W = IT W x PUE  -> MW at the meter
    energy     = facility W x hours  -> MWh per run (training) or per hour (serving)
    capex      = devices x device capex + nodes x node capex (excluding devices)
    cost       = capex x hours / (amortization_years x 8766 h) + energy x electricity $/kWh      (pricing: capex)
               = devices x rental $/device-hour x hours  (energy included in the rental)           (pricing: rental)
Utilisation of a training step is its compute share (compute seconds / step seconds): devices waiting on
exposed communication or the pipeline bubble are counted at idle power, a lower bound on what they draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from emulator.hardware import DeviceProfile, Site, SystemProfile
from emulator.serving.energy import full_load_w

HOURS_PER_YEAR = 8766.0  # 365.25 days


@dataclass(frozen=True, slots=True)
class Rates:
    """The per-unit inputs of one (device, system, site, pricing), vectorised over candidates by `rollup`."""

    idle_w: float
    full_w: float
    devices_per_node: int
    node_w: float
    pue: float
    usd_per_kwh: float
    capex_per_device_usd: float
    capex_per_node_usd: float
    amortization_h: float
    rental_usd_per_device_hour: float
    pricing: str


def rates(device: DeviceProfile, system: SystemProfile, site: Site, pricing: str) -> Rates:
    return Rates(idle_w=device.power.idle_w, full_w=full_load_w(device), devices_per_node=system.devices_per_node,
                 node_w=system.power.host_w + system.power.network_w_per_node, pue=site.pue,
                 usd_per_kwh=site.electricity_usd_per_kwh, capex_per_device_usd=device.price.capex_usd,
                 capex_per_node_usd=system.price.node_capex_usd_excluding_devices,
                 amortization_h=site.amortization_years * HOURS_PER_YEAR,
                 rental_usd_per_device_hour=device.price.rental_usd_per_hour, pricing=pricing)


def rollup(r: Rates, devices: np.ndarray, utilisation: np.ndarray, hours: np.ndarray) -> dict[str, np.ndarray]:
    """Arrays (one entry per candidate) of W per device, nodes, IT and facility MW, MWh and USD over `hours`."""
    devices = np.asarray(devices, dtype=float)
    device_w = r.idle_w + (r.full_w - r.idle_w) * np.clip(utilisation, 0.0, 1.0)
    nodes = np.ceil(devices / r.devices_per_node)
    it_w = devices * device_w + nodes * r.node_w
    facility_w = it_w * r.pue
    mwh = facility_w * hours / 1e6
    capex = devices * r.capex_per_device_usd + nodes * r.capex_per_node_usd
    if r.pricing == "rental":
        cost = devices * r.rental_usd_per_device_hour * hours
        energy_usd = np.zeros_like(cost)
    else:
        energy_usd = mwh * 1000 * r.usd_per_kwh
        cost = capex * hours / r.amortization_h + energy_usd
    return {"device_w": device_w, "nodes": nodes, "it_mw": it_w / 1e6, "facility_mw": facility_w / 1e6, "mwh": mwh,
            "capex_usd": capex, "energy_usd": energy_usd, "cost_usd": cost}


def inputs(device: DeviceProfile, system: SystemProfile, site: Site, pricing: str) -> dict[str, Any]:
    """Every number the rollup used, with the source its profile gives (shown in the report)."""

    def item(value: float, profile: str, src: str | None) -> dict[str, Any]:
        return {"value": value, "profile": profile, "source": src or "no source in profile"}

    d, s = device.sources, system.sources
    out = {
        "device.power.tdp_w": item(device.power.tdp_w, device.name, d.get("power.tdp_w")),
        "device.power.idle_w": item(device.power.idle_w, device.name, d.get("power.idle_w")),
        "system.devices_per_node": item(system.devices_per_node, system.name, s.get("devices_per_node")),
        "system.power.host_w": item(system.power.host_w, system.name, s.get("power.host_w")),
        "system.power.network_w_per_node": item(system.power.network_w_per_node, system.name,
                                                s.get("power.network_w_per_node")),
        "site.pue": item(site.pue, site.name, site.sources.get("pue")),
    }
    if pricing == "rental":
        out["device.price.rental_usd_per_hour"] = item(device.price.rental_usd_per_hour, device.name,
                                                       d.get("price.rental_usd_per_hour"))
    else:
        out |= {
            "device.price.capex_usd": item(device.price.capex_usd, device.name, d.get("price.capex_usd")),
            "system.price.node_capex_usd_excluding_devices": item(
                system.price.node_capex_usd_excluding_devices, system.name,
                s.get("price.node_capex_usd_excluding_devices")),
            "site.electricity_usd_per_kwh": item(site.electricity_usd_per_kwh, site.name,
                                                 site.sources.get("electricity_usd_per_kwh")),
            "site.amortization_years": item(site.amortization_years, site.name, site.sources.get("amortization_years")),
        }
    return out


def per_million(total: float, units: float) -> float:
    """A total (USD or MWh) per million tokens or queries."""
    return total / (units / 1e6) if units > 0 else math.inf


__all__ = ["HOURS_PER_YEAR", "Rates", "inputs", "per_million", "rates", "rollup"]
