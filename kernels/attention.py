"""Fused attention (FlashAttention-style): one kernel per layer and direction.

For q [B, Hq, Sq, Dqk], k [B, Hkv, Skv, Dqk], v [B, Hkv, Skv, Dv], the score matrix has `pairs` entries
per (batch, head): Sq*Skv without a mask, and with a causal mask whose queries are the last Sq positions
    pairs = Sq*(Skv - Sq) + Sq*(Sq + 1)/2      (row i sees Skv - Sq + i + 1 keys)
Forward model FLOPs:  2*B*Hq*pairs*Dqk (Q K^T) + 2*B*Hq*pairs*Dv (P V)
Backward model FLOPs: twice the forward (dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q); the kernel also
recomputes S = Q K^T: 2*B*Hq*pairs*Dqk more, counted as `recompute_flops` (hardware, not model, FLOPs).
A sliding window of w keys (causal) leaves a query at position p min(p + 1, w) keys.
Vector FLOPs: about 5 per score in forward (scale, max, subtract, exp, sum) and 6 in backward.
Bytes: q, k, v (and o, dO, lse in backward) read once, outputs written once; K/V re-reads across query
tiles hit in cache. Values that are a view into the keys' storage (MLA's absorbed decode: V is the first
kv_lora_rank columns of the latent K) are read with the keys, once (FlashMLA reads the latent cache once).
"""

from __future__ import annotations

from typing import Any

from kernels.cost import Cost
from kernels.registry import register
from kernels.tensors import nbytes, storage_id


def causal_pairs(sq: int, skv: int, causal: bool, window: int = 0) -> float:
    """Query-key pairs a kernel computes per (batch, head); `window` > 0 (causal): each query sees its `window`
    latest keys at most (sliding-window attention)."""
    if not causal:
        return float(sq * skv)
    sq_eff = min(sq, skv)
    if not window:
        return float(sq_eff * (skv - sq_eff) + sq_eff * (sq_eff + 1) / 2)

    def seen(n: int) -> float:  # keys seen by the queries at positions 0 .. n-1 together
        return n * (n + 1) / 2 if n <= window else window * (window + 1) / 2 + (n - window) * window

    return float(seen(skv) - seen(skv - sq_eff))


def attention_flops(q_shape: tuple[int, ...], k_shape: tuple[int, ...], dv: int, causal: bool,
                    window: int = 0) -> float:
    """Forward model FLOPs of fused attention."""
    b, hq, sq, dqk = q_shape
    pairs = causal_pairs(sq, k_shape[2], causal, window)
    return 2.0 * b * hq * pairs * (dqk + dv)


def kv_bytes(k: Any, v: Any) -> float:
    """Bytes of keys and values read: values that are a view into the keys' storage (MLA's absorbed decode reads its
    values as the first columns of the latent keys) are read with them, once."""
    return float(max(nbytes(k), nbytes(v)) if storage_id(k) == storage_id(v) else nbytes(k) + nbytes(v))


def forward_cost(q: Any, k: Any, v: Any, causal: bool, out_bytes: float, window: int = 0) -> Cost:
    """Cost of one fused forward writing `out_bytes` (the output, and the log-sum-exp where kept)."""
    b, hq, sq, _ = q.shape
    pairs = causal_pairs(sq, k.shape[2], causal, window)
    return Cost(
        matrix_flops=attention_flops(tuple(q.shape), tuple(k.shape), v.shape[-1], causal, window),
        vector_flops=5.0 * b * hq * pairs,
        bytes_read=nbytes(q) + kv_bytes(k, v),
        bytes_written=out_bytes,
    )


@register("attention", "emulator.attention")
def _forward(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    q, k, v, causal = args[0], args[1], args[2], bool(args[3])
    window = int(args[5]) if len(args) > 5 else 0
    b, hq, sq, _ = q.shape
    # The output and an fp32 log-sum-exp per row.
    return forward_cost(q, k, v, causal, nbytes(out) + 4.0 * b * hq * sq, window)


@register("attention", "emulator.attention_backward")
def _backward(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    grad_out, q, k, v, o, causal = args[0], args[1], args[2], args[3], args[4], bool(args[5])
    window = int(args[7]) if len(args) > 7 else 0
    b, hq, sq, dqk = q.shape
    pairs = causal_pairs(sq, k.shape[2], causal, window)
    fwd = attention_flops(tuple(q.shape), tuple(k.shape), v.shape[-1], causal, window)
    return Cost(
        matrix_flops=2.0 * fwd,
        recompute_flops=2.0 * b * hq * pairs * dqk,
        vector_flops=6.0 * b * hq * pairs,
        bytes_read=nbytes(grad_out) + nbytes(q) + kv_bytes(k, v) + nbytes(o) + 4.0 * b * hq * sq,
        bytes_written=sum(nbytes(t) for t in out),
    )


@register(
    "attention",
    "aten._scaled_dot_product_flash_attention",
    "aten._scaled_dot_product_efficient_attention",
    "aten._scaled_dot_product_cudnn_attention",
    "aten._scaled_dot_product_flash_attention_for_cpu",
)
def _aten_sdpa(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    # Seen when a program calls a backend kernel directly; the masks of these variants are causal or none.
    q, k, v = args[0], args[1], args[2]
    causal = bool(kwargs.get("is_causal", False))
    o = out[0] if isinstance(out, tuple) else out
    return forward_cost(q, k, v, causal, nbytes(o))
