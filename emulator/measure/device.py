"""The local device: which one a command may use, and the few CUDA runtime calls measuring code needs."""

from __future__ import annotations

import re
from typing import Any

import torch

from emulator.errors import EmulatorError
from kernels.references import DTYPES

_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")
OutOfMemory = torch.cuda.OutOfMemoryError


def parse_device(device: str | torch.device) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N' as a torch device this machine has; an EmulatorError naming the fix otherwise."""
    text = str(device)
    if not _DEVICE_RE.match(text or ""):
        raise EmulatorError(f"'{text}' is not a device this command can measure on. Fix: use --device cpu, or "
                            "--device cuda "
                            "(or cuda:N) on a machine with an NVIDIA GPU.", field="--device")
    dev = torch.device(text)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise EmulatorError(f"'{text}' was asked for, but this torch sees no CUDA GPU (torch {torch.__version__}, "
                                f"CUDA build: {torch.version.cuda or 'none'}). Fix: use --device cpu, or install a "
                                "CUDA build of torch on a machine with an NVIDIA GPU.", field="--device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise EmulatorError(f"'{text}' does not exist: this machine has {torch.cuda.device_count()} CUDA "
                                "device(s), numbered from 0. Fix: pick one of them.", field="--device")
    return dev


def release_memory(device: torch.device) -> None:
    """Hand cached device memory back (between workloads that each fill the GPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def use_gpu(index: int) -> torch.device:
    """Make GPU `index` this process's current device (one rank per GPU)."""
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def fp8_supported(device: Any) -> bool:
    """Whether torch._scaled_mm can run here: CUDA with compute capability 8.9 or newer."""
    dev = torch.device(device)
    return (
        "fp8" in DTYPES
        and dev.type == "cuda"
        and torch.cuda.is_available()
        and torch.cuda.get_device_capability(dev) >= (8, 9)
    )
