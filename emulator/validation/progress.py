"""Progress of `emulator run` on stderr: each part's model build and its steps, with the elapsed time and an ETA.

The ETA starts from the run's estimate (`runplan.RunEstimate`) and follows what the run measures: the steps and
builds still to come are scaled by how the ones so far compared with their estimates. A line is printed at most
every `every_s` seconds (and at each part's start), so the check inside a timed step costs one clock read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from emulator.units import fmt_seconds
from emulator.validation.runplan import RunEstimate


class Progress:
    """Counts a run's steps and prints where it stands; `enabled=False` prints nothing."""

    def __init__(self, estimate: RunEstimate, *, enabled: bool = True, stream: TextIO | None = None,
                 every_s: float = 1.0) -> None:
        self._estimate = {p.name: p for p in estimate.parts}
        self._order = [p.name for p in estimate.parts]
        self._enabled, self._stream, self._every_s = enabled, stream, every_s
        self._start = self._last_print = time.perf_counter()
        self._step_ratio = self._build_ratio = 1.0
        self._part = ""
        self._calls = 0
        self._build_start: float | None = None

    def _print(self, text: str) -> None:
        self._last_print = time.perf_counter()
        if self._enabled:
            elapsed = self._last_print - self._start
            print(f"[{fmt_seconds(elapsed)} elapsed, ETA {fmt_seconds(self.eta_s())}] {text}",
                  file=self._stream or sys.stderr, flush=True)

    def eta_s(self) -> float:
        """Seconds still to go: the current part's remaining calls and every later part, each scaled by how the
        measured steps and builds so far compared with their estimates."""
        if self._part == "done":
            return 0.0
        left = 0.0
        later = self._order[self._order.index(self._part) + 1:] if self._part in self._order else self._order
        if self._part in self._estimate:
            p = self._estimate[self._part]
            left += max(p.num_calls - self._calls, 0) * p.step_s * self._step_ratio
            if self._build_start is not None:  # still building it
                left += max(p.build_s * self._build_ratio - (time.perf_counter() - self._build_start), 0.0)
        for name in later:
            p = self._estimate[name]
            left += p.build_s * self._build_ratio + p.num_calls * p.step_s * self._step_ratio
        return left

    def build(self, part: str, build: Callable[[], Any], what: str) -> Any:
        """Run `build()` (a part's model and inputs), timing it against the estimate."""
        self._part, self._calls = part, 0
        self._build_start = start = time.perf_counter()
        self._print(f"{part}: building {what}")
        out = build()
        self._build_start = None
        estimated = self._estimate[part].build_s if part in self._estimate else 0.0
        if estimated > 0:
            self._build_ratio = max(time.perf_counter() - start, 1e-6) / estimated
        self._print(f"{part}: measuring about {self._estimate[part].num_calls} steps "
                    f"(predicted {fmt_seconds(self._estimate[part].step_s)} each)" if part in self._estimate
                    else f"{part}: measuring")
        return out

    def counted(self, step: Callable[[], Any]) -> Callable[[], None]:
        """`step` that reports each call (at most one line every `every_s`)."""
        def call() -> None:
            start = time.perf_counter()
            step()
            now = time.perf_counter()
            self._calls += 1
            p = self._estimate.get(self._part)
            if p is not None and p.step_s > 0:
                self._step_ratio = (now - start) / p.step_s
            if now - self._last_print >= self._every_s:
                total = f" of about {p.num_calls}" if p else ""
                self._print(f"{self._part}: step {self._calls}{total}, {fmt_seconds(now - start)} each")
        return call

    def done(self) -> None:
        self._part = "done"
        self._print("measured; predicting the same program")


__all__ = ["Progress"]
