"""LoRA: low-rank adapters trained on a frozen base model (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large
Language Models"). This module is the configuration (no torch, so that model configs stay importable without it);
`adapters.py` holds the torch modules and `lora_params.py` the closed-form count of their parameters.

An adapter on a Linear(in -> out) adds y += (alpha / r) * B(A(x)) with A: in x r and B: r x out, both trained; the
base weight W is frozen. Training then runs, per adapted Linear, the base GEMM forward and its activation
gradient (dgrad) but no weight gradient (wgrad), plus the adapters' small GEMMs in all three passes. Every base
weight is frozen (norms, embeddings, the head and routed experts included), so the optimizer, its states, the fp32
master weights and the data-parallel gradient reduction cover the adapters alone.

Targets (Megatron-Core's module names, as NeMo's and Megatron-Bridge's `target_modules` spell them):
    qkv    the attention input projections: wq, wk, wv (Megatron's fused linear_qkv); under multi-head latent
           attention the q and kv down- and up-projections (wq or wq_a and wq_b, wkv_a, wkv_b)
    proj   the attention output projection wo (linear_proj)
    fc1    the first MLP linear of dense layers and shared experts: w1 and, gated, w3 (linear_fc1: gate and up)
    fc2    the second MLP linear w2 of dense layers and shared experts (linear_fc2)
Routed experts and the router get no adapters. Our modules keep q, k, v (and gate, up) as separate Linears, so
`qkv` adds three adapters and gated `fc1` two, each with its own A. A stack that fuses those Linears
(`fusion.gemm_groups`: Megatron-Core's linear_qkv and linear_fc1, which NeMo adapts with one adapter each) runs
them as one adapter with one A (`engine.gemm_groups`; `lora_params.adapter_params(grouped=True)` counts it).
Adapters stay 16-bit under an fp8 recipe (`precision.KEEP_DTYPE`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from emulator.errors import EmulatorError, nearest

TARGETS = ("qkv", "proj", "fc1", "fc2")
# Module attributes each target adapts (`adapters.apply_lora` replaces the nn.Linear ones it finds).
TARGET_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "qkv": ("wq", "wk", "wv", "wq_a", "wq_b", "wkv_a", "wkv_b"),
    "proj": ("wo",),
    "fc1": ("w1", "w3"),
    "fc2": ("w2",),
}
DEFAULT_RANK = 16
DEFAULT_ALPHA = 32.0
MAX_RANK = 65536  # wider than any model's hidden size: a larger rank is a typo, not an adapter


@dataclass(frozen=True, slots=True, kw_only=True)
class LoraConfig:
    """Adapters of rank `rank` on the `targets` Linears, scaled by alpha / rank (the scale changes no cost)."""

    rank: int = DEFAULT_RANK
    alpha: float = DEFAULT_ALPHA
    targets: tuple[str, ...] = TARGETS

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or not 0 < self.rank <= MAX_RANK:
            raise EmulatorError(f"is {self.rank!r}; it must be a whole number from 1 to {MAX_RANK}. Fix: use e.g. "
                                f"rank: {DEFAULT_RANK}.", field="lora.rank")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise EmulatorError(f"is {self.alpha!r}; it must be a number > 0. Fix: use e.g. alpha: "
                                f"{DEFAULT_ALPHA:g}.", field="lora.alpha")
        check_targets(self.targets)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def as_dict(self) -> dict[str, object]:
        return {"rank": self.rank, "alpha": self.alpha, "targets": list(self.targets)}


def check_targets(targets: Iterable[object]) -> None:
    """An EmulatorError unless `targets` lists known target names, each once, at least one."""
    seen: list[str] = []
    for t in targets:
        if not isinstance(t, str) or t not in TARGETS:
            raise EmulatorError(f"'{t}' is not a LoRA target; {nearest(str(t), TARGETS)} Fix: list some of "
                                f"{', '.join(TARGETS)}.", field="lora.targets")
        if t in seen:
            raise EmulatorError(f"lists '{t}' twice. Fix: name each target once.", field="lora.targets")
        seen.append(t)
    if not seen:
        raise EmulatorError(f"is empty, so nothing would be trained. Fix: list some of {', '.join(TARGETS)}.",
                            field="lora.targets")


__all__ = ["DEFAULT_ALPHA", "DEFAULT_RANK", "TARGETS", "TARGET_ATTRIBUTES", "LoraConfig", "check_targets"]
