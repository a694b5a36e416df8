"""Published measurements shipped with the project (copied from public sources, each case with its source).

`emulator/data/published_kernels.yaml`: kernel-level results (best achievable matmul, STREAM bandwidth, NCCL
bus bandwidth); `published_training.yaml`: Megatron-LM 2021 Table 1 and Korthikanti et al. 2022 (A100);
`published_training_hopper.yaml`: NeMo and Megatron-Bridge performance tables of Megatron-Core on H100 (dense,
MoE, long context; pretraining, SFT and LoRA); `published_training_blackwell.yaml`: Megatron-Bridge's tables on
DGX B200 and GB200 (held out: a test, never fitted on); `published_training_torchtitan.yaml`: the torchtitan
team's H100 benchmark tables (held out); `published_inference.yaml`: MLPerf Inference v4.1 (one 8-GPU H100 system);
`published_inference_heldout.yaml`: MLPerf Inference results on other chips and engines (AMD MI300X with vLLM; held
out).
"""

from __future__ import annotations

import functools
from typing import Any

from emulator.files import read_yaml, shipped

DATA = shipped("data")
KINDS = ("kernels", "training", "training_hopper", "training_blackwell", "training_torchtitan",
         "inference", "inference_heldout")  # published_<kind>.yaml

# Device names in the published files -> shipped profile names.
DEVICE_ALIASES = {
    "A100-SXM": "a100-sxm",
    "A100-SXM4-80GB": "a100-sxm",
    "A100-SXM-80GB": "a100-sxm",
    "H100-SXM": "h100-sxm",
    "H100-SXM5-80GB": "h100-sxm",
    "H200-SXM": "h200-sxm",
    "H200-SXM-141GB": "h200-sxm",
    "GH200-144GB": "gh200",
    "B200-SXM": "b200",
    "GB200": "gb200",
    "B300-SXM": "b300",
    "GB300": "gb300",
    "MI300X": "mi300x",
    "MI325X (1000W)": "mi325x",
    "MI355X": "mi355x",
}


@functools.lru_cache(maxsize=8)
def load_cases(kind: str) -> tuple[dict[str, Any], ...]:
    """Cases of one file, a kind of `KINDS` (read by the strict file layer, like every file)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of published cases {kind!r}; one of {', '.join(KINDS)}")
    return tuple(read_yaml(DATA / f"published_{kind}.yaml"))


def profile_name(published_device: str) -> str | None:
    return DEVICE_ALIASES.get(published_device)
