"""Specs for emulator.measure.timer: CPU timing statistics, power sampling without a GPU, and the fingerprint."""

from __future__ import annotations

import time

import pytest
import torch

import emulator.measure.timer as timer
from emulator.measure.machine import device_fingerprint
from emulator.measure.power import PowerSampler
from emulator.measure.timer import Measurement, time_callable
from emulator.stats import percentile


def test_cpu_timing_orders_percentiles() -> None:
    """A CPU timing has p20 <= median <= p80, at least min_reps samples and positive times."""
    x = torch.randn(256, 256)
    m = time_callable(lambda: x @ x, device="cpu", min_reps=5, max_reps=50, target_time_s=0.05)
    assert isinstance(m, Measurement)
    assert 0 < m.p20_s <= m.median_s <= m.p80_s
    assert 5 <= m.num_reps <= 50
    assert len(m.samples_s) == m.num_reps


class FakeClock:
    """A clock for `emulator.measure.timer` that moves only when a timed call advances it."""

    def __init__(self) -> None:
        self.ns = 0

    def advance(self, seconds: float) -> None:
        self.ns += round(seconds * 1e9)

    def perf_counter_ns(self) -> int:
        return self.ns

    def perf_counter(self) -> float:
        return self.ns * 1e-9


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(timer, "time", fake)
    return fake


def test_cpu_timing_measures_a_sleep() -> None:
    """A 2 ms sleep is timed as at least 2 ms, in seconds (a sleep never ends early)."""
    m = time_callable(lambda: time.sleep(0.002), device="cpu", min_reps=5, max_reps=10, warmup=1)
    assert 0.002 <= m.p20_s <= m.median_s < 1.0


def test_each_repetition_is_the_clock_time_of_one_call(clock: FakeClock) -> None:
    """Calls that take 2, 3, 2, 3, ... ms on the clock give exactly those samples, after the warm-up calls."""
    durations = iter([0.01, 0.01] + [0.002, 0.003] * 10)  # two warm-up calls, then the timed ones
    m = time_callable(lambda: clock.advance(next(durations)), device="cpu", warmup=2, min_reps=6, max_reps=6,
                      target_time_s=10)
    assert m.samples_s == pytest.approx((0.002, 0.003) * 3)
    assert m.median_s == pytest.approx(0.0025) and m.mean_s == pytest.approx(0.0025)


def test_a_slow_call_ends_the_warm_up(clock: FakeClock) -> None:
    """One warm-up call longer than target_time_s is warm-up enough: the next call is already timed."""
    durations = iter([0.5] + [0.001] * 10)
    m = time_callable(lambda: clock.advance(next(durations)), device="cpu", warmup=3, min_reps=5, max_reps=5,
                      target_time_s=0.2)
    assert m.samples_s == pytest.approx((0.001,) * 5)


def test_timing_stops_at_max_reps(clock: FakeClock) -> None:
    """However long the budget and however wide the spread, repetitions stop at max_reps."""
    durations = iter([1e-6, 3e-6] * 10)
    m = time_callable(lambda: clock.advance(next(durations)), device="cpu", warmup=0, min_reps=3, max_reps=7,
                      rel_spread=0.0, target_time_s=10)
    assert m.num_reps == 7


def test_timing_stops_when_the_budget_is_spent(clock: FakeClock) -> None:
    """Calls of 5 and 15 ms with a 99 ms budget stop at the tenth call, the first to reach the budget."""
    durations = iter([0.005, 0.015] * 50)
    m = time_callable(lambda: clock.advance(next(durations)), device="cpu", warmup=0, min_reps=3, max_reps=100,
                      target_time_s=0.099)
    assert m.num_reps == 10


def test_timing_stops_once_the_spread_is_small(clock: FakeClock) -> None:
    """Equal calls have no spread: the timer stops at min_reps."""
    m = time_callable(lambda: clock.advance(0.001), device="cpu", warmup=0, min_reps=4, max_reps=100,
                      target_time_s=10)
    assert m.num_reps == 4 and m.spread == 0.0


def test_bad_rep_bounds_are_rejected() -> None:
    """min_reps above max_reps is a programming error."""
    with pytest.raises(ValueError):
        time_callable(lambda: None, device="cpu", min_reps=10, max_reps=5)


def test_percentile_interpolates_like_numpy() -> None:
    """Percentiles interpolate linearly between order statistics."""
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 20) == pytest.approx(1.8)
    assert percentile([4.0], 80) == 4.0


def test_power_sampler_on_cpu_says_not_measured() -> None:
    """Without an NVIDIA GPU the sampler records a reason and no numbers, and never raises."""
    with PowerSampler("cpu", interval_s=0.01) as sampler:
        time.sleep(0.02)
    r = sampler.reading
    assert r is not None and r.mean_power_w is None and r.energy_j is None and r.num_samples == 0
    assert r.reason is not None and r.reason.startswith("power: not measured")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_power_sampler_for_cuda_without_gpu_says_not_measured() -> None:
    """Asking for CUDA power on a machine without a GPU gives 'no NVIDIA GPU'."""
    with PowerSampler("cuda") as sampler:
        pass
    assert sampler.reading is not None and sampler.reading.reason == "power: not measured (no NVIDIA GPU)"


def test_cpu_fingerprint_has_a_stable_hostname_free_key() -> None:
    """The CPU fingerprint names the CPU and thread count; its key is a short slug without the hostname."""
    import socket

    fp = device_fingerprint("cpu")
    assert fp["kind"] == "cpu" and fp["torch_version"] == torch.__version__
    assert fp["key"].startswith("cpu-") and fp["key"].endswith(f"-{torch.get_num_threads()}t")
    assert fp["key"] == device_fingerprint("cpu")["key"]
    assert socket.gethostname().lower() not in fp["key"] or len(socket.gethostname()) < 4
    assert all(c.isalnum() or c == "-" for c in fp["key"]) and len(fp["key"]) <= 64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_timing_and_power() -> None:
    """On a GPU, event timing orders percentiles and NVML reports a positive power."""
    x = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    with PowerSampler("cuda") as sampler:
        m = time_callable(lambda: x @ x, device="cuda", target_time_s=0.2)
    assert 0 < m.p20_s <= m.median_s <= m.p80_s
    r = sampler.reading
    assert r is not None
    assert r.reason is not None or (r.mean_power_w or 0) > 0


def test_mean_is_the_mean_of_the_samples() -> None:
    m = time_callable(lambda: sum(range(2000)), device="cpu", min_reps=7, max_reps=7, target_time_s=10.0)
    assert m.mean_s == pytest.approx(sum(m.samples_s) / 7)


def test_keep_freed_memory_is_safe_to_call_anywhere() -> None:
    """Applies on glibc (where it returns True) and is a no-op elsewhere; calling it twice is harmless."""
    import platform

    from emulator.measure.machine import keep_freed_memory

    first, second = keep_freed_memory(), keep_freed_memory()
    assert first == second
    assert first == (platform.libc_ver()[0] == "glibc")
