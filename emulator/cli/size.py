"""`emulator size SIZING.yaml [--out DIR] [--json] [--quiet]`: search, then write the report folder.

Progress goes to stderr (one updating line per candidate device) unless --quiet; --json prints report.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from emulator.launch import sizing_launch_files, write_launch
from emulator.sizing import load_sizing, size, write_report
from emulator.sizing.report import canonical_json


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
    progress = None if args.quiet else _Progress()
    result = size(sz, progress)
    out = args.out or str(Path("reports") / Path(args.sizing).stem)
    report = write_report(result, sz, out)
    launch = write_launch(Path(out) / "launch", sizing_launch_files(sz, result)) if result.best else []
    if progress:
        progress.done(f"searched {result.num_evaluated:,} of {result.num_enumerated:,} plans in "
                      f"{time.perf_counter() - progress.start:.1f} s; report in {out}/")
    if args.json:
        sys.stdout.write(canonical_json(report))
        return
    rec = report["recommended"]
    train = sz.goal == "train"
    t = rec["effective_time_to_train_s"] / 86400 if train else rec["latency_p99_s"] * 1e3
    print(f"recommended ({sz.objective}): {rec['device']} x {rec['num_devices']} "
          f"({', '.join(f'{k} {v}' for k, v in rec['plan'].items())})")
    print(f"  {'time-to-train' if train else 'p99 latency'} {t:.1f} {'days' if train else 'ms'}, "
          f"{rec['facility_mw']:.3f} MW at the meter, {rec['energy_mwh']:,.0f} MWh, {rec['cost_usd']:,.0f} USD"
          f"{'' if train else ' per year'}; provenance {rec['provenance']}, error band ±{rec['error_band']:.0%}")
    for obj, r in report["best"].items():
        print(f"  best {obj:8s}: {r['device']} x {r['num_devices']}, cost {r['cost_usd']:,.0f} USD, "
              f"{r['facility_mw']:.2f} MW")
    print(f"report: {out}/report.html, report.md, report.json ({len(report['figures'])} figures)")
    if launch:
        print(f"launch files of the recommended plan: {', '.join(str(p) for p in launch)}")


__all__ = ["command"]
