"""When no plan meets every constraint: what binds, by how much, and the smallest change that meets them all.

Every evaluated plan that misses some limits names a change: raise each limit it misses to its value, rounded up
to what a person would write. The smallest change is the one whose limits move least, summed relative to their
values (a deadline 10% later plus a power cap 10% higher weighs as much as one limit 20% looser). Training plans
over the device cap were never timed, so when no evaluated plan meets the deadline (or none survived pruning) the
cap is raised by doubling, up to the search's default ceiling, and the plans of each step are evaluated until one
meets every constraint. Each suggested change is re-checked: its limits are set in a copy of the sizing and every
constraint is checked again on the evaluated plans, the new ones included; a change that does not admit its plan
is never suggested.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from emulator.sizing.constraints import (
    BY_NAME,
    DEADLINE,
    Constraint,
    active,
    device_cap_field,
    flags,
    latency_name,
    relaxed,
    round_up,
    shown,
)
from emulator.sizing.search import DEFAULT_MAX_DEVICES, enumerate_plans, evaluate_training, finish_training
from emulator.sizing.spec import Sizing
from emulator.units import GiB

Row = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Shortfall:
    """One constraint: its limit, the best any evaluated plan reaches and the best among the plans that meet every
    other constraint (None where no plan does), all in the constraint's unit."""

    constraint: Constraint
    field: str
    limit: float
    best: float | None
    best_meeting_others: float | None
    row: Row | None  # the plan reaching best_meeting_others

    @property
    def binds(self) -> bool:
        reach = self.best_meeting_others if self.best_meeting_others is not None else self.best
        return reach is not None and reach > self.limit


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """New limits (constraint name -> value in its unit), the plan they admit, re-checked on the evaluated plans."""

    limits: tuple[tuple[str, float], ...]
    relative: float  # the sum over the moved limits of new / old - 1
    row: Row
    num_feasible: int  # evaluated plans meeting every constraint once the limits change
    beyond_cap: bool  # the plan has more devices than the file's cap and was evaluated for this diagnosis


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnosis:
    shortfalls: tuple[Shortfall, ...]
    smallest: Change | None
    alternatives: tuple[Change, ...]  # each constraint relaxed alone, and more devices, where that suffices
    notes: tuple[str, ...]  # what no limit fixes (memory, the SLO) or what was searched without success
    message: str  # one paragraph: what binds, by how much, and the fix
    field: str


def plan_text(row: Row) -> str:
    return f"{row['device']} x {row['num_devices']} (" + ", ".join(f"{k} {v}" for k, v in row["plan"].items()) + ")"


def misses(sz: Sizing, row: Row) -> list[tuple[Constraint, float, float]]:
    """The constraints a row misses, each with the row's value and the limit."""
    return [(c, c.value(row), limit) for c, limit in active(sz) if c.value(row) > limit]


def excess(value: float, limit: float) -> float:
    """How far past its limit a value is, as a fraction of the limit."""
    return value / limit - 1.0


def by_how_much(value: float, limit: float) -> str:
    ratio = value / limit
    if ratio >= 2:
        return f"{ratio:,.0f}x the limit" if ratio >= 100 else f"{ratio:.3g}x the limit"
    return f"{excess(value, limit):+.1%}"


def closest(sz: Sizing, rows: list[Row]) -> int | None:
    """The row whose missed limits need the smallest summed relative change (ties: the cheaper plan)."""
    if not rows:
        return None
    return min(range(len(rows)), key=lambda i: (sum(excess(v, lim) for _, v, lim in misses(sz, rows[i])),
                                                rows[i]["cost_usd"], rows[i]["device"], rows[i]["num_devices"]))


def _checked(sz: Sizing, limits: Mapping[str, float], row: Row, pool: list[Row], beyond_cap: bool) -> Change | None:
    """The change, if setting its limits admits `row` (every constraint re-checked on the whole pool)."""
    after = relaxed(sz, limits)
    cap, cap_after = _cap(sz), _cap(after)
    if misses(after, row) or row["num_devices"] > cap_after:
        return None
    pool = [r for r in pool if r["num_devices"] <= cap_after]  # the training cap is not among the row checks
    ok = np.ones(len(pool), dtype=bool)
    for m in flags(after, pool).values():
        ok &= m
    old = {c.name: lim for c, lim in active(sz)} | {"max_devices": float(cap)}
    rel = sum(excess(v, old[k]) for k, v in limits.items())
    return Change(limits=tuple(sorted(limits.items())), relative=rel, row=row, num_feasible=int(ok.sum()),
                  beyond_cap=beyond_cap)


def _cap(sz: Sizing) -> int:
    return sz.constraints.max_devices or (sz.train.max_devices if sz.train else None) or DEFAULT_MAX_DEVICES


def _row_change(sz: Sizing, row: Row, pool: list[Row]) -> Change | None:
    return _checked(sz, {c.name: round_up(v, c.unit) for c, v, _ in misses(sz, row)}, row, pool, False)


def _beyond_cap(sz: Sizing, rows: list[Row], memory_cache: dict[Any, float]) -> tuple[Change | None, list[str]]:
    """Raise the training device cap by doubling, evaluating the plans of each step, until one meets every
    constraint; the change is the smallest cap that admits it."""
    assert sz.train is not None
    cap = _cap(sz)
    if cap >= DEFAULT_MAX_DEVICES:
        return None, []
    wide = relaxed(sz, {"max_devices": DEFAULT_MAX_DEVICES})
    pending = []
    for cand in sz.candidates:
        _, plans = enumerate_plans(wide, cand, {}, memory_cache)
        pending.append((cand, [p for p in plans if p[0].num_devices > cap]))
    extra: list[Row] = []
    low = cap
    while low < DEFAULT_MAX_DEVICES and any(plans for _, plans in pending):
        high = min(2 * low, DEFAULT_MAX_DEVICES)
        for cand, plans in pending:
            got = evaluate_training(wide, cand, [p for p in plans if low < p[0].num_devices <= high])
            finish_training(wide, cand, got)
            extra.extend(got)
        fits = [r for r in extra if not misses(sz, r)]  # the cap aside, the file's limits
        if fits:
            row = min(fits, key=lambda r: (r["num_devices"], r["cost_usd"], r["device"]))
            return _checked(sz, {"max_devices": float(row["num_devices"])}, row, rows + extra, True), []
        low = high
    fastest = min(extra, key=lambda r: r[DEADLINE.row_key], default=None)
    note = f"more devices alone do not suffice: no plan up to {DEFAULT_MAX_DEVICES:,} devices meets every constraint"
    if fastest is not None:
        note += (f" (the fastest, {plan_text(fastest)}, takes {shown(DEADLINE.value(fastest), 'days')} and draws "
                 f"{fastest['facility_mw']:,.4g} MW)")
    near = closest(sz, extra)
    if near is None:
        return None, [note]
    row = extra[near]  # more devices and looser limits together
    limits = {c.name: round_up(v, c.unit) for c, v, _ in misses(sz, row)} | {"max_devices": row["num_devices"]}
    return _checked(sz, limits, row, rows + extra, True), [note]


def _unfixable(sz: Sizing, rejected: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What keeps every plan out before any limit is checked, and the change that would help (not re-evaluated)."""
    notes = []
    if "memory" in rejected:
        biggest = max(c.device.memory_bytes for c in sz.candidates) / GiB
        notes.append(f"memory: {rejected['memory']['count']:,} plans do not fit (e.g. {rejected['memory']['example']}; "
                     f"the largest device has {biggest:,.0f} GiB). Fix: add a device with more memory"
                     + (", or widen search (recompute: [full], more pp, zero: [0, 1, 2, 3])" if sz.train else
                        " or pick a lower serve.precision") + " (not re-evaluated)")
    if "slo" in rejected:
        notes.append(f"slo: {rejected['slo']['count']:,} layouts miss it even at light load (e.g. "
                     f"{rejected['slo']['example']}). Fix: loosen serve.slo or add a faster device (not re-evaluated)")
    return notes


def change_text(sz: Sizing, change: Change) -> str:
    """The new limits alone, as the file would set them."""
    parts = []
    for name, value in change.limits:
        con = BY_NAME[name]
        field = device_cap_field(sz) if name == "max_devices" else con.field
        parts.append(f"set {field} >= {shown(value, con.unit)}")
    return " and ".join(parts)


def describe(sz: Sizing, change: Change) -> str:
    """A change as one sentence: the new limits and what they admit, with how it was checked."""
    r = change.row
    time = (f"{shown(DEADLINE.value(r), 'days')} to train" if sz.goal == "train"
            else f"{latency_name(r)} {r['latency_p99_s'] * 1e3:,.1f} ms")
    how = "the plans over the old cap evaluated for this" if change.beyond_cap else "re-checked on the evaluated plans"
    return (f"{change_text(sz, change)}: admits {plan_text(r)}, {time}, {r['facility_mw']:,.4g} MW, "
            f"{r['cost_usd']:,.0f} USD ({change.num_feasible:,} plan{'s' if change.num_feasible != 1 else ''} then meet"
            f"{'' if change.num_feasible != 1 else 's'} every constraint; {how})")


def diagnose(sz: Sizing, rows: list[Row], rejected: Mapping[str, Mapping[str, Any]],
             memory_cache: dict[Any, float]) -> Diagnosis:
    """What binds and the smallest change that meets every constraint (see the module docstring)."""
    masks = flags(sz, rows)
    shortfalls = []
    for con, limit in active(sz):
        others = np.ones(len(rows), dtype=bool)
        for name, m in masks.items():
            if name != con.name:
                others &= m
        idx = [int(i) for i in np.flatnonzero(others)]
        best_i = min(idx, key=lambda i: (con.value(rows[i]), rows[i]["cost_usd"]), default=None)
        shortfalls.append(Shortfall(
            constraint=con, field=device_cap_field(sz) if con.name == "max_devices" else con.field, limit=limit,
            best=min((con.value(r) for r in rows), default=None),
            best_meeting_others=None if best_i is None else con.value(rows[best_i]),
            row=None if best_i is None else rows[best_i]))
    changes: list[Change] = []
    near = closest(sz, rows)
    if near is not None:
        changes += [c for c in [_row_change(sz, rows[near], rows)] if c]
    changes += [c for s in shortfalls if s.binds and s.row is not None for c in [_row_change(sz, s.row, rows)] if c]
    notes: list[str] = []
    unreachable = DEADLINE.name in masks and not masks[DEADLINE.name].any()
    if sz.train and (not rows or unreachable) and "device count" in rejected:
        more, why = _beyond_cap(sz, rows, memory_cache)
        changes += [more] if more else []
        notes += why
    if not changes:
        notes += _unfixable(sz, rejected)
    unique: dict[tuple[Any, ...], Change] = {}
    for c in sorted(changes, key=lambda c: (c.relative, c.row["cost_usd"])):
        unique.setdefault(c.limits, c)
    ordered = list(unique.values())
    smallest = ordered[0] if ordered else None
    binding = [s for s in shortfalls if s.binds]
    return Diagnosis(shortfalls=tuple(shortfalls), smallest=smallest, alternatives=tuple(ordered[1:]),
                     notes=tuple(notes), message=_message(sz, binding, smallest, ordered[1:], notes),
                     field=binding[0].field if binding else "constraints")


def _message(sz: Sizing, binding: list[Shortfall], smallest: Change | None, others: list[Change],
             notes: list[str]) -> str:
    parts = ["no candidate meets every constraint."]
    for s in binding:
        name, unit = s.constraint.name, s.constraint.unit
        if s.row is not None and s.best_meeting_others is not None:
            need = s.best_meeting_others
            parts.append(f"{name} binds: the best plan meeting the other constraints, {plan_text(s.row)}, needs "
                         f"{shown(need, unit)} (limit {shown(s.limit, unit)}, {by_how_much(need, s.limit)}). Fix: set "
                         f"{s.field} >= {shown(round_up(need, unit), unit)}.")
        elif s.best is not None:
            parts.append(f"{name} binds together with the others: no evaluated plan meets the other constraints; the "
                         f"best any plan reaches is {shown(s.best, unit)} (limit {shown(s.limit, unit)}, "
                         f"{by_how_much(s.best, s.limit)}).")
    if smallest is not None:
        parts.append(f"Smallest change that meets every constraint: {describe(sz, smallest)}.")
    parts += [f"Or {describe(sz, c)}." for c in others if c.beyond_cap]
    parts += [n[0].upper() + n[1:] + "." for n in notes]
    if smallest is None and not notes:
        parts.append("Fix: relax several constraints together.")
    return " ".join(parts)


__all__ = ["Change", "Diagnosis", "Shortfall", "by_how_much", "change_text", "closest", "describe", "diagnose",
           "excess", "misses", "plan_text"]
