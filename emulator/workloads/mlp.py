"""Linear layers and the dense feed-forward block, shared by dense layers and MoE experts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emulator.workloads.config import TransformerConfig


def linear(i: int, o: int, bias: bool, dtype: torch.dtype, device: torch.device | str) -> nn.Linear:
    return nn.Linear(i, o, bias=bias, dtype=dtype, device=device)


class MLP(nn.Module):
    """SwiGLU (w2(silu(w1 x) * w3 x)) or GELU (w2(gelu(w1 x))) feed-forward."""

    def __init__(self, c: TransformerConfig, ffn: int, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.swiglu = c.mlp == "swiglu"
        self.w1 = linear(c.hidden_size, ffn, c.mlp_bias, dtype, device)
        self.w3 = linear(c.hidden_size, ffn, c.mlp_bias, dtype, device) if self.swiglu else None
        self.w2 = linear(ffn, c.hidden_size, c.mlp_bias, dtype, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w3 is not None:
            return self.w2(F.silu(self.w1(x)) * self.w3(x))
        return self.w2(F.gelu(self.w1(x), approximate="tanh"))
