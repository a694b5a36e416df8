"""Sibling Linears that read one input run as one GEMM over their summed width (`fusion.gemm_groups`).

Megatron-Core's linear_qkv (q, k, v) and linear_fc1 (gate and up of a gated MLP), vLLM's QKVParallelLinear and
MergedColumnParallelLinear and TensorRT-LLM's fused QKV and gated-MLP weights hold one weight [sum of N_i, K]
where our modules keep wq, wk, wv (w1, w3) apart. Per group of n members of widths N_i reading x [M, K]:

    forward  y = x W^T        n GEMMs [M, K] x [K, N_i]   -> one [M, K] x [K, sum N]    x read once
    dgrad    dx = dy W        n GEMMs [M, N_i] x [N_i, K] -> one [M, sum N] x [sum N, K]  dx written once, and the
                              n - 1 adds that summed the members' input gradients are gone
    wgrad    dW = dy^T x      n GEMMs [N_i, M] x [M, K]   -> one [sum N, M] x [M, K]    x read once

The FLOPs are unchanged; the launches, the repeated reads of x and the adds go. A LoRA adapter on the fused module
is one adapter (NeMo: "our LoRA implementation learns a single Low-Rank projection for KQV in a combined fashion",
docs/source/nlp/nemo_megatron/peft/supported_methods.rst): one A [r, K] reading x and one B [sum N, r], where our
modules hold an A and a B per member. So the members' A GEMMs (forward, dgrad, wgrad; each [M, K] x [K, r] or its
gradients) become one of them, their B GEMMs one over the summed width, and the adds of their input gradients go
as the base's do.

GEMM calls are found by module path and shape: a member's forward [M, K] x [K, N_i], its dgrad [M, N_i] x [N_i, K]
and wgrad [N_i, M] x [M, K] in the backward (the tracer labels backward kernels with the module whose forward made
them, `engine.trace`). The adds are found in the data flow (`Trace.flows`): an elementwise op in the group's
backward that reads only the group's GEMM outputs (or earlier such sums) and writes one tensor of x's size. Their
flows are dropped with the calls, so that a stack's fusion pass (`engine.stack.fuse`, run after this) sees the
program as the stack runs it; the merged GEMMs keep the members' flows (GEMMs are never fused, and the tensors they
read and write are the same bytes).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from emulator.engine.calls import Flow, Trace
from emulator.precision import dtype_bytes
from kernels import Cost, KernelCall

# Member names of each group (`workloads.transformer.Attention`, `workloads.mlp.MLP`) and the LoRA adapters'
# (`workloads.adapters.LoraLinear`).
GEMM_GROUPS = (("wq", "wk", "wv"), ("w1", "w3"))
ADAPTER_A, ADAPTER_B = "lora_a", "lora_b"

Shapes = tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class _Group:
    """One traced execution signature of a group: the members' forward GEMMs on x [m, k], `count` times a step."""

    parent: str
    names: tuple[str, ...]
    m: int
    k: int
    widths: tuple[int, ...]
    count: int
    element_bytes: float  # bytes per element

    def module(self, name: str, adapter: str = "") -> str:
        return f"{self.parent}.{name}" + (f".{adapter}" if adapter else "")

    @property
    def merged(self) -> str:
        return f"{self.parent}.{'+'.join(self.names)}"


@dataclass(frozen=True, slots=True)
class _Kind:
    """One GEMM of each member that the group runs as one: where it is, its shapes for a member of width n (and
    for the merged width when `one` is False), and what the merged call no longer moves."""

    phase: str
    adapter: str  # "" for the base Linear, else the adapter's child name
    shapes: Callable[[int], Shapes]  # of a member's call from its output width (the group's width when merged)
    shared_read: float  # elements the merged call reads once instead of once per member
    shared_write: float  # elements it writes once instead of once per member
    one: bool = False  # the members' calls are one call (LoRA A: one adapter of rank r reads x)
    input_gradient: bool = False  # writes a gradient of x: the adds that summed the members' ones go


def _kinds(m: int, k: int, r: int | None) -> list[_Kind]:
    """The GEMMs a group of Linears on x [m, k] merges, with LoRA adapters of rank r when `r` is set."""
    base = [
        _Kind("forward", "", lambda n: ((m, k), (k, n)), m * k, 0.0),
        _Kind("backward", "", lambda n: ((m, n), (n, k)), 0.0, m * k, input_gradient=True),  # dgrad
        _Kind("backward", "", lambda n: ((n, m), (m, k)), m * k, 0.0),  # wgrad
    ]
    if r is None:
        return base
    return base + [
        _Kind("forward", ADAPTER_A, lambda n: ((m, k), (k, r)), 0.0, 0.0, one=True),  # x A^T
        _Kind("backward", ADAPTER_A, lambda n: ((m, r), (r, k)), 0.0, 0.0, one=True, input_gradient=True),  # dgrad
        _Kind("backward", ADAPTER_A, lambda n: ((r, m), (m, k)), 0.0, 0.0, one=True),  # wgrad
        _Kind("forward", ADAPTER_B, lambda n: ((m, r), (r, n)), m * r, 0.0),  # one A output read once
        _Kind("backward", ADAPTER_B, lambda n: ((m, n), (n, r)), 0.0, m * r),  # one gradient of A's output
        _Kind("backward", ADAPTER_B, lambda n: ((n, m), (m, r)), m * r, 0.0),
    ]


_GROUPED: dict[int, tuple[Trace, Trace]] = {}


def group_gemms(trace: Trace) -> Trace:
    """The trace with each group of sibling Linears (`GEMM_GROUPS`) run as one GEMM per pass, forward and backward,
    and their LoRA adapters as one adapter (see module doc). The same object for the same trace, so that caches
    keyed by trace (`engine.stack.fuse`) stay warm."""
    hit = _GROUPED.get(id(trace))
    if hit is not None and hit[0] is trace:
        return hit[1]
    out = _group_gemms(trace)
    if len(_GROUPED) > 1024:
        _GROUPED.clear()
    _GROUPED[id(trace)] = (trace, out)
    return out


def _gemm(c: KernelCall) -> bool:
    return c.family == "gemm" and ((c.op == "aten.mm" and len(c.shapes) == 2)
                                   or (c.op == "aten.addmm" and len(c.shapes) == 3))


def _operands(c: KernelCall) -> Shapes:
    """A GEMM's two matrix shapes (an addmm's bias left out)."""
    return c.shapes[-2:]


def _groups(trace: Trace) -> list[_Group]:
    """Every group whose members all ran a forward GEMM on the same input shape the same number of times."""
    members = {name: names for names in GEMM_GROUPS for name in names}
    forward: dict[tuple[str, str], list[KernelCall]] = {}
    for c in trace.calls:
        parent, _, name = c.module.rpartition(".")
        if _gemm(c) and c.phase == "forward" and name in members:
            forward.setdefault((parent, name), []).append(c)
    out = []
    for (parent, name), calls in forward.items():
        names = members[name]
        if name != names[0]:
            continue
        for c0 in calls:
            (m, k), count = _operands(c0)[0], c0.count
            siblings = [next((c for c in forward.get((parent, other), []) if _operands(c)[0] == (m, k)
                              and c.count == count), None) for other in names]
            if all(s is not None for s in siblings):
                widths = tuple(_operands(s)[1][1] for s in siblings if s is not None)
                out.append(_Group(parent, names, m, k, widths, count, dtype_bytes(c0.dtype)))
    return out


def _rank(trace: Trace, g: _Group) -> int | None:
    """The LoRA rank of the group's adapters (None without adapters on every member)."""
    ranks = set()
    for name in g.names:
        found = [_operands(c)[1][1] for c in trace.calls if _gemm(c) and c.phase == "forward"
                 and c.module == g.module(name, ADAPTER_A) and _operands(c)[0] == (g.m, g.k)]
        if not found:
            return None
        ranks.update(found)
    return ranks.pop() if len(ranks) == 1 else None


def _group_gemms(trace: Trace) -> Trace:
    calls = list(trace.calls)
    index: dict[tuple[str, str, Shapes], list[int]] = {}
    for i, c in enumerate(calls):
        if _gemm(c):
            index.setdefault((c.module, c.phase, _operands(c)), []).append(i)
    counts = [c.count for c in calls]
    merged: dict[int, list[KernelCall]] = {}  # at the place of the first member's call, so program order holds
    gradients: list[tuple[_Group, int]] = []  # (group, input gradients no longer summed per execution)
    for g in _groups(trace):
        fewer = 0
        for kind in _kinds(g.m, g.k, _rank(trace, g)):
            picks = _take(calls, index, counts, g, kind)
            if picks is None:
                continue  # a member lacks it (a frozen base has no wgrad): left as traced
            merged.setdefault(picks[0], []).append(_merged([dataclasses.replace(calls[i], count=g.count)
                                                             for i in picks], g, kind))
            fewer += (len(g.names) - 1) if kind.input_gradient else 0
        if fewer:
            gradients.append((g, fewer))
    if not merged:
        return trace
    flows = list(trace.flows)
    for g, fewer in gradients:
        _drop_sums(calls, counts, flows, g, fewer)
    out: list[KernelCall] = []
    for i, (c, n) in enumerate(zip(calls, counts, strict=True)):
        out += merged.get(i, [])
        if n > 0:
            out.append(dataclasses.replace(c, count=n) if n != c.count else c)
    return dataclasses.replace(trace, calls=tuple(out), flows=tuple(flows))


def _take(calls: list[KernelCall], index: dict[tuple[str, str, Shapes], list[int]], counts: list[int], g: _Group,
          kind: _Kind) -> list[int] | None:
    """The index of each member's call of `kind` (their counts lowered by the group's), or None when one is
    missing or they differ in op (a bias on some members only)."""
    picks = []
    for name, width in zip(g.names, g.widths, strict=True):
        key = (g.module(name, kind.adapter), kind.phase, kind.shapes(width))
        # A dgrad and a wgrad of equal shapes (M = N_i) share a signature: the call counts both.
        i = next((i for i in index.get(key, []) if counts[i] >= g.count), None)
        if i is None:
            return None
        picks.append(i)
    if len({calls[i].op for i in picks}) != 1:
        return None
    for i in picks:
        counts[i] -= g.count
    return picks


def _merged(calls: list[KernelCall], g: _Group, kind: _Kind) -> KernelCall:
    """One call for the members' `calls`: their cost less what is now read or written once."""
    c0 = calls[0]
    module = g.merged + (f".{kind.adapter}" if kind.adapter else "")
    if kind.one:
        return dataclasses.replace(c0, module=module)
    n, w = len(calls), g.element_bytes
    cost = Cost()
    for c in calls:
        cost = cost + c.cost
    cost = dataclasses.replace(cost, bytes_read=cost.bytes_read - (n - 1) * kind.shared_read * w,
                               bytes_written=cost.bytes_written - (n - 1) * kind.shared_write * w)
    width = sum(g.widths)
    bias = ((width,),) if c0.op == "aten.addmm" else ()
    return dataclasses.replace(c0, shapes=bias + kind.shapes(width), cost=cost, module=module,
                               weight_bytes=sum(c.weight_bytes for c in calls))


def _drop_sums(calls: list[KernelCall], counts: list[int], flows: list[Flow], g: _Group, fewer: int) -> None:
    """Drop `fewer` per execution of the adds that summed the group's input gradients, from the flows and the
    calls: elementwise ops in the group's backward reading only its GEMMs' outputs (or earlier sums) and writing
    one tensor of x's size."""
    size = g.m * g.k * g.element_bytes
    prefixes = tuple(g.module(name) for name in g.names)

    def inside(module: str) -> bool:
        return module in prefixes or module.startswith(tuple(p + "." for p in prefixes))

    produced: set[int] = set()  # storages the group's backward GEMMs and sums wrote
    budget = fewer * g.count
    kept: list[Flow] = []
    for flow in flows:
        (module, phase), family, reads, writes, n = flow
        if phase != "backward" or not inside(module):
            kept.append(flow)
            continue
        if family == "gemm":
            produced.update(sid for sid, _ in writes)
        elif (family == "elementwise" and len(reads) == 2 and len(writes) == 1 and writes[0][1] == size
              and all(sid in produced and b == size for sid, b in reads)):
            produced.add(writes[0][0])
            i = _sum_call(calls, counts, module, g, n)
            if budget >= n and i is not None:
                budget -= n
                counts[i] -= n
                continue
        kept.append(flow)
    flows[:] = kept


def _sum_call(calls: list[KernelCall], counts: list[int], module: str, g: _Group, n: int) -> int | None:
    """The traced add call of `module`'s backward on two tensors of x's size with at least n executions left."""
    elements = g.m * g.k
    for i, c in enumerate(calls):
        if (c.module == module and c.phase == "backward" and c.family == "elementwise" and c.op == "aten.add"
                and len(c.shapes) == 2 and all(math.prod(s) == elements for s in c.shapes) and counts[i] >= n):
            return i
    return None


__all__ = ["GEMM_GROUPS", "group_gemms"]
