"""Board power, clocks and temperature from NVML, sampled in a background thread while a loop runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from emulator.measure.timer import as_device


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
        energy = sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0, _, _), (t1, w1, _, _) in zip(s, s[1:], strict=False))
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
    dev = as_device(device)
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
