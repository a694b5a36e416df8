"""Validate predictions against measurements on this machine: whole-model steps, never fitted end to end.

`emulator validate --device cpu|cuda` runs each workload below for real (random weights and inputs), times it
with the project's one timing method, predicts the same program from this machine's kernel calibration, and
reports error = predicted / measured - 1 per workload with the median and maximum |error|.

The workloads span dense and MoE transformers and the recommender, in training, prefill and decode. On CUDA
they are full-width models scaled in depth (and DeepSeek in expert count, DLRM in table rows) to fit one GPU;
on CPU they are narrow models sized for a 2-core machine.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from emulator.calibrate.local import local_calibration
from emulator.engine.predict import time_trace
from emulator.engine.trace import trace_workload
from emulator.measure.device import release_memory
from emulator.measure.speed import Reference, around, at_speed, speed_vs
from emulator.measure.timer import time_callable
from emulator.stats import median, percentile
from emulator.workloads.hf import from_hf_config
from emulator.workloads.program import build_step

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def llama_config(layers: int, hidden: int, heads: int, kv_heads: int, ffn: int, vocab: int) -> dict[str, Any]:
    return dict(model_type="llama", num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                num_key_value_heads=kv_heads, intermediate_size=ffn, vocab_size=vocab,
                max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)


def mixtral_config(layers: int, hidden: int, heads: int, kv_heads: int, ffn: int, vocab: int,
                   experts: int = 8, top_k: int = 2) -> dict[str, Any]:
    return {**llama_config(layers, hidden, heads, kv_heads, ffn, vocab), "model_type": "mixtral",
            "num_local_experts": experts, "num_experts_per_tok": top_k, "rope_theta": 1e6}


def gpt_config(layers: int, hidden: int, heads: int, vocab: int, positions: int = 2048) -> dict[str, Any]:
    return dict(model_type="gpt2", n_layer=layers, n_embd=hidden, n_head=heads, n_inner=None, vocab_size=vocab,
                n_positions=positions)


MULTI_HOT = [3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1]  # MLPerf DLRM-v2


def dlrm_config(rows: int, dim: int, bottom: list[int], top: list[int], rank: int) -> dict[str, Any]:
    return dict(model_type="dlrm", num_dense_features=13, embedding_dim=dim, embedding_rows=[rows] * 26,
                multi_hot_sizes=MULTI_HOT, bottom_mlp=bottom, top_mlp=top, interaction="dcn", dcn_num_layers=3,
                dcn_low_rank_dim=rank)


# Full-width shapes for one GPU, scaled in depth.
LLAMA3_8B_4L = llama_config(4, 4096, 32, 8, 14336, 128256)
MIXTRAL_2L = mixtral_config(2, 4096, 32, 8, 14336, 32000)
GPT_1_3B = gpt_config(24, 2048, 16, 50257)
DEEPSEEK_3L = {
    **llama_config(3, 7168, 128, 128, 18432, 129280), "model_type": "deepseek_v3", "rms_norm_eps": 1e-6,
    "n_routed_experts": 32, "num_experts_per_tok": 8, "moe_intermediate_size": 2048, "n_shared_experts": 1,
    "first_k_dense_replace": 1, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "scoring_func": "sigmoid", "rope_theta": 10000.0,
}
DLRM_26 = dlrm_config(500_000, 128, [512, 256, 128], [1024, 1024, 512, 256, 1], 512)

# Narrow models for a 2-core CPU: each step takes tens to hundreds of milliseconds.
CPU_LLAMA = llama_config(4, 512, 8, 2, 1408, 8192)
CPU_MIXTRAL = mixtral_config(2, 384, 6, 2, 768, 4096, experts=4, top_k=2)
CPU_GPT = gpt_config(4, 512, 8, 8192)
CPU_DLRM = dlrm_config(20_000, 64, [256, 128, 64], [256, 128, 1], 128)


@dataclass(frozen=True, slots=True)
class Workload:
    """One validation case: a model config (HF-style mapping), a phase and its shapes."""

    name: str
    config: dict[str, Any] = field(hash=False)
    phase: str
    batch_size: int
    seq_len: int
    kv_len: int = 0
    dtype: str = "bf16"

    def model(self) -> Any:
        return from_hf_config(self.config, origin=f"validation workload {self.name}", name=self.name)


CUDA_WORKLOADS = (
    Workload("llama3-8b-4l-train", LLAMA3_8B_4L, "train", 1, 4096),
    Workload("llama3-8b-4l-prefill", LLAMA3_8B_4L, "prefill", 4, 2048),
    Workload("llama3-8b-4l-decode", LLAMA3_8B_4L, "decode", 64, 1, 2048),
    Workload("mixtral-8x7b-2l-prefill", MIXTRAL_2L, "prefill", 4, 2048),
    Workload("mixtral-8x7b-2l-train", MIXTRAL_2L, "train", 1, 4096),
    Workload("gpt-1.3b-train", GPT_1_3B, "train", 4, 2048),
    Workload("deepseek-v3-3l-e32-prefill", DEEPSEEK_3L, "prefill", 2, 2048),
    Workload("dlrm-26x500k-infer", DLRM_26, "prefill", 2048, 1, dtype="fp32"),
    Workload("dlrm-26x500k-train", DLRM_26, "train", 2048, 1, dtype="fp32"),
)

CPU_WORKLOADS = (
    Workload("llama-4l-512-train", CPU_LLAMA, "train", 2, 128, dtype="fp32"),
    Workload("llama-4l-512-prefill", CPU_LLAMA, "prefill", 4, 128, dtype="fp32"),
    Workload("llama-4l-512-decode", CPU_LLAMA, "decode", 16, 1, 256, dtype="fp32"),
    Workload("mixtral-2l-384-prefill", CPU_MIXTRAL, "prefill", 4, 128, dtype="fp32"),
    Workload("mixtral-2l-384-train", CPU_MIXTRAL, "train", 2, 128, dtype="fp32"),
    Workload("gpt-4l-512-train", CPU_GPT, "train", 2, 128, dtype="fp32"),
    Workload("dlrm-26x20k-infer", CPU_DLRM, "prefill", 512, 1, dtype="fp32"),
    Workload("dlrm-26x20k-train", CPU_DLRM, "train", 512, 1, dtype="fp32"),
)


def workloads_for(device: torch.device) -> tuple[Workload, ...]:
    return CUDA_WORKLOADS if device.type == "cuda" else CPU_WORKLOADS


def measure_workload(w: Workload, device: torch.device, *, target_time_s: float = 0.5,
                     reference: Reference | None = None) -> dict[str, Any]:
    """Time the workload's step; with a speed `reference`, the result's `reference_s` holds the reference's
    reading around each timed step (the mean of the one before and the one after)."""
    step = build_step(w.model(), w.phase, batch_size=w.batch_size, seq_len=w.seq_len, kv_len=w.kv_len,  # type: ignore[arg-type]
                      dtype=DTYPES[w.dtype], device=device)
    first = len(reference.readings) if reference else 0
    m = time_callable(step, device=device, warmup=2, min_reps=5, max_reps=50, target_time_s=target_time_s,
                      flush_l2=False,  # a whole step streams far more than the cache
                      between=reference.read if reference else None)
    out = m.as_dict(with_samples=True)
    if reference:
        out["reference_s"] = around(reference.readings[first:])
    return out


def predict_workload(w: Workload, profile: Any, table: Any) -> float:
    trace = trace_workload(w.model(), w.phase, w.batch_size, w.seq_len, w.kv_len, DTYPES[w.dtype])
    return time_trace(trace, profile, table, None).total_s


def validate_device(device: str, *, only: list[str] | None = None, progress: bool = True,
                    rounds: int | None = None) -> dict[str, Any]:
    """Measure and predict every workload of this device; the `--json` shape of `emulator validate`.

    On a CPU each workload is measured in `rounds` (default 4) rounds, round-robin across workloads, and its
    measured time is the mean of all its steps, the statistic the CPU calibration fits its kernels to (see
    `measure.Measurement.mean_s`). The calibration's speed reference is read between the steps, and each
    workload is predicted at the machine's speed around its own steps against its speed during calibration
    (`emulator.measure.speed`); each case records that speed. A GPU is measured once, by its median.
    """
    dev = torch.device(device)
    profile, table = local_calibration(device)
    chosen = [w for w in workloads_for(dev) if not only or w.name in only]
    rounds = rounds if rounds is not None else (1 if dev.type == "cuda" else 4)
    reference = Reference(dev) if dev.type == "cpu" and table.reference_s else None
    samples: dict[str, list[float]] = {w.name: [] for w in chosen}
    readings: dict[str, list[float]] = {w.name: [] for w in chosen}
    for _ in range(rounds):
        for w in chosen:
            m = measure_workload(w, dev, target_time_s=0.5 if dev.type == "cuda" else 0.4, reference=reference)
            samples[w.name] += m["samples_s"]
            readings[w.name] += m.get("reference_s", [])
            release_memory(dev)
    cases = []
    for w in chosen:
        times = samples[w.name]
        middle = median(times)
        measured = middle if dev.type == "cuda" else sum(times) / len(times)
        speed = speed_vs(table.reference_s, readings[w.name]) if reference and table.reference_s else None
        predicted = predict_workload(w, profile, at_speed(table, speed))
        case: dict[str, Any] = {
            "id": w.name, "phase": w.phase, "measured": measured, "measured_median": middle,
            "measured_p20": percentile(times, 20), "measured_p80": percentile(times, 80), "num_steps": len(times),
            "predicted": predicted, "error": predicted / measured - 1,
        }
        if speed is not None:
            case["speed_vs_calibration"] = speed
            case["predicted_at_calibration_speed"] = predict_workload(w, profile, table)
        cases.append(case)
        if progress:
            print(f"{w.name:30s} measured {measured * 1e3:9.2f} ms  predicted {predicted * 1e3:9.2f} ms  "
                  f"error {case['error']:+.1%}", file=sys.stderr, flush=True)
    errors = [abs(c["error"]) for c in cases]
    return {
        "device": profile.name,
        "calibration": table.source,
        "provenance": table.provenance,
        "rounds": rounds,
        "cases": cases,
        "summary": {"median_abs_error": median(errors) if errors else None,
                    "max_abs_error": max(errors) if errors else None, "num_cases": len(cases)},
    }


def replay(measured_cases: list[dict[str, Any]], profile: Any, table: Any) -> dict[str, Any]:
    """Re-predict recorded measurements (a saved `validate --json`) with another calibration: refits are
    judged on the device's real step times without the device."""
    by_id = {w.name: w for w in (*CUDA_WORKLOADS, *CPU_WORKLOADS)}
    cases = []
    for c in measured_cases:
        predicted = predict_workload(by_id[c["id"]], profile, table)
        cases.append({**c, "predicted": predicted, "error": predicted / c["measured"] - 1})
    errors = [abs(c["error"]) for c in cases]
    return {"cases": cases, "summary": {"median_abs_error": median(errors),
                                        "max_abs_error": max(errors), "num_cases": len(cases)}}
