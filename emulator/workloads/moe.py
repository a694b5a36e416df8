"""Mixture-of-experts feed-forward (Mixtral, Qwen3-MoE, DeepSeek-V3).

Routing: a router Linear gives per-token scores over E experts (softmax for Mixtral/Qwen, sigmoid plus a selection
bias for DeepSeek-V3), each token picks its top k, and the k weights are renormalised. The T*k (token, expert)
assignments are then permuted so each expert's tokens are contiguous: one gather (`index_select`) of the hidden
states, one GEMM chain per expert on its slice, and one `index_add_` per expert back into the output, weighted by
the routing weights. Shared experts (DeepSeek) run on every token.

Expected-load assumption while tracing: on meta tensors there is no data to route, so when `ops.is_tracing()` is
true (or the input is on meta) the load follows the config's `expert_load`. "uniform" (the default): each token's
experts drawn at random, so the expected number of experts that receive any token is A = E * (1 - (1 - k/E)^T) (all
E for training and prefill batches, fewer for small decode batches); "balanced": A = min(E, T * k), the load a
kernel benchmark sets (AIConfigurator's MoE tables). Either way each active expert receives ceil(T * k / A) tokens
(k: `routed_per_token` where a serving shard's experts receive a fraction of each token's top-k).
The index tensors are built from shapes only (`torch.arange(A * ceil(T*k/A)) % (T*k)`), so the gather, the
per-expert GEMMs and the scatter-add all appear in the trace with the balanced sizes. Real runs route on the data
with the same kernels (and a host sync to read the per-expert counts, as real grouped-GEMM launchers do).
DeepSeek's group-limited routing and routed scaling factor are left out: they change which experts are chosen, not
the work done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from emulator.workloads import ops
from emulator.workloads.config import TransformerConfig
from emulator.workloads.mlp import MLP


def expected_active_experts(tokens: int, top_k: float, num_experts: int, balanced: bool = False) -> int:
    """Experts that receive at least one of `tokens` tokens routed uniformly at random to `top_k` each.

    E * (1 - (1 - k/E)^T): all experts for prefill and training batches, only some for small decode batches
    (8 tokens with top-8 of 256 experts touch about 57), whose weights are then the only ones read. `balanced` (the
    load a kernel benchmark sets): the bound itself, min(E, T * k), every assignment on an expert of its own.
    """
    most = max(1, min(num_experts, math.ceil(tokens * top_k)))
    if balanced:
        return most
    expected = num_experts * (1.0 - (1.0 - min(top_k / num_experts, 1.0)) ** tokens)
    return max(1, min(most, round(expected)))


@dataclass(frozen=True, slots=True)
class Routing:
    """Token-expert assignments grouped by expert: entries [sum(counts[:e]), sum(counts[:e+1])) belong to e."""

    token_index: torch.Tensor  # [N] which token each assignment reads (N = T*k, or E*ceil(T*k/E) balanced)
    weights: torch.Tensor  # [N] routing weight of each assignment
    counts: tuple[int, ...]  # assignments per expert


class MoE(nn.Module):
    """Routed experts (weights stacked as [E, 2F, H] (gate and up) or [E, F, H], and [E, H, F]) plus optional
    shared experts."""

    def __init__(self, c: TransformerConfig, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        e, f, h = c.num_experts, c.moe_ffn_hidden_size, c.hidden_size
        self.num_experts, self.top_k, self.sigmoid = e, c.num_experts_per_token, c.router == "sigmoid"
        self.routed_per_token, self.balanced = c.routed_per_token, c.expert_load == "balanced"
        self.swiglu = c.mlp == "swiglu"
        self.router = nn.Linear(h, e, bias=False, dtype=dtype, device=device)
        if self.sigmoid:  # DeepSeek-V3's e_score_correction_bias: steers selection only, not the weights
            self.register_buffer("score_bias", torch.zeros(e, dtype=torch.float32, device=device))
        # Gated experts keep gate and up as one weight [E, 2F, H] (gate rows first), one GEMM per expert as
        # Megatron-Core's linear_fc1 and the engines' w13 hold them; else the fc weight [E, F, H].
        self.w1 = nn.Parameter(torch.empty(e, 2 * f if self.swiglu else f, h, dtype=dtype, device=device))
        self.w2 = nn.Parameter(torch.empty(e, h, f, dtype=dtype, device=device))  # down
        for w in (self.w1, self.w2):
            if w.device.type != "meta":
                nn.init.normal_(w, std=0.02)
        self.shared = (MLP(c, f * c.num_shared_experts, dtype=dtype, device=device)
                       if c.num_shared_experts else None)

    def route(self, x: torch.Tensor) -> Routing:
        """x: [T, H] -> assignments grouped by expert (balanced while tracing, data-dependent otherwise)."""
        t, k, e = x.shape[0], self.top_k, self.num_experts
        logits = self.router(x).float()  # [T, E]
        if self.sigmoid:
            scores = logits.sigmoid()
            ids = torch.topk(scores + self.score_bias, k, dim=-1).indices  # [T, k]
            weights = scores.gather(1, ids)
        else:
            weights, ids = torch.topk(logits.softmax(dim=-1), k, dim=-1)  # [T, k]
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype).flatten()  # [T*k]
        if ops.is_tracing() or x.is_meta:
            share = self.routed_per_token or k  # a serving rank's experts receive k / ep of each token's k
            assignments = max(1, round(t * share))
            active = expected_active_experts(t, share, e, self.balanced)
            per_expert = math.ceil(assignments / active)
            # Balanced over the active experts; a share above this shard's whole top-k reads its tokens again.
            order = torch.arange(active * per_expert, device=x.device) % assignments % (t * k)
            counts = (per_expert,) * active + (0,) * (e - active)
        else:
            flat = ids.flatten()  # [T*k] expert of each assignment
            order = torch.argsort(flat, stable=True)
            counts = tuple(int(n) for n in torch.bincount(flat, minlength=e).tolist())
        return Routing(token_index=order // k, weights=weights.index_select(0, order), counts=counts)

    def _expert(self, i: int, x: torch.Tensor, w1: tuple[torch.Tensor, ...], w2: tuple[torch.Tensor, ...],
                weight: torch.Tensor) -> torch.Tensor:
        # x: [n, H], weight: [n, 1] -> [n, H]. The routing weight scales the activation before the down projection
        # (a per-row scalar commutes with it), where the engines apply it inside the activation kernel
        # (Megatron-Core's weighted SwiGLU; the serving engines' fused MoE).
        h = F.linear(x, w1[i])
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            return F.linear(F.silu(gate) * up * weight, w2[i])
        return F.linear(F.gelu(h, approximate="tanh") * weight, w2[i])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        tokens = x.reshape(b * s, h)  # [T, H]
        routing = self.route(tokens)
        permuted = tokens.index_select(0, routing.token_index)  # [N, H] grouped by expert
        out = torch.zeros_like(tokens)
        # Views of every expert at once: their gradients come back as one stack. Indexing the stacked weight per
        # expert (w1[i]) would make each expert's backward zero a whole [E, F, H] gradient and add it up.
        w1, w2 = self.w1.unbind(0), self.w2.unbind(0)
        # The same for the experts' rows: split's backward concatenates their input gradients once, where slicing
        # per expert would make each slice's backward write a whole [N, H] zero-padded gradient and add them up.
        experts = [i for i, n in enumerate(routing.counts) if n]
        sizes = [routing.counts[i] for i in experts]
        rows, weights = permuted.split(sizes), routing.weights[:, None].split(sizes)
        for i, x_e, w_e, index in zip(experts, rows, weights, routing.token_index.split(sizes), strict=True):
            out.index_add_(0, index, self._expert(i, x_e, w1, w2, w_e))
        if self.shared is not None:
            out = out + self.shared(tokens)
        return out.view(b, s, h)
