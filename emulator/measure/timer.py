"""One timing method for everything (after `triton.testing.do_bench`).

Warm up, synchronize, time each repetition (CUDA events on GPU, `perf_counter_ns` on CPU), flush the L2 cache
before each GPU repetition outside the timed region, repeat until the spread is small or the time budget is
spent, report the median with p20/p80 (and the mean, which CPU calibrations use).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from emulator.stats import percentile

# When the device does not report its L2 size, flush with a buffer this large (bigger than any L2 so far).
_FALLBACK_L2_BYTES = 256 * 1024**2


@dataclass(frozen=True, slots=True)
class Measurement:
    """Timing of one callable: median and 20th/80th percentiles over `num_reps` repetitions, in seconds."""

    median_s: float
    p20_s: float
    p80_s: float
    num_reps: int
    samples_s: tuple[float, ...] = field(default=(), repr=False)

    @property
    def mean_s(self) -> float:
        """Mean of the samples: the statistic CPU calibrations and validations use (see the note below
        the class)."""
        return sum(self.samples_s) / len(self.samples_s) if self.samples_s else self.median_s

    @property
    def spread(self) -> float:
        """(p80 - p20) / median: the relative width of the middle of the distribution."""
        return (self.p80_s - self.p20_s) / self.median_s if self.median_s > 0 else math.inf

    def as_dict(self, *, with_samples: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "median_s": self.median_s,
            "p20_s": self.p20_s,
            "p80_s": self.p80_s,
            "num_reps": self.num_reps,
        }
        if with_samples:
            out["samples_s"] = list(self.samples_s)
        return out


# The statistic CPU calibrations and validations use: the mean of every repetition, pooled over passes spread
# across the run. On shared and virtual machines a core's speed swings by up to 1.8x from moment to moment (a
# co-tenant on its sibling hardware thread): the same 512^3 GEMM timed every 0.2 s for two minutes ranged from
# 3.3 to 6.7 ms. A short kernel's repetitions sample that interference instant by instant, a long model step
# averages it, so only the mean is additive: a step's expected time is the sum of its kernels' expected times.
# Fast-tail statistics (a 10th percentile, a minimum) are steadier, but on short kernels they catch the
# interference-free instants that no long step ever sees, and predicted steps came out 10-25% fast.


def _summarize(samples: Sequence[float]) -> Measurement:
    return Measurement(
        median_s=percentile(samples, 50),
        p20_s=percentile(samples, 20),
        p80_s=percentile(samples, 80),
        num_reps=len(samples),
        samples_s=tuple(samples),
    )


def as_device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def l2_cache_bytes(device: str | torch.device) -> int:
    """The device's L2 size in bytes, or a conservative 256 MiB when torch cannot tell."""
    dev = as_device(device)
    if dev.type != "cuda":
        return _FALLBACK_L2_BYTES
    size = getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0)
    return int(size) if size else _FALLBACK_L2_BYTES


def time_callable(
    fn: Callable[[], Any],
    *,
    device: str | torch.device,
    min_reps: int = 5,
    max_reps: int = 200,
    target_time_s: float = 0.2,
    warmup: int = 3,
    flush_l2: bool = True,
    rel_spread: float = 0.05,
    between: Callable[[], Any] | None = None,
) -> Measurement:
    """Time `fn()` on `device` and return the median with p20/p80.

    Repeats in growing batches until at least `min_reps` samples have a spread (p80-p20)/median at most
    `rel_spread`, or `target_time_s` of timed work is used, or `max_reps` is reached. Warm-up stops early
    when one call takes longer than `target_time_s` (a slow kernel needs no three warm-ups to be warm).
    The caller owns the inputs: they must hold random data, never zeros. `between()` (CPU only) runs untimed
    after the warm-up and after every timed call (a speed reference read next to each; see `emulator.measure.speed`).
    """
    dev = as_device(device)
    if min_reps < 1 or max_reps < min_reps:
        raise ValueError(f"need 1 <= min_reps <= max_reps, got {min_reps}, {max_reps}")
    if dev.type == "cuda":
        if between is not None:
            raise ValueError("between= is for host-timed devices; a GPU's calls are timed by events in a stream")
        return _time_cuda(fn, dev, min_reps, max_reps, target_time_s, warmup, flush_l2, rel_spread)
    return _time_host(fn, min_reps, max_reps, target_time_s, warmup, rel_spread, between)


def _done(samples: list[float], min_reps: int, max_reps: int, budget_s: float, rel_spread: float) -> bool:
    if len(samples) >= max_reps:
        return True
    if len(samples) < min_reps:
        return False
    if sum(samples) >= budget_s:
        return True
    m = _summarize(samples)
    return m.spread <= rel_spread


def _next_batch(samples: list[float], min_reps: int, max_reps: int) -> int:
    # Double the sample count each round (min_reps first), so the stop test runs O(log n) times.
    return max(1, min(max_reps - len(samples), max(min_reps, len(samples))))


def _time_host(
    fn: Callable[[], Any], min_reps: int, max_reps: int, budget_s: float, warmup: int, rel_spread: float,
    between: Callable[[], Any] | None = None,
) -> Measurement:
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
        if time.perf_counter() - start > budget_s:
            break
    if between is not None:
        between()
    samples: list[float] = []
    while not _done(samples, min_reps, max_reps, budget_s, rel_spread):
        for _ in range(_next_batch(samples, min_reps, max_reps)):
            t0 = time.perf_counter_ns()
            fn()
            samples.append((time.perf_counter_ns() - t0) * 1e-9)
            if between is not None:
                between()
            if len(samples) >= min_reps and sum(samples) >= budget_s:
                break
    return _summarize(samples)


def _time_cuda(
    fn: Callable[[], Any],
    dev: torch.device,
    min_reps: int,
    max_reps: int,
    budget_s: float,
    warmup: int,
    flush_l2: bool,
    rel_spread: float,
) -> Measurement:
    with torch.cuda.device(dev):
        flush = torch.empty(2 * l2_cache_bytes(dev), dtype=torch.uint8, device=dev) if flush_l2 else None
        torch.cuda.synchronize(dev)
        start = time.perf_counter()
        for _ in range(warmup):
            fn()
            torch.cuda.synchronize(dev)
            if time.perf_counter() - start > budget_s:
                break
        samples: list[float] = []
        while not _done(samples, min_reps, max_reps, budget_s, rel_spread):
            n = _next_batch(samples, min_reps, max_reps)
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
            for i, (begin, end) in enumerate(events):
                if flush is not None:
                    # Writing 2x L2 evicts the inputs and leaves dirty lines of `flush`, not of the inputs;
                    # it runs before `begin`, so it is outside the timed region.
                    flush.fill_(i & 0xFF)
                begin.record()
                fn()
                end.record()
            torch.cuda.synchronize(dev)
            samples.extend(begin.elapsed_time(end) * 1e-3 for begin, end in events)
        del flush
    return _summarize(samples)
