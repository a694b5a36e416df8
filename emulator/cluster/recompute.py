"""Which forward kernels a selective activation-recompute policy runs again in the backward.

`recompute: selective` means what the stack means by it (`recompute.selective` of its profile):
- `attention_core` (Megatron-Core's `--recompute-granularity selective`, Korthikanti et al. 2022): the attention
  core (scores, softmax, dropout) is recomputed. A fused attention kernel keeps no score matrix and its backward
  already recomputes the scores (they are in the trace), so no forward kernel runs again; unfused attention's
  recomputed scores are traced with the plan (`shard.unfused_attention`).
- a list of Megatron-Core's `recompute_modules` (`--recompute-modules`, core 0.12 and later; `attention_core` is
  its default, `[core_attn]`): each listed submodule's forward runs again before its backward, as Megatron-Core's
  TransformerLayer, MLASelfAttention and MoE experts checkpoint them with Transformer Engine's layer spec
  (megatron/core/models/gpt/gpt_layer_specs.py): `layernorm` the norms that are modules of their own, the
  pre-MLP norm of an MoE layer and the input norm of an MLA layer (elsewhere Transformer Engine's
  LayerNormLinear holds the norm, which the module does not checkpoint); `mla_up_proj` MLA's query and key-value
  up-projections with their norms, RoPE and the query/key concatenation; `moe_act` an MoE layer's grouped-MLP
  activation (the feed-forward's own fused region: the activation, its routing-probability weighting and the
  router's softmax, not the casts); `mlp` a dense layer's whole feed-forward; `moe` an MoE layer's whole
  feed-forward (router, experts, shared experts; its token all-to-all runs again too, `shard.collectives`);
  `shared_experts` an MoE layer's shared experts; `core_attn` nothing more with fused attention, as above.
- `every_other_mm` (torchtitan's per-op SAC, `torchtitan/distributed/activation_checkpoint.py` `SelectiveAC`): in
  each transformer block the outputs of compute-intensive ops (matmuls, attention, the fp8 recipe's amax) and of
  reduce-scatters are saved, except every second 16-bit matmul of the block; everything else reruns. So the
  backward repeats the block's 2nd, 4th, ... 16-bit GEMMs and its non-matrix kernels (norms, activations, RoPE,
  casts, as the stack runs them). Low-precision GEMMs (`torch._scaled_mm` under float8) are always saved: the
  every-other rule counts `aten.mm` and `aten.linear` only.
"""

from __future__ import annotations

from collections.abc import Sequence

from emulator.cluster.host import block_of, moe_layers
from emulator.cluster.plan import Policy
from emulator.cluster.shard import part_of
from emulator.precision import KEEP_DTYPE, LOW_PRECISIONS
from kernels import KernelCall

SAVED_FAMILIES = ("gemm", "attention", "view", "collective")
# MLA's submodules its up-projection checkpoint reruns (the traced names), besides the layer's own copies
MLA_UP = ("wq_b", "wkv_b", "q_norm", "kv_norm", "rotary")

def recomputed_calls(calls: Sequence[KernelCall], policy: Policy, precision: str) -> tuple[bool, ...]:
    """For each call of one micro-batch's compute, whether `policy` runs it again in the backward (calls of the
    transformer layers' forward only; each signature's `count` covers every layer of the stage)."""
    if isinstance(policy, tuple):
        return module_calls(calls, policy)
    if policy != "every_other_mm":
        return (False,) * len(calls)
    low = precision in LOW_PRECISIONS
    out: list[bool] = []
    block, mm = "", 0
    for call in calls:
        layer = call.module.startswith("layers.") and call.phase == "forward"
        if not layer:
            out.append(False)
            continue
        here = ".".join(call.module.split(".", 2)[:2])  # layers.<i>: the traced representative of its kind
        if here != block:
            block, mm = here, 0
        if call.family == "gemm":
            # Under a low precision every GEMM runs in it (`roofline.call_dtype`) but LoRA adapters.
            sixteen_bit = not low or KEEP_DTYPE in call.params
            mm += sixteen_bit
            out.append(sixteen_bit and mm % 2 == 0)
        else:
            out.append(call.family not in SAVED_FAMILIES)
    return tuple(out)


def module_calls(calls: Sequence[KernelCall], modules: tuple[str, ...]) -> tuple[bool, ...]:
    """For each call, whether Megatron-Core's selective recompute of `modules` reruns it (see the docstring)."""
    moe = moe_layers(calls)
    mla = frozenset(block_of(c.module)[0] for c in calls if c.module.endswith(".attention.wkv_b"))
    out: list[bool] = []
    for call in calls:
        layer, block = block_of(call.module)
        if not layer or call.phase != "forward" or call.family in ("view", "collective"):
            out.append(False)
            continue
        sub = call.module[len(layer) + 1:]  # 'feed_forward.shared.w2', 'attention.wq_b'
        routed = layer in moe
        out.append(
            ("layernorm" in modules and (block == "ffn_norm" and routed or block == "attention_norm" and layer in mla))
            or ("mla_up_proj" in modules and layer in mla and (
                sub.split(".")[-1] in MLA_UP and block == "attention" or sub == "attention" and call.family == "copy"))
            or ("moe_act" in modules and routed and sub == "feed_forward" and call.family == "elementwise"
                and not call.op.startswith("cast_"))
            or ("mlp" in modules and not routed and block == "feed_forward")
            or ("moe" in modules and routed and block == "feed_forward")
            or ("shared_experts" in modules and routed and sub.startswith("feed_forward.shared")))
    return tuple(out)


def replayed_calls(calls: Sequence[KernelCall], recompute: str, policy: Policy, precision: str) -> tuple[bool, ...]:
    """For each call, whether a plan's `recompute` reruns it in the backward: every layer's forward under `full`,
    what the stack's `policy` reruns under `selective`, nothing under `none`."""
    if recompute == "full":
        return tuple(c.phase == "forward" and part_of(c) == "layers" for c in calls)
    return recomputed_calls(calls, policy, precision) if recompute == "selective" else (False,) * len(calls)


__all__ = ["SAVED_FAMILIES", "module_calls", "recomputed_calls", "replayed_calls"]
