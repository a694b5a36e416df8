"""Measuring on a real device: the only module that touches `torch.cuda` timing and NVML.

One timing method for everything (after `triton.testing.do_bench`): warm up, synchronize, time each
repetition (CUDA events on GPU, `perf_counter_ns` on CPU), flush the L2 cache before each GPU repetition
outside the timed region, repeat until the spread is small or the time budget is spent, report the median
with p20/p80. Power, clocks and temperature come from NVML sampled in a background thread.
"""

from __future__ import annotations

import math
import os
import platform
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

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
        """Mean of the samples: the statistic CPU calibrations and validations use (see the note above
        `percentile`)."""
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


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]), as numpy's default method."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _summarize(samples: Sequence[float]) -> Measurement:
    return Measurement(
        median_s=percentile(samples, 50),
        p20_s=percentile(samples, 20),
        p80_s=percentile(samples, 80),
        num_reps=len(samples),
        samples_s=tuple(samples),
    )


def keep_freed_memory() -> bool:
    """Make host allocations steady-state, as in a long-running job: freed memory stays in the process.

    glibc hands large blocks back to the OS on free (mmap'd blocks, a trimmed heap top), so the next step's
    fresh tensors page-fault on first touch. Which blocks that hits depends on everything the process ran
    before (we saw one 16 MB gradient's zero-fill take 2 ms or 12 ms), the way a GPU's caching allocator
    avoids. Turning trimming and per-block mmap off keeps steps repeatable. Returns whether it applied
    (glibc only; other C libraries keep their own behaviour).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        return False
    if mallopt is None or platform.libc_ver()[0] != "glibc":
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_trim_threshold, 2**31 - 1)) and bool(mallopt(m_mmap_max, 0))


def _as_device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def l2_cache_bytes(device: str | torch.device) -> int:
    """The device's L2 size in bytes, or a conservative 256 MiB when torch cannot tell."""
    dev = _as_device(device)
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
    after the warm-up and after every timed call (a speed reference read next to each; see `emulator.speed`).
    """
    dev = _as_device(device)
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


# ----------------------------------------------------------------------------------------------- power


@dataclass(frozen=True, slots=True)
class PowerReading:
    """What a `PowerSampler` saw: means and peaks over its samples; `reason` says why nothing was measured."""

    num_samples: int
    duration_s: float
    mean_power_w: float | None
    peak_power_w: float | None
    energy_j: float | None
    mean_sm_clock_mhz: float | None
    max_sm_clock_mhz: float | None
    max_temperature_c: float | None
    energy_counter_j: float | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _nvml_handle(pynvml: Any, device: torch.device) -> Any:
    """The NVML handle of a torch CUDA device, matched by UUID (torch and NVML may number GPUs differently)."""
    props = torch.cuda.get_device_properties(device)
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        text = str(uuid)
        for candidate in (text, "GPU-" + text):
            try:
                return pynvml.nvmlDeviceGetHandleByUUID(candidate)
            except Exception:  # noqa: BLE001 - NVML raises its own error types per code
                continue
    return pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)


class PowerSampler:
    """Sample NVML power, SM clock and temperature in a background thread while the `with` body runs.

    Never raises for a missing GPU or NVML: `reading.reason` says why power was not measured. Energy is the
    trapezoid integral of the sampled power; where the driver has a total-energy counter its difference is
    also recorded (`energy_counter_j`), which does not miss spikes between samples.
    """

    def __init__(self, device: str | torch.device = "cuda", *, interval_s: float = 0.05) -> None:
        self.device = torch.device(device)
        self.interval_s = interval_s
        self.reading: PowerReading | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples: list[tuple[float, float, float | None, float | None]] = []  # (t, W, MHz, C)
        self._reason: str | None = None
        self._nvml: Any = None
        self._handle: Any = None
        self._energy0_mj: float | None = None
        self._t0 = 0.0

    def __enter__(self) -> PowerSampler:
        self._t0 = time.perf_counter()
        self._reason = self._open()
        if self._reason is None:
            try:
                self._energy0_mj = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
            except Exception:  # noqa: BLE001 - not every GPU has the counter
                self._energy0_mj = None
            self._sample()
            self._thread = threading.Thread(target=self._run, name="PowerSampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._sample()
        self.reading = self._finish(time.perf_counter() - self._t0)
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass

    def _open(self) -> str | None:
        if self.device.type != "cuda":
            return f"power: not measured (device is {self.device.type}, not an NVIDIA GPU)"
        if not torch.cuda.is_available():
            return "power: not measured (no NVIDIA GPU)"
        try:
            import pynvml  # from the nvidia-ml-py package
        except ImportError:
            return "power: not measured (pynvml missing: pip install nvidia-ml-py)"
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001
            return f"power: not measured (NVML init failed: {exc})"
        self._nvml = pynvml
        try:
            dev = self.device if self.device.index is not None else torch.device("cuda", torch.cuda.current_device())
            self._handle = _nvml_handle(pynvml, dev)
            pynvml.nvmlDeviceGetPowerUsage(self._handle)
        except Exception as exc:  # noqa: BLE001
            return f"power: not measured (NVML cannot read this GPU's power: {exc})"
        return None

    def _sample(self) -> None:
        nvml, h = self._nvml, self._handle
        try:
            watts = nvml.nvmlDeviceGetPowerUsage(h) / 1000.0  # milliwatts
        except Exception:  # noqa: BLE001
            return
        clock: float | None
        temp: float | None
        try:
            clock = float(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM))
        except Exception:  # noqa: BLE001
            clock = None
        try:
            temp = float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
        except Exception:  # noqa: BLE001
            temp = None
        self._samples.append((time.perf_counter() - self._t0, watts, clock, temp))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _finish(self, duration_s: float) -> PowerReading:
        s = self._samples
        if self._reason is not None or not s:
            reason = self._reason or "power: not measured (NVML returned no samples)"
            return PowerReading(0, duration_s, None, None, None, None, None, None, None, reason)
        energy = sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0, _, _), (t1, w1, _, _) in zip(s, s[1:]))
        span = s[-1][0] - s[0][0]
        mean_w = energy / span if span > 0 else s[0][1]
        clocks = [c for _, _, c, _ in s if c is not None]
        temps = [c for _, _, _, c in s if c is not None]
        counter_j: float | None = None
        if self._energy0_mj is not None:
            try:
                now_mj = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
                counter_j = (now_mj - self._energy0_mj) / 1e3  # millijoules
            except Exception:  # noqa: BLE001
                counter_j = None
        return PowerReading(
            num_samples=len(s),
            duration_s=duration_s,
            mean_power_w=mean_w,
            peak_power_w=max(w for _, w, _, _ in s),
            energy_j=energy,
            mean_sm_clock_mhz=sum(clocks) / len(clocks) if clocks else None,
            max_sm_clock_mhz=max(clocks) if clocks else None,
            max_temperature_c=max(temps) if temps else None,
            energy_counter_j=counter_j,
            reason=None,
        )


def steady_power(step: Callable[[], Any], device: str | torch.device, *, min_time_s: float = 2.0,
                 min_steps: int = 3) -> tuple[PowerReading, int]:
    """Power over a steady loop of `step` lasting at least `min_time_s`; returns (reading, steps run).

    A separate loop rather than the timed one: NVML's power reading is averaged over about a second, so a
    short timed loop under-reads it. Without NVML or a GPU nothing runs and the reading carries the reason.
    """
    dev = _as_device(device)
    num_steps = 0
    with PowerSampler(dev) as sampler:
        if sampler._reason is None:
            t0 = time.perf_counter()
            while num_steps < min_steps or time.perf_counter() - t0 < min_time_s:
                step()
                num_steps += 1
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
    assert sampler.reading is not None  # set by __exit__
    return sampler.reading, num_steps


def free_memory_bytes(device: str | torch.device) -> float:
    """Memory free for a run: the CUDA driver's free bytes, or the host's MemAvailable (Linux /proc/meminfo;
    else total physical memory)."""
    dev = _as_device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return float(free)
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024  # reported in KiB
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


# ------------------------------------------------------------------------------------------- profiler


def profile_kernels(step: Callable[[], Any], device: str | torch.device, num_steps: int = 2,
                    top: int | None = 20) -> list[dict[str, Any]]:
    """Top kernels by self device time per step (CPU: self CPU time of each op) over `num_steps` steps.

    Each row is {"name", "total_s" (per step), "calls" (per step)}, longest first; `top=None` keeps all.
    """
    from torch.profiler import ProfilerActivity, profile

    dev = _as_device(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(num_steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    rows = []
    for evt in prof.key_averages():
        if dev.type == "cuda":
            # Device-side events only (kernels, memcpy, memset): CPU ops also carry the device time of the
            # kernels they launched, and runtime events ("Command Buffer Full") are not GPU work.
            if getattr(evt, "device_type", None) != torch.autograd.DeviceType.CUDA:
                continue
            if getattr(evt, "is_user_annotation", False) or "#" in evt.key:  # e.g. "Optimizer.step#AdamW.step"
                continue
            t_us = getattr(evt, "self_device_time_total", None)
            if t_us is None:
                t_us = getattr(evt, "self_cuda_time_total", 0)
        else:
            t_us = evt.self_cpu_time_total
        if t_us and t_us > 0:
            rows.append({"name": evt.key[:160], "total_s": t_us * 1e-6 / num_steps, "calls": evt.count // num_steps})
    rows.sort(key=lambda r: -r["total_s"])
    return rows if top is None else rows[:top]


# ----------------------------------------------------------------------------------------- fingerprint


def _slug(text: str, limit: int = 48) -> str:
    text = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$|\b\d+-core\b", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:limit].strip("-") or "unknown"


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _nvml_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML, no driver to report
        return None


def device_fingerprint(device: str | torch.device) -> dict[str, Any]:
    """What a measurement ran on: chip, memory, software versions, and a hostname-free `key`.

    `key` names the calibration file (`calibrations/<key>.json`): the same chip model and core count give
    the same key on any host.
    """
    dev = _as_device(device)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    info: dict[str, Any] = {
        "kind": dev.type,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": cudnn,
        "cpu_model": cpu_model(),
        "num_threads": torch.get_num_threads(),
        "num_cpus": os.cpu_count(),
        "python_version": platform.python_version(),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info.update(
            name=props.name,
            total_memory_bytes=int(props.total_memory),
            compute_capability=f"{props.major}.{props.minor}",
            num_sms=int(props.multi_processor_count),
            l2_cache_bytes=int(getattr(props, "L2_cache_size", 0)) or None,
            driver_version=_nvml_driver(),
        )
        info["key"] = f"cuda-{_slug(props.name)}-sm{props.major}{props.minor}"
    else:
        total = None
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            pass
        info.update(name=info["cpu_model"], total_memory_bytes=total, driver_version=None)
        info["key"] = f"{dev.type}-{_slug(info['cpu_model'])}-{info['num_threads']}t"
    return info


def last_level_cache_bytes(device: str | torch.device) -> int | None:
    """Size of the cache that sits in front of main memory: the GPU's L2, or the CPU's largest cache level."""
    dev = _as_device(device)
    if dev.type == "cuda":
        return int(getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0)) or None
    sizes = []
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(root):
            try:
                with open(os.path.join(root, entry, "size"), encoding="utf-8") as f:
                    text = f.read().strip().upper()
            except OSError:
                continue
            scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
            sizes.append(int(text.rstrip("KMG")) * scale)
    except OSError:
        return None
    return max(sizes) if sizes else None


def host_overhead_s(device: str | torch.device, *, num_ops: int = 2000) -> dict[str, float]:
    """Host time to dispatch one small op (a kernel launch on GPU) and one view, from tight loops.

    On a GPU the ops are tiny so the device keeps up and the wall time per op is the host's dispatch cost.
    """
    dev = _as_device(device)
    x = torch.randn(8, device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    out: dict[str, float] = {}
    for name, body in (("op", lambda: x.add(1.0)), ("view", lambda: x.view(2, 4))):
        for _ in range(100):
            body()
        sync()
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(num_ops):
                body()
            sync()
            best = min(best, (time.perf_counter() - t0) / num_ops)
        out[name] = best
    return out
