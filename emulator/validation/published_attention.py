"""Device transfer at the kernel level, attention: NVIDIA AIConfigurator's measured TensorRT-LLM context-attention
tables (emulator/data/aic_attention_trtllm.csv) against the emulator's efficiency table of each chip.

The rows are TensorRT-LLM context (prefill) attention forwards as AIConfigurator's collector times them
(collector/trtllm/collect_attn.py: the TRTLLM attention backend's forward over a fused q/k/v input, with RoPE fused
into it and the keys and values written to the paged cache, causal), at head dimension 128 in bf16 and in fp8 (fp8
context FMHA over an fp8 KV cache) and at head dimension 64 in bf16 (GPT-OSS's), on H100 (TensorRT-LLM 1.2.0rc5),
H200, B200, GB200, B300 and GB300 (1.3.0rc10). Five head layouts per GPU (query heads / key-value heads: 8/1, 16/2,
32/4, 32/8, 64/8) at 512 to 16,384 tokens and batches of 1, 4 and 16 sequences (at most 65,536 tokens). The head
dimension 64 rows test the per-score work a smaller head keeps (`engine.roofline.SCORE_OPS`), whose forward figure
was fitted on these pairs.

Each row is predicted as the backend runs it on the chip as the engine runs it (`engine_device`: the graph's gap
per kernel, no host launch): the q/k/v preprocessing (RoPE on queries and keys, the keys and values written to the
cache: the fused input read once, queries and cache written once, memory bound) and the fused attention kernel
(`kernels.attention`: causal query-key pairs, its FLOPs and bytes), in the 16-bit format whatever the row's: the
emulator runs attention as traced, so the fp8 rows measure what fp8 context FMHA saves that it does not model.
Nothing here is fitted: H100 and H200 run on their own calibrations, the Blackwell chips on the H200's moved to
their achievable rates (`engine.transfer`: attention by each chip's best fused-attention rate in these tables over
the H200's, a shape this grid leaves out), so the Blackwell rows test the transfer.
Error = predicted / measured - 1, summarised per chip and kernel (`bfloat16`, `fp8`, `bfloat16 d64`) and per
sequence-length band.
"""

from __future__ import annotations

from typing import Any

from emulator.engine.roofline import kernel_time
from emulator.files import shipped
from emulator.hardware import DeviceProfile
from emulator.precision import DTYPE_BYTES
from emulator.stacks import load_stack
from emulator.validation.kernel_tables import check, read_rows, render_by_chip
from kernels import Cost, KernelCall
from kernels.attention import attention_flops, causal_pairs

CSV = shipped("data") / "aic_attention_trtllm.csv"
SOURCE = "AIConfigurator attention tables (TRT)"
ENGINE = "trtllm"
BANDS = (("s <= 1024", 1, 1024), ("s 2048-4096", 2048, 4096), ("s >= 8192", 8192, 1 << 30))
BF16_BYTES = DTYPE_BYTES["bf16"]
LSE_BYTES = 4.0  # one fp32 log-sum-exp per query row and head


def rows() -> list[dict[str, Any]]:
    return read_rows(CSV, ("batch", "isl", "num_heads", "num_kv_heads", "head_dim"))


def context_calls(b: int, s: int, h: int, g: int, d: int) -> list[KernelCall]:
    """The kernels of one context-attention forward (see the module docstring), in the 16-bit format."""
    q, kv = BF16_BYTES * b * s * h * d, BF16_BYTES * b * s * g * d  # the queries; the keys (or the values)
    pre = KernelCall(family="elementwise", op="qkv_preprocess", shapes=((b, s, (h + 2 * g) * d),), dtype="bf16",
                     cost=Cost(vector_flops=6.0 * b * s * (h + g) * d, bytes_read=q + 2 * kv,
                               bytes_written=q + 2 * kv))
    pairs = causal_pairs(s, s, True)
    fmha = KernelCall(family="attention", op="emulator.attention", shapes=((b, h, s, d), (b, g, s, d), (b, g, s, d)),
                      dtype="bf16", cost=Cost(matrix_flops=attention_flops((b, h, s, d), (b, g, s, d), d, True),
                                              vector_flops=5.0 * b * h * pairs, bytes_read=q + 2 * kv,
                                              bytes_written=q + LSE_BYTES * b * h * s))
    return [pre, fmha]


def predict_s(device: DeviceProfile, table: Any, row: dict[str, Any]) -> float:
    return sum(kernel_time(c, device, table).time_s for c in context_calls(
        row["batch"], row["isl"], row["num_heads"], row["num_kv_heads"], row["head_dim"]))


def validate_attention_tables() -> dict[str, Any]:
    """Every row predicted; the `--json` section `aic_attention` of `validate --published`."""
    def case(r: dict[str, Any]) -> dict[str, Any]:
        shape = f"{r['batch']}x{r['isl']}x{r['num_heads']}/{r['num_kv_heads']}x{r['head_dim']}"
        kernel = r["attn_dtype"] + ("" if r["head_dim"] == 128 else f" d{r['head_dim']}")
        return {"id": f"aic-attention:{r['device']}:{r['attn_dtype']}:{shape}", "attn_dtype": r["attn_dtype"],
                "kernel": kernel, "metric": f"{kernel} context attention s, {r['device']}", "isl": r["isl"]}

    return check(SOURCE, load_stack(ENGINE, "serving"), rows(), predict_s, case, "kernel", "isl", BANDS)


def render(section: dict[str, Any]) -> str:
    return render_by_chip(f"Kernel level: {SOURCE}, TensorRT-LLM context attention with fused RoPE and KV-cache write "
                          "(error = predicted / measured - 1; predicted in bf16 for both formats; Blackwell takes the "
                          "H200's calibration moved to its achievable rates, attention to its measured fused-attention "
                          "ceiling; d64: head dimension 64)", section, "kernel", BANDS)


__all__ = ["CSV", "SOURCE", "context_calls", "render", "rows", "validate_attention_tables"]
