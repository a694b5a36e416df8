"""`emulator size SIZING.yaml [--out DIR] [--json] [--quiet]`: search, then write the report folder.

Progress goes to stderr (one updating line per candidate device) unless --quiet; --json prints report.json. A
target no plan meets still writes its report, then exits 2 with the binding constraint and the fix.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from emulator.errors import EmulatorError
from emulator.launch import sizing_launch_files, write_launch
from emulator.sizing import Infeasible, load_sizing, size, write_report
from emulator.sizing.report import canonical_json
from emulator.units import fmt_seconds


class _Progress:
    """A counter line on stderr, redrawn at most every 0.2 s."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.last = 0.0

    def __call__(self, device: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last < 0.2 and done < total:
            return
        self.last = now
        sys.stderr.write(f"\r  {device}: {done}/{total} plan groups evaluated, {now - self.start:.1f} s   ")
        sys.stderr.flush()

    def done(self, message: str) -> None:
        sys.stderr.write(f"\r{message}{' ' * 20}\n")
        sys.stderr.flush()


def command(args: argparse.Namespace) -> None:
    sz = load_sizing(args.sizing)
    for warning in sz.warnings:  # plausibility: never fatal, never silent
        print(f"warning: {warning}", file=sys.stderr)
    progress = None if args.quiet else _Progress()
    out = args.out or str(Path("reports") / Path(args.sizing).stem)
    try:
        result = size(sz, progress)
    except Infeasible as e:  # the report still shows what binds per candidate; the error names the fix
        report = write_report(e.result, sz, out, e.diagnosis)
        if progress:
            progress.done(f"no plan meets every constraint; report in {out}/")
        if args.json:
            sys.stdout.write(canonical_json(report))
        raise EmulatorError(f"{e.message} Report: {out}/report.md.", file=e.file, field=e.field) from None
    report = write_report(result, sz, out)
    launch = write_launch(Path(out) / "launch", sizing_launch_files(sz, result)) if result.best else []
    if progress:
        progress.done(f"searched {result.num_evaluated:,} of {result.num_enumerated:,} plans in "
                      f"{time.perf_counter() - progress.start:.1f} s; report in {out}/")
    if args.json:
        sys.stdout.write(canonical_json(report | {"warnings": list(sz.warnings)}))
        return
    rec = report["recommended"]
    train = sz.goal == "train"
    print(f"recommended ({sz.objective}): {rec['device']} x {rec['num_devices']} "
          f"({', '.join(f'{k} {v}' for k, v in rec['plan'].items())})")
    if train:
        time_text = f"time-to-train {rec['effective_time_to_train_s'] / 86400:.1f} days"
    elif rec["tpot_s"]["p99"]:  # an LLM: the row's latency_p99_s is its p99 time to first token
        time_text = (f"p99 TTFT {fmt_seconds(rec['ttft_s']['p99'])}, p99 TPOT {fmt_seconds(rec['tpot_s']['p99'])}, "
                     f"p99 end-to-end {fmt_seconds(rec['latency_s']['p99'])}")
    else:
        time_text = f"p99 query latency {fmt_seconds(rec['latency_s']['p99'])}"
    print(f"  {time_text}, "
          f"{rec['facility_mw']:.3f} MW at the meter, {rec['energy_mwh']:,.0f} MWh, {rec['cost_usd']:,.0f} USD"
          f"{'' if train else ' per year'}; provenance {rec['provenance']}, error band ±{rec['error_band']:.0%}")
    for obj, r in report["best"].items():
        print(f"  best {obj:8s}: {r['device']} x {r['num_devices']}, cost {r['cost_usd']:,.0f} USD, "
              f"{r['facility_mw']:.2f} MW")
    print(f"report: {out}/report.html, report.md, report.json ({len(report['figures'])} figures)")
    if launch:
        print(f"launch files of the recommended plan: {', '.join(str(p) for p in launch)}")


__all__ = ["command"]
