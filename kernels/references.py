"""Torch reference implementations and input generators for the microbenchmarks, one per kernel family.

Each `Reference` has `make_inputs(params, *, device, dtype) -> tuple` (random data, never zeros: zeros can run
faster than real data and hide unwritten outputs) and `fn(*inputs)`. Non-tensor options (a causal flag) ride
at the end of the inputs tuple so that the same `fn` runs on real tensors and on meta tensors for tracing.
Byte accounting beside each `fn` is the minimum traffic: every input read once, every output written once;
`e` is the element size in bytes.

This module imports torch only. Attention references take an `attention=` keyword so a caller can pass the
project's traceable fused op; the default is `F.scaled_dot_product_attention` with GQA heads expanded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "tf32": torch.float32,  # fp32 storage, matrix unit in tf32 mode (see `matmul_precision`)
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
if hasattr(torch, "float8_e4m3fn"):
    DTYPES["fp8"] = torch.float8_e4m3fn


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a project dtype name ('bf16', 'fp32', ...)."""
    if name not in DTYPES:
        raise KeyError(f"unknown dtype '{name}'; known: {', '.join(DTYPES)}")
    return DTYPES[name]


@contextlib.contextmanager
def matmul_precision(dtype_name: str) -> Iterator[None]:
    """Run fp32 matrix products as tf32 for 'tf32' and as true fp32 otherwise; restore the setting after."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = dtype_name == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _randn(shape: tuple[int, ...], device: Any, dtype: torch.dtype, gen: torch.Generator | None = None) -> torch.Tensor:
    # Drawn in fp32 and cast, so that fp8 and any other storage dtype get the same distribution.
    return torch.randn(shape, device=device, dtype=torch.float32, generator=gen).to(dtype)


def _seed(device: Any, seed: int = 0) -> torch.Generator | None:
    if torch.device(device).type == "meta":  # shapes only: the cost model re-traces sweep points on meta
        return None
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(seed)
    return gen


# ---------------------------------------------------------------------------------------------- gemm


def gemm_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    g = _seed(device)
    batch = p.get("batch", 0)
    lead = (batch,) if batch else ()
    a = _randn((*lead, p["m"], p["k"]), device, dtype, g)
    if batch:
        return a, _randn((batch, p["k"], p["n"]), device, dtype, g)
    # A 2-D product is laid out as nn.Linear runs it: B is the transpose of an [N, K] weight (x @ W^T), the
    # operand order the BLAS libraries see for every linear layer of the workloads.
    return a, _randn((p["n"], p["k"]), device, dtype, g).t()


def gemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # FLOPs: 2*M*N*K (per batch). Bytes: read (M*K + K*N)*e, write M*N*e.
    return a @ b


def scaled_mm_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    g = _seed(device)
    a = _randn((p["m"], p["k"]), device, dtype, g)
    # cuBLASLt fp8 wants B column-major: build it [N, K] row-major and pass the transpose.
    b = _randn((p["n"], p["k"]), device, dtype, g).t()
    one = torch.ones((), device=device, dtype=torch.float32)
    return a, b, one, one.clone()


def scaled_mm(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor) -> torch.Tensor:
    # FLOPs: 2*M*N*K on the fp8 matrix unit. Bytes: read (M*K + K*N)*1, write M*N*2 (bf16 out).
    out = torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)
    return out[0] if isinstance(out, tuple) else out  # torch < 2.4 returned (out, amax)


# ----------------------------------------------------------------------------------------- attention


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True) -> torch.Tensor:
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def attention_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    """q [B, Hq, Sq, D], k/v [B, Hkv, Skv, D]; decode has Sq = 1 over a kv cache of `kv_len`."""
    g = _seed(device)
    b, hq, d = p["batch"], p["heads"], p["head_dim"]
    hkv = p.get("kv_heads", hq)
    sq = p.get("seq_len", 1)
    skv = p.get("kv_len", sq)
    causal = p.get("causal", sq > 1)
    q = _randn((b, hq, sq, d), device, dtype, g)
    k = _randn((b, hkv, skv, d), device, dtype, g)
    v = _randn((b, hkv, skv, d), device, dtype, g)
    return q, k, v, causal


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, *, attention: Callable = _sdpa
) -> torch.Tensor:
    # FLOPs: 4*B*Hq*Sq*Skv*D (QK^T and PV), halved when causal with Sq == Skv; exp: B*Hq*Sq*Skv.
    # Bytes (fused, FlashAttention): read (B*Hq*Sq*D + 2*B*Hkv*Skv*D)*e, write B*Hq*Sq*D*e.
    # Decode (Sq = 1) is memory-bound: the kv cache read dominates.
    return attention(q, k, v, causal=causal)


def attention_backward_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    q, k, v, causal = attention_inputs(p, device=device, dtype=dtype)
    q, k, v = (t.requires_grad_(True) for t in (q, k, v))
    grad_out = _randn(tuple(q.shape), device, dtype, _seed(device, 1))
    return q, k, v, grad_out, causal


def attention_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grad_out: torch.Tensor,
    causal: bool,
    *,
    attention: Callable = _sdpa,
) -> tuple[torch.Tensor, ...]:
    # Forward then backward. Backward FLOPs: 2.5x forward (dQ, dK, dV, and recomputing QK^T).
    # Bytes of the backward: read q, k, v, out, grad_out; write dq, dk, dv (each once).
    out = attention(q, k, v, causal=causal)
    return torch.autograd.grad(out, (q, k, v), grad_out)


# --------------------------------------------------------------------------- elementwise and activations


def unary_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    return (_randn((p["rows"], p["cols"]), device, dtype, _seed(device)),)


def binary_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    g = _seed(device)
    return _randn((p["rows"], p["cols"]), device, dtype, g), _randn((p["rows"], p["cols"]), device, dtype, g)


def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # FLOPs: n. Bytes: read 2*n*e, write n*e.
    return a + b


def mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # FLOPs: n. Bytes: read 2*n*e, write n*e.
    return a * b


def silu(x: torch.Tensor) -> torch.Tensor:
    # FLOPs: ~4n (exp, add, div, mul). Bytes: read n*e, write n*e.
    return F.silu(x)


def gelu(x: torch.Tensor) -> torch.Tensor:
    # FLOPs: ~8n (tanh approximation or erf). Bytes: read n*e, write n*e.
    return F.gelu(x)


# ----------------------------------------------------------------------------------------------- norms


def norm_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    g = _seed(device)
    x = _randn((p["rows"], p["cols"]), device, dtype, g)
    w = (1.0 + 0.1 * _randn((p["cols"],), device, torch.float32, g)).to(dtype)
    return x, w


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    # Written as the models write it (fp32 math, cast back).
    # FLOPs: ~4n (square, mean, scale, weight). Bytes: read n*e + cols*e, write n*e.
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def layer_norm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # FLOPs: ~7n. Bytes: read n*e + 2*cols*e (weight, bias), write n*e.
    return F.layer_norm(x, (x.shape[-1],), w, w)


# --------------------------------------------------------------------------------- softmax, cross entropy


def softmax(x: torch.Tensor) -> torch.Tensor:
    # FLOPs: ~5n (max, sub, exp, sum, div). Bytes: read n*e, write n*e.
    return torch.softmax(x, dim=-1)


def cross_entropy_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    g = _seed(device)
    logits = _randn((p["rows"], p["vocab"]), device, dtype, g)
    target = torch.randint(0, p["vocab"], (p["rows"],), device=device, generator=g)
    return logits, target


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # FLOPs: ~5*rows*vocab (log-softmax). Bytes: read rows*vocab*e + rows*8, write rows*vocab*4 (fp32
    # log-probs in eager) + a scalar.
    return F.cross_entropy(logits.float(), target)


# ------------------------------------------------------------------------------------------- embedding


def embedding_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    g = _seed(device)
    table = _randn((p["rows"], p["dim"]), device, dtype, g)
    idx = torch.randint(0, p["rows"], (p["num_indices"],), device=device, generator=g)
    return idx, table


def embedding(idx: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    # FLOPs: 0. Bytes: read num_indices*(dim*e + 8), write num_indices*dim*e (a gather; random rows).
    return F.embedding(idx, table)


def embedding_bag_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    g = _seed(device)
    table = _randn((p["rows"], p["dim"]), device, dtype, g)
    num = p["batch"] * p["pooling"]
    idx = torch.randint(0, p["rows"], (num,), device=device, generator=g)
    offsets = torch.arange(0, num, p["pooling"], device=device)
    return idx, table, offsets


def embedding_bag(idx: torch.Tensor, table: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    # FLOPs: batch*pooling*dim adds. Bytes: read batch*pooling*(dim*e + 8) + batch*8, write batch*dim*e.
    return F.embedding_bag(idx, table, offsets, mode="sum")


def index_add_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    g = _seed(device)
    table = _randn((p["rows"], p["dim"]), device, dtype, g)
    idx = torch.randint(0, p["rows"], (p["num_indices"],), device=device, generator=g)
    rows = _randn((p["num_indices"], p["dim"]), device, dtype, g)
    return table, idx, rows


def index_add(table: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    # The sparse row update of an embedding table (and MoE's combine): read idx and rows, read-modify-write
    # num_indices*dim elements of the table.
    return table.index_add_(0, idx, rows, alpha=-0.01)


# ------------------------------------------------------------------------------------ reduction, copy


def reduce_sum(x: torch.Tensor) -> torch.Tensor:
    # FLOPs: n. Bytes: read n*e, write rows*e.
    return x.sum(dim=-1)


def copy_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    num = max(1, int(p["bytes"]) // torch.empty((), dtype=dtype).element_size())
    src = _randn((num,), device, dtype, _seed(device))
    return torch.empty_like(src), src


def copy(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    # FLOPs: 0. Bytes: read n*e, write n*e.
    return dst.copy_(src)


def clone(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    # FLOPs: 0. Bytes: read n*e, write n*e (plus an allocation, usually cached).
    return src.clone()


# ------------------------------------------------------------------------------------------- optimizer


def adamw_inputs(p: dict, *, device: Any, dtype: torch.dtype) -> tuple:
    g = _seed(device)
    shapes = [(p["numel"] // p["num_tensors"],)] * p["num_tensors"]
    params = [_randn(s, device, dtype, g) for s in shapes]
    grads = [_randn(s, device, dtype, g) for s in shapes]
    exp_avg = [0.1 * _randn(s, device, dtype, g) for s in shapes]
    exp_avg_sq = [_randn(s, device, dtype, g).abs() + 1e-3 for s in shapes]
    steps = [torch.full((), 10.0, device=device) for _ in shapes]
    return params, grads, exp_avg, exp_avg_sq, steps


def adamw(params: list, grads: list, exp_avg: list, exp_avg_sq: list, steps: list, lr: float = 1e-4) -> None:
    # The fused AdamW kernel torch.optim.AdamW(fused=True) runs (what the workloads' training steps use).
    # FLOPs: ~12 per element. Bytes: read 4*n*e (param, grad, m, v), write 3*n*e (param, m, v).
    torch._fused_adamw_(params, grads, exp_avg, exp_avg_sq, [], steps, lr=lr, beta1=0.9, beta2=0.999,
                        weight_decay=0.01, eps=1e-8, amsgrad=False, maximize=False)


# -------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class Reference:
    """One microbenchmark: its kernel family, input generator and torch implementation."""

    family: str
    make_inputs: Callable[..., tuple]
    fn: Callable[..., Any]
    takes_attention: bool = False


REFERENCES: dict[str, Reference] = {
    "gemm": Reference("gemm", gemm_inputs, gemm),
    "bmm": Reference("gemm", gemm_inputs, gemm),
    "scaled_mm": Reference("gemm", scaled_mm_inputs, scaled_mm),
    "attention_prefill": Reference("attention", attention_inputs, attention, takes_attention=True),
    "attention_decode": Reference("attention", attention_inputs, attention, takes_attention=True),
    "attention_backward": Reference("attention", attention_backward_inputs, attention_backward, takes_attention=True),
    "add": Reference("elementwise", binary_inputs, add),
    "mul": Reference("elementwise", binary_inputs, mul),
    "silu": Reference("elementwise", unary_inputs, silu),
    "gelu": Reference("elementwise", unary_inputs, gelu),
    "rms_norm": Reference("norm", norm_inputs, rms_norm),
    "layer_norm": Reference("norm", norm_inputs, layer_norm),
    "softmax": Reference("softmax", unary_inputs, softmax),
    "cross_entropy": Reference("softmax", cross_entropy_inputs, cross_entropy),
    "embedding": Reference("embedding", embedding_inputs, embedding),
    "embedding_bag": Reference("embedding", embedding_bag_inputs, embedding_bag),
    "index_add": Reference("scatter", index_add_inputs, index_add),
    "sum": Reference("reduction", unary_inputs, reduce_sum),
    "copy": Reference("copy", copy_inputs, copy),
    "clone": Reference("copy", copy_inputs, clone),
    "adamw": Reference("optimizer", adamw_inputs, adamw),
}


def reference(name: str) -> Reference:
    """The reference benchmark called `name` (KeyError with the known names otherwise)."""
    if name not in REFERENCES:
        raise KeyError(f"unknown reference '{name}'; known: {', '.join(sorted(REFERENCES))}")
    return REFERENCES[name]
