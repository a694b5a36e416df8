"""Unit conversions, used only at the edges (parsing human input, printing).

Inside the project every quantity is SI: seconds, bytes, FLOPs, watts, joules, bytes per second.
"""

from __future__ import annotations

KB = 1e3
MB = 1e6
GB = 1e9
TB = 1e12
KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4
TERA = 1e12
PETA = 1e15
HOUR_S = 3600.0
DAY_S = 86400.0
KWH_J = 3.6e6
MW = 1e6



def fmt_seconds(t_s: float) -> str:
    """Human-readable duration."""
    if t_s != t_s:  # NaN
        return "n/a"
    if t_s < 1e-3:
        return f"{t_s * 1e6:.1f} µs"
    if t_s < 1:
        return f"{t_s * 1e3:.2f} ms"
    if t_s < 120:
        return f"{t_s:.2f} s"
    if t_s < 2 * HOUR_S:
        return f"{t_s / 60:.1f} min"
    if t_s < 2 * DAY_S:
        return f"{t_s / HOUR_S:.1f} h"
    return f"{t_s / DAY_S:.1f} days"


def fmt_bytes(n_bytes: float) -> str:
    """Human-readable size in binary units (what memory capacities are usually quoted in by tools)."""
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n_bytes) >= size:
            return f"{n_bytes / size:.2f} {unit}"
    return f"{n_bytes:.0f} B"


def fmt_flops(n: float) -> str:
    """Human-readable FLOP count."""
    for unit, size in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}FLOP"
    return f"{n:.0f} FLOP"
