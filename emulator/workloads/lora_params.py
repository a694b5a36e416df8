"""The closed-form count of LoRA adapter parameters the cluster model uses: r * (in + out) per adapted Linear.

Apart from `adapters.py` (the torch modules it counts; a test checks that the two agree) so that the cluster model
reads it without importing torch.
"""

from __future__ import annotations

from emulator.workloads.config import TransformerConfig
from emulator.workloads.lora import LoraConfig


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


__all__ = ["adapter_params"]
