"""Per-kernel attribution of a measured step by the torch profiler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from emulator.measure.timer import as_device


def profile_kernels(step: Callable[[], Any], device: str | torch.device, num_steps: int = 2,
                    top: int | None = 20) -> list[dict[str, Any]]:
    """Top kernels by self device time per step (CPU: self CPU time of each op) over `num_steps` steps.

    Each row is {"name", "total_s" (per step), "calls" (per step)}, longest first; `top=None` keeps all.
    """
    dev = as_device(device)
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
