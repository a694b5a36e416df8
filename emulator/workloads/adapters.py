"""LoRA adapters as torch modules (`lora.py` holds their configuration and target names, `lora_params.py` the
closed-form count of their parameters the cluster model uses: a test checks it against these modules).

`apply_lora` freezes every weight of a module and replaces each targeted `nn.Linear` by a `LoraLinear` holding the
same frozen weight plus two trained adapter Linears. Traced on meta tensors, a training step of such a module
has, per adapted Linear, the base GEMM forward and its activation gradient, no base weight gradient, and the
adapters' GEMMs forward and backward; the optimizer step covers the adapters only (what requires a gradient).
"""

from __future__ import annotations

import torch
from torch import nn

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


__all__ = ["AdapterLinear", "LoraLinear", "apply_lora"]
