"""A power limit below the TDP (MaxQ systems, `nvidia-smi -pl`): the sustained clock, hence the math rate, it leaves.

Dynamic power is P = C V^2 f, and across the DVFS range the voltage follows the clock (V ~ f), so a chip held to a
board power below its TDP settles at
    clock share s = f_limit / f_TDP = (P_limit / P_TDP)^(1/3)
of the clock it sustains at the TDP. Matrix and vector rates scale with the clock; main-memory bandwidth runs on the
memory's own clock and is unchanged, as are the per-call overheads (host and launch paths). The relation holds
down to the board's lowest settable limit (`power.min_limit_w`, where DVFS reaches its floor: the profile refuses
lower limits). Full-load board power becomes the limit (`DeviceProfile.max_power_w`).

Check against published kernel-level pairs of one silicon at two board powers (MAMF, the best matmul found):
A100 PCIe 300 W against SXM 400 W, 252.9 / 271.2 = 0.933 (this model: 0.909); GB200 1,200 W against B200 1,000 W,
1,822 / 1,745 = 1.044 (model: 1.063). Both pairs move as P^0.24, less than the cube root (other SKU differences:
cooling, memory, software versions); the error band widens by the gap between the two exponents at the limit.
"""

from __future__ import annotations

import dataclasses

from emulator.engine.efficiency import EfficiencyTable
from emulator.hardware import DeviceProfile

DVFS_EXPONENT = 1.0 / 3.0  # clock ~ power^(1/3): dynamic power ~ f * V^2 with V ~ f
# ln(252.9/271.2)/ln(300/400) = 0.243 (A100 PCIe/SXM) and ln(1822/1745)/ln(1200/1000) = 0.237 (GB200/B200).
MEASURED_EXPONENT = 0.24


def power_ratio(device: DeviceProfile) -> float:
    """The power limit over the TDP (1 without a limit)."""
    return device.max_power_w / device.power.tdp_w


def clock_share(device: DeviceProfile) -> float:
    """The sustained clock under the device's power limit over its sustained clock at the TDP."""
    return power_ratio(device) ** DVFS_EXPONENT


def power_limited(table: EfficiencyTable, device: DeviceProfile) -> EfficiencyTable:
    """`table` (made for the device at its TDP) with every family's math and vector efficiency scaled by the
    clock share its power limit leaves; the same table without a limit."""
    if device.power_limit_w is None:
        return table
    ratio, share = power_ratio(device), clock_share(device)
    widen = abs(ratio ** MEASURED_EXPONENT - share)
    families = {name: dataclasses.replace(eff, math=eff.math * share, vector=eff.vector * share,
                                          error=eff.error + widen)
                for name, eff in table.families.items()}
    words = (f"power limit {device.max_power_w:g} W of a {device.power.tdp_w:g} W TDP: sustained clock x{share:.3f} "
             f"(clock ~ power^(1/3)), matrix and vector rates with it, memory bandwidth unchanged")
    return dataclasses.replace(table, families=families, clock_share=share, power_limit_w=device.max_power_w,
                               basis=f"{table.basis}; {words}" if table.basis else words)


__all__ = ["DVFS_EXPONENT", "MEASURED_EXPONENT", "clock_share", "power_limited", "power_ratio"]
