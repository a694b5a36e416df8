"""Operators the workloads call where the traced program must match what GPUs execute.

`attention` is one fused call (FlashAttention-style) per layer and direction. Run for real it is
`F.scaled_dot_product_attention`; while tracing (see `tracing()`), it is the custom op `emulator::attention`
with its backward `emulator::attention_backward`, so the trace holds one attention kernel per layer instead
of the decomposed fp32 math path with a materialised S x S mask.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

_state = threading.local()


def is_tracing() -> bool:
    """True while the tracer runs a program on meta tensors."""
    return getattr(_state, "tracing", False)


@contextlib.contextmanager
def tracing() -> Iterator[None]:
    """Make `attention` (and other fused ops) dispatch to their traceable custom ops."""
    before = is_tracing()
    _state.tracing = True
    try:
        yield
    finally:
        _state.tracing = before


def _expand_kv(q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
    # GQA/MQA: each group of q heads shares one kv head.
    group = q.shape[1] // kv.shape[1]
    return kv if group == 1 else kv.repeat_interleave(group, dim=1)


# torch >= 2.5 runs grouped-query attention without materialising the expanded K/V (what GPU kernels do).
_SDPA_GQA = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float,
          window: int = 0) -> torch.Tensor:
    extra: dict[str, Any] = {}
    if _SDPA_GQA and q.shape[1] != k.shape[1]:
        extra = {"enable_gqa": True}
    else:
        k, v = _expand_kv(q, k), _expand_kv(q, v)
    if causal and (q.shape[2] != k.shape[2] or window):
        # Queries are the last Sq positions of a Skv-long sequence (prefill with a cache): bottom-right mask; a
        # sliding window also hides the keys `window` or more positions back.
        sq, skv = q.shape[2], k.shape[2]
        mask = torch.ones(sq, skv, dtype=torch.bool, device=q.device).tril(diagonal=skv - sq)
        if window:
            mask &= torch.ones_like(mask).triu(diagonal=skv - sq - window + 1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, **extra)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, **extra)


@torch.library.custom_op("emulator::attention", mutates_args=())
def _attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float,
                  window: int) -> torch.Tensor:
    return _sdpa(q, k, v, causal, scale, window)


@_attention_op.register_fake
def _(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float, window: int) -> torch.Tensor:
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


@torch.library.custom_op("emulator::attention_backward", mutates_args=())
def _attention_backward_op(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    causal: bool,
    scale: float,
    window: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        qq, kk, vv = (t.detach().requires_grad_(True) for t in (q, k, v))
        o = _sdpa(qq, kk, vv, causal, scale, window)
        dq, dk, dv = torch.autograd.grad(o, (qq, kk, vv), grad_out)
    return dq, dk, dv


@_attention_backward_op.register_fake
def _(grad_out, q, k, v, out, causal, scale, window):  # type: ignore[no-untyped-def]
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup(ctx, inputs, output):  # type: ignore[no-untyped-def]
    q, k, v, causal, scale, window = inputs
    ctx.save_for_backward(q, k, v, output)
    ctx.causal, ctx.scale, ctx.window = causal, scale, window


def _backward(ctx, grad_out):  # type: ignore[no-untyped-def]
    q, k, v, out = ctx.saved_tensors
    dq, dk, dv = _attention_backward_op(grad_out, q, k, v, out, ctx.causal, ctx.scale, ctx.window)
    return dq, dk, dv, None, None, None


_attention_op.register_autograd(_backward, setup_context=_setup)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, scale: float | None = None, window: int = 0
) -> torch.Tensor:
    """Fused scaled-dot-product attention.

    q: [B, Hq, Sq, Dqk]; k: [B, Hkv, Skv, Dqk]; v: [B, Hkv, Skv, Dv]; Hq % Hkv == 0 -> [B, Hq, Sq, Dv].
    With `causal` and Sq < Skv the queries are the last Sq positions (bottom-right aligned mask); `window` > 0
    (causal only) lets each query see only its `window` latest keys, itself included (sliding-window attention).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    window = window if causal else 0
    if is_tracing():
        return _attention_op(q, k, v, causal, scale, window)
    return _sdpa(q, k, v, causal, scale, window)
