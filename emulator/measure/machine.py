"""Facts about this machine: its device's fingerprint, caches and free memory, and steady host allocations."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import re
import time
from typing import Any

import torch

from emulator.measure.timer import as_device


def keep_freed_memory() -> bool:
    """Make host allocations steady-state, as in a long-running job: freed memory stays in the process.

    glibc hands large blocks back to the OS on free (mmap'd blocks, a trimmed heap top), so the next step's
    fresh tensors page-fault on first touch. Which blocks that hits depends on everything the process ran
    before (we saw one 16 MB gradient's zero-fill take 2 ms or 12 ms), the way a GPU's caching allocator
    avoids. Turning trimming and per-block mmap off keeps steps repeatable. Returns whether it applied
    (glibc only; other C libraries keep their own behaviour).
    """
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


def free_memory_bytes(device: str | torch.device) -> float:
    """Memory free for a run: the CUDA driver's free bytes, or the host's MemAvailable (Linux /proc/meminfo;
    else total physical memory)."""
    dev = as_device(device)
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
    dev = as_device(device)
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
    dev = as_device(device)
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
    dev = as_device(device)
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
