"""Which forward kernels a selective activation-recompute policy runs again in the backward.

`recompute: selective` means what the stack means by it (`recompute.selective` of its profile):
- `attention_core` (Megatron-Core's `--recompute-granularity selective`, Korthikanti et al. 2022): the attention
  core (scores, softmax, dropout) is recomputed. A fused attention kernel keeps no score matrix and its backward
  already recomputes the scores (they are in the trace), so no forward kernel runs again; unfused attention's
  recomputed scores are traced with the plan (`shard.unfused_attention`).
- `every_other_mm` (torchtitan's per-op SAC, `torchtitan/distributed/activation_checkpoint.py` `SelectiveAC`): in
  each transformer block the outputs of compute-intensive ops (matmuls, attention, the fp8 recipe's amax) and of
  reduce-scatters are saved, except every second 16-bit matmul of the block; everything else reruns. So the
  backward repeats the block's 2nd, 4th, ... 16-bit GEMMs and its non-matrix kernels (norms, activations, RoPE,
  casts, as the stack runs them). Low-precision GEMMs (`torch._scaled_mm` under float8) are always saved: the
  every-other rule counts `aten.mm` and `aten.linear` only.
"""

from __future__ import annotations

from collections.abc import Sequence

from emulator.cluster.shard import part_of
from emulator.precision import KEEP_DTYPE, LOW_PRECISIONS
from kernels import KernelCall

SAVED_FAMILIES = ("gemm", "attention", "view", "collective")


def recomputed_calls(calls: Sequence[KernelCall], policy: str, precision: str) -> tuple[bool, ...]:
    """For each call of one micro-batch's compute, whether `policy` runs it again in the backward (calls of the
    transformer layers' forward only; each signature's `count` covers every layer of the stage)."""
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


def replayed_calls(calls: Sequence[KernelCall], recompute: str, policy: str, precision: str) -> tuple[bool, ...]:
    """For each call, whether a plan's `recompute` reruns it in the backward: every layer's forward under `full`,
    what the stack's `policy` reruns under `selective`, nothing under `none`."""
    if recompute == "full":
        return tuple(c.phase == "forward" and part_of(c) == "layers" for c in calls)
    return recomputed_calls(calls, policy, precision) if recompute == "selective" else (False,) * len(calls)


__all__ = ["SAVED_FAMILIES", "recomputed_calls", "replayed_calls"]
