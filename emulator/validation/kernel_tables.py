"""What the kernel-level checks against measured tables share (`published_gemm`, `published_attention`,
`published_moe`): each chip's device and efficiency table as the engine's serving predictions run them
(`engine_view`: a check of the kernels a prediction times, not of the calibration alone), the
cases summarised per chip and format with the signed mean per band of one size column, and the table a person
reads."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emulator.engine.calibration import efficiency_for
from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.stack import engine_view
from emulator.hardware import DeviceProfile, load_device
from emulator.stacks import StackProfile
from emulator.validation.sources import error_summary

Band = tuple[str, int, int]  # (label, lowest, highest) of the size column, inclusive


def read_rows(path: Path, whole: Sequence[str]) -> list[dict[str, Any]]:
    """A shipped table's rows: the `whole` columns as integers, `latency_ms` as a number, the rest as text."""
    with open(path, encoding="utf-8", newline="") as f:
        return [{**r, **{k: int(r[k]) for k in whole}, "latency_ms": float(r["latency_ms"])}
                for r in csv.DictReader(f)]


class Chips:
    """Each chip once: the device and its efficiency table as `engine`'s serving steps run them (`engine_view`:
    low-precision GEMMs on the 16-bit shape response where the engine picks their tiles per shape,
    `recipe.low_precision_gemm_shape`)."""

    def __init__(self, engine: StackProfile) -> None:
        self.engine = engine
        self.by_name: dict[str, tuple[DeviceProfile, EfficiencyTable]] = {}

    def __getitem__(self, name: str) -> tuple[DeviceProfile, EfficiencyTable]:
        if name not in self.by_name:
            profile = load_device(name)
            self.by_name[name] = engine_view(profile, efficiency_for(profile), self.engine)
        return self.by_name[name]


def check(source: str, engine: StackProfile, rows: Sequence[dict[str, Any]],
          predict_s: Callable[[DeviceProfile, EfficiencyTable, dict[str, Any]], float],
          case: Callable[[dict[str, Any]], dict[str, Any]], fmt: str, size: str,
          bands: Sequence[Band]) -> dict[str, Any]:
    """Every row (its chip's `device`, its `latency_ms`) predicted on its chip; `case(row)` gives the case's `id`,
    `metric` and the row's `fmt` and `size` columns. The section `validate --published` prints and `--json` keeps."""
    chips = Chips(engine)
    cases = []
    for r in rows:
        device, table = chips[r["device"]]
        measured, predicted = r["latency_ms"] * 1e-3, predict_s(device, table, r)
        cases.append({**case(r), "published": measured, "predicted": predicted, "error": predicted / measured - 1,
                      "stack": engine.name, "source": source, "device": r["device"]})
    return {"source": source, "cases": cases, "summary": error_summary(cases),
            "by_chip": by_chip(cases, chips, fmt, size, bands)}


def by_chip(cases: Sequence[dict[str, Any]], chips: Chips, fmt: str, size: str,
            bands: Sequence[Band]) -> list[dict[str, Any]]:
    """Per (chip, format `fmt` key): the table's provenance, the error summary and each band's of column `size`."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cases:
        groups.setdefault((c["device"], c[fmt]), []).append(c)
    return [{"device": name, fmt: kind, "provenance": chips[name][1].provenance, **error_summary(cs),
             "bands": {label: error_summary([c for c in cs if lo <= c[size] <= hi]) for label, lo, hi in bands}}
            for (name, kind), cs in groups.items()]


def render_by_chip(title: str, section: dict[str, Any], fmt: str, bands: Sequence[Band]) -> str:
    lines = [title, f"{'chip':10s} {'format':12s} {'table':12s} {'rows':>4s} {'median|e|':>9s} {'mean e':>8s}   "
             + "   ".join(f"{label} mean e" for label, _, _ in bands)]
    for s in section["by_chip"]:
        cells = "   ".join(f"{s['bands'][label]['mean_error']:+{len(label) + 7}.1%}" for label, _, _ in bands)
        lines.append(f"{s['device']:10s} {s[fmt]:12s} {s['provenance']:12s} {s['num_cases']:4d} "
                     f"{s['median_abs_error']:9.1%} {s['mean_error']:+8.1%}   {cells}")
    return "\n".join(lines)


__all__ = ["Band", "Chips", "by_chip", "check", "read_rows", "render_by_chip"]
