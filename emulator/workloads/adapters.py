"""LoRA adapters as torch modules (`lora.py` holds their configuration and target names), and the closed-form
count of their parameters the cluster model uses (a test checks it against these modules).

`apply_lora` freezes every weight of a module and replaces each targeted `nn.Linear` by a `LoraLinear` holding the
same frozen weight plus two trained adapter Linears. Traced on meta tensors, a training step of such a module
has, per adapted Linear, the base GEMM forward and its activation gradient, no base weight gradient, and the
adapters' GEMMs forward and backward; the optimizer step covers the adapters only (what requires a gradient).
"""

from __future__ import annotations

import torch
from torch import nn

from emulator.workloads.config import TransformerConfig
from emulator.workloads.lora import TARGET_ATTRIBUTES, LoraConfig


class AdapterLinear(nn.Linear):
    """A LoRA adapter's Linear (A or B): low-precision recipes leave its GEMMs in 16-bit (`precision.KEEP_DTYPE`)."""

    keeps_dtype = True


class LoraLinear(nn.Linear):
    """A frozen Linear plus a trained low-rank update: y = x W^T (+ b) + (alpha / r) * B(A(x)).

    x: [..., in]; A = lora_a: Linear(in -> r), B = lora_b: Linear(r -> out), no biases. W and b are the replaced
    Linear's own tensors.
    """

    def __init__(self, base: nn.Linear, lora: LoraConfig) -> None:
        w = base.weight
        # Built on meta (no memory), then given the base's own weight and bias.
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None, dtype=w.dtype,
                         device="meta")
        self.weight = base.weight
        self.bias = base.bias
        self.requires_grad_(False)
        self.lora_a = AdapterLinear(base.in_features, lora.rank, bias=False, dtype=w.dtype, device=w.device)
        self.lora_b = AdapterLinear(lora.rank, base.out_features, bias=False, dtype=w.dtype, device=w.device)
        self.scale = lora.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.lora_b(self.lora_a(x)) * self.scale


def apply_lora(module: nn.Module, lora: LoraConfig) -> nn.Module:
    """Freeze every weight of `module` and put adapters on the Linears its targets name (in place; returned)."""
    module.requires_grad_(False)
    names = {a for t in lora.targets for a in TARGET_ATTRIBUTES[t]}
    for owner in list(module.modules()):
        for name in names:
            child = getattr(owner, name, None)
            # Exactly nn.Linear: routed experts' stacked weights are Parameters and stay frozen without adapters.
            if type(child) is nn.Linear:
                setattr(owner, name, LoraLinear(child, lora))
    return module


def _attention_linears(c: TransformerConfig) -> dict[str, list[tuple[int, int]]]:
    """(in, out) of each attention Linear a target adapts."""
    h, nh = c.hidden_size, c.num_heads
    if c.attention == "mla":
        q = ([(h, c.q_lora_rank), (c.q_lora_rank, nh * c.qk_head_dim)] if c.q_lora_rank
             else [(h, nh * c.qk_head_dim)])
        kv = [(h, c.kv_lora_rank + c.qk_rope_head_dim), (c.kv_lora_rank, nh * (c.qk_nope_head_dim + c.v_head_dim))]
        return {"qkv": q + kv, "proj": [(nh * c.v_head_dim, h)]}
    d, kv_width = c.head_dim, c.num_kv_heads * c.head_dim
    return {"qkv": [(h, nh * d), (h, kv_width), (h, kv_width)], "proj": [(nh * d, h)]}


def _mlp_linears(c: TransformerConfig, ffn: int) -> dict[str, list[tuple[int, int]]]:
    """(in, out) of each Linear of a dense MLP (or the shared experts) of width `ffn`."""
    gated = 2 if c.mlp == "swiglu" else 1
    return {"fc1": [(c.hidden_size, ffn)] * gated, "fc2": [(ffn, c.hidden_size)]}


def adapter_params(c: TransformerConfig, lora: LoraConfig, *, grouped: bool = False) -> int:
    """Trainable parameters of the adapters on all of `c`'s layers: r * (in + out) per adapted Linear. `grouped`
    (a stack's `fusion.gemm_groups`, `engine.gemm_groups`): q, k and v (gate and up) are one Linear with one
    adapter, r * (in + the summed out)."""
    attention = _attention_linears(c)
    shared = c.moe_ffn_hidden_size * c.num_shared_experts

    def joined(linears: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(linears[0][0], sum(o for _, o in linears))] if linears else []

    def per_layer(linears: dict[str, list[tuple[int, int]]]) -> int:
        if grouped:  # the groups of `engine.gemm_groups`: q, k, v of GQA attention (MLA's stay apart), gate and up
            linears = {t: (joined(ls) if t == "fc1" or (t == "qkv" and c.attention != "mla") else ls)
                       for t, ls in linears.items()}
        return sum(lora.rank * (i + o) for t in lora.targets for i, o in linears.get(t, []))

    dense = per_layer({**attention, **_mlp_linears(c, c.ffn_hidden_size)})
    moe = per_layer({**attention, **(_mlp_linears(c, shared) if shared else {})})
    return (c.num_layers - c.num_moe_layers) * dense + c.num_moe_layers * moe


__all__ = ["AdapterLinear", "LoraLinear", "adapter_params", "apply_lora"]
