"""The host's side of a training step: the time to dispatch the ops that no CUDA graph replays.

A framework's host enqueues a stage's kernels ahead of the device; when its Python, framework and launch work per
op outlasts the kernels (small experts, a small micro-batch), the device waits on it. Megatron-Core's MoE layers
also synchronise with the host once per layer (the alltoall dispatcher reads the tokens per expert back before it
sizes the exchange), so the host cannot run more than a layer ahead. A pass (forward or backward) of a stage takes

    max(kernels' time, ops outside CUDA graphs x `host.op_dispatch_s` (x `host.backward_dispatch_ratio` backward))

over the pass: for a stage of alike layers, the per-layer bound a sync each layer sets (and for layers without
syncs the host's total). The ops are counted in the traced program as the stack runs it (after its fusions), views
included: each is a Python-level call the host makes. CUDA graphs remove their ops' host work
(`host.graph_scopes`, Megatron-Core's `cuda_graph_scope`): `attn` the attention block with its norm and residual,
`moe_router` an MoE layer's norm and router, `moe` an MoE layer's whole feed-forward, `mlp` a dense layer's,
`layer` every layer (its per-layer graphs), `full_iteration` the whole step. `moe_preprocess` (the dispatcher's
token counts, captured beside the router) has no ops of its own in the traced program, whose routing computes
them: naming it removes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from emulator.stacks import StackProfile
from kernels import KernelCall


@dataclass(frozen=True, slots=True)
class HostDispatch:
    """What the host spends per op outside CUDA graphs, and which parts graphs capture (`host.*` of a stack)."""

    op_s: float = 0.0  # per forward op; 0: the host keeps ahead of the device whatever the step
    backward_ratio: float = 1.0
    scopes: tuple[str, ...] = ()

    @classmethod
    def of(cls, stack: StackProfile | None) -> HostDispatch:
        """The stack's items (a serving profile cannot set them: its schema defaults, no host floor)."""
        if stack is None:
            return cls()
        return cls(op_s=float(stack.get("host.op_dispatch_s")),
                   backward_ratio=float(stack.get("host.backward_dispatch_ratio")),
                   scopes=tuple(stack.get("host.graph_scopes")))


def block_of(module: str) -> tuple[str, str]:
    """(layer, block) of a module inside a layer ('layers.3', 'feed_forward'); ('', '') outside the layers."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "layers":
        return "", ""
    return ".".join(parts[:2]), parts[2] if len(parts) > 2 else ""


def captured(module: str, scopes: tuple[str, ...], moe_layer: bool) -> bool:
    """Whether a CUDA graph of `scopes` replays an op of `module` (see the module docstring)."""
    if "full_iteration" in scopes:
        return True
    layer, block = block_of(module)
    if not layer:
        return False
    if "layer" in scopes:
        return True
    if block in ("", "attention", "attention_norm"):  # the layer's own ops are its residual adds, in the attn graph
        return "attn" in scopes
    if moe_layer:
        router = block == "ffn_norm" or module.startswith(f"{layer}.feed_forward.router")
        return "moe" in scopes or (router and "moe_router" in scopes)
    return "mlp" in scopes


def moe_layers(calls: Iterable[KernelCall]) -> frozenset[str]:
    """The layers of a stage whose feed-forward is a routed MoE block (it has a router)."""
    return frozenset(block_of(c.module)[0] for c in calls if ".feed_forward.router" in c.module)


def call_host_s(call: KernelCall, host: HostDispatch, moe: frozenset[str]) -> float:
    """Host seconds of one micro-batch's `call.count` ops of a traced call: 0 inside a CUDA graph and for the
    optimizer (one fused kernel a step)."""
    if host.op_s <= 0.0 or call.phase == "optimizer" or captured(call.module, host.scopes,
                                                                   block_of(call.module)[0] in moe):
        return 0.0
    return call.count * host.op_s * (host.backward_ratio if call.phase == "backward" else 1.0)
