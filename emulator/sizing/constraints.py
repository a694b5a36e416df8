"""The limits a sizing file sets, checked on evaluated plans, in one table.

Each constraint names the file field that sets it, the row value it bounds and the unit people write it in, so
the selection, the diagnosis of an impossible target and the report all read them alike. The training device
cap is applied while enumerating (plans over it are never timed); a serving layout is simulated once whatever
its replica count, so there the cap is checked like the others, on the evaluated rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from emulator.sizing.spec import Sizing

DAY_S = 86400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Constraint:
    """One limit: `row[row_key] / scale` (in `unit`) must not exceed the value the file gives at `field`."""

    name: str
    field: str
    row_key: str
    scale: float
    unit: str

    def value(self, row: Mapping[str, Any]) -> float:
        """The row's value in this constraint's unit."""
        return float(row[self.row_key]) / self.scale


DEADLINE = Constraint(name="deadline_days", field="train.deadline_days", row_key="effective_time_to_train_s",
                      scale=DAY_S, unit="days")
POWER = Constraint(name="power_cap_mw", field="constraints.power_cap_mw", row_key="facility_mw", scale=1.0, unit="MW")
BUDGET = Constraint(name="budget_usd", field="constraints.budget_usd", row_key="cost_usd", scale=1.0, unit="USD")
DEVICES = Constraint(name="max_devices", field="constraints.max_devices", row_key="num_devices", scale=1.0,
                     unit="devices")
BY_NAME = {c.name: c for c in (DEADLINE, POWER, BUDGET, DEVICES)}


def device_cap_field(sz: Sizing) -> str:
    """Where the file sets its device cap (a training device budget lives in `train.max_devices`)."""
    if sz.train and sz.train.max_devices:
        return "train.max_devices" + (" and constraints.max_devices" if sz.constraints.max_devices else "")
    return "constraints.max_devices"


def active(sz: Sizing) -> list[tuple[Constraint, float]]:
    """The constraints this file sets and checks on evaluated rows, each with its limit (in its unit)."""
    c = sz.constraints
    out: list[tuple[Constraint, float]] = []
    if sz.train and sz.train.deadline_days is not None:
        out.append((DEADLINE, sz.train.deadline_days))
    if c.power_cap_mw is not None:
        out.append((POWER, c.power_cap_mw))
    if c.budget_usd is not None:
        out.append((BUDGET, c.budget_usd))
    if sz.goal == "serve" and c.max_devices is not None:
        out.append((DEVICES, float(c.max_devices)))
    return out


def flags(sz: Sizing, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per active constraint, a mask of the rows that meet it."""
    return {con.name: np.array([con.value(r) <= limit for r in rows], dtype=bool) for con, limit in active(sz)}


def relaxed(sz: Sizing, changes: Mapping[str, float]) -> Sizing:
    """A copy of the sizing with some limits replaced (keys: constraint names), as if the file said so."""
    c, train = sz.constraints, sz.train
    for name, value in changes.items():
        if name == "deadline_days" and train is not None:
            train = dataclasses.replace(train, deadline_days=value)
        elif name == "max_devices":
            cap = int(value)
            if train is not None and train.max_devices is not None:  # the two caps must agree (spec refuses else)
                train = dataclasses.replace(train, max_devices=cap)
                c = c if c.max_devices is None else dataclasses.replace(c, max_devices=cap)
            else:
                c = dataclasses.replace(c, max_devices=cap)
        elif name == "power_cap_mw":
            c = dataclasses.replace(c, power_cap_mw=value)
        elif name == "budget_usd":
            c = dataclasses.replace(c, budget_usd=value)
    return dataclasses.replace(sz, constraints=c, train=train)


def round_up(x: float, unit: str) -> float:
    """The value a person would write that still admits x: three significant digits, rounded up (whole devices)."""
    if unit == "devices":
        return float(math.ceil(x - 1e-9))
    if x <= 0:
        return 0.0
    exponent = math.floor(math.log10(x)) - 2
    step = 10.0**exponent
    digits = max(0, -exponent)
    out = float(f"{math.ceil(x / step - 1e-9) * step:.{digits}f}")
    return out if out >= x else float(f"{out + step:.{digits}f}")


def latency_name(row: dict[str, Any]) -> str:
    """What a serving row's `latency_p99_s` is: an LLM's p99 time to first token (its TPOT is apart), a
    recommender's p99 query latency."""
    return "p99 TTFT" if (row.get("tpot_s") or {}).get("p99") else "p99 query latency"


def shown(value: float, unit: str) -> str:
    """A limit or a need as text, in its unit."""
    if unit in ("USD", "devices"):
        return f"{value:,.0f} {unit}"
    return f"{value:,.4g} {unit}"


__all__ = ["BY_NAME", "DAY_S", "DEADLINE", "DEVICES", "Constraint", "active", "device_cap_field", "flags",
           "relaxed", "round_up", "shown"]
