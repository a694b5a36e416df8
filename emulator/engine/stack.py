"""A software stack applied to a traced program: its fused kernels replace the eager op chain.

`fuse` turns every module region (one module path and phase, e.g. `layers.0.ffn_norm` forward) into one kernel
over the stack's fusible families (`fusion.families` of its profile). The fused kernel reads what the region's
ops take from outside it (the block's input, the weights, a GEMM's output) and writes what later code reads
(the block's output, tensors saved for backward); everything the ops pass among themselves stays on chip. The
traffic comes from the trace's data flow (`Trace.flows`: each op's tensors by identity), so the rule is the same
for a norm, SwiGLU, RoPE, a residual add or a cross-entropy: the stack's fused kernel moves what a hand-written
kernel for that region must move. FLOPs are the ops' own. GEMMs, attention, embeddings, collectives and the
optimizer are left as traced (their kernels are already single calls).

The fused kernel is costed by the roofline in the family that moved the most bytes in the region (elementwise
for a norm or an activation, softmax for a cross-entropy), named `fused(<module>)` so that per-kernel tables show
the stack's kernels.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

from emulator.engine.calibration import base_shaped
from emulator.engine.calls import Trace
from emulator.engine.efficiency import MATRIX_VECTOR, EfficiencyTable
from emulator.engine.gemm_groups import group_gemms
from emulator.hardware import DeviceProfile
from emulator.precision import KEEP_DTYPE, LOW_PRECISIONS, WEIGHT_ONLY_BYTES, activation_dtype, dtype_bytes
from emulator.stacks import StackProfile
from kernels import Cost, KernelCall

Region = tuple[str, str]  # (module path, phase)


def _recomputed(producer: Region, reader: Region) -> bool:
    """A forward intermediate read by the same module's backward: fused kernels keep only the block's inputs
    (and per-row statistics) for backward and recompute the rest (Transformer Engine's and Apex's norms, fused
    SwiGLU, fused cross-entropy), where eager autograd stores every intermediate it needs."""
    return producer[0] == reader[0] and producer[1] == "forward" and reader[1] == "backward"


def _region_traffic(trace: Trace, fusible: frozenset[str]) -> dict[Region, tuple[float, float, int]]:
    """(bytes read from outside, bytes written for later use, repeats) per region, summed over its repeats."""
    traffic: dict[Region, list[float]] = {}
    repeats: dict[Region, int] = {}
    pending: dict[int, tuple[Region, float, int]] = {}  # written inside a region, not yet read from outside
    used: set[int] = set()  # pending tensors the region itself read

    def escape(tid: int) -> None:
        region, size, n = pending.pop(tid)
        traffic[region][1] += size * n

    for region, family, reads, writes, n in trace.flows:
        fused = family in fusible
        for tid, size in reads:
            held = pending.get(tid)
            if held is not None and fused and held[0] == region:
                used.add(tid)
                continue  # passed between the region's own ops: on chip
            if held is not None and fused and _recomputed(held[0], region):
                del pending[tid]  # the fused backward recomputes it from the forward's inputs
                continue
            if held is not None:
                escape(tid)
            if fused:
                traffic.setdefault(region, [0.0, 0.0])[0] += size * n
        if not fused:
            for tid, _ in writes:  # overwritten outside the region (in place): the region's value was stored
                if tid in pending:
                    escape(tid)
            continue
        traffic.setdefault(region, [0.0, 0.0])
        repeats[region] = n
        for tid, size in writes:
            held = pending.get(tid)
            if held is not None and held[0] != region:
                escape(tid)
            pending[tid] = (region, size, n)
    for tid in list(pending):  # never read at all: the step's results (gradients, the loss) are stored
        if tid not in used:
            escape(tid)
    return {r: (t[0], t[1], repeats.get(r, 1)) for r, t in traffic.items()}


_FUSED: dict[tuple[int, tuple[str, ...]], tuple[Trace, Trace]] = {}


def fuse(trace: Trace, families: tuple[str, ...]) -> Trace:
    """The trace as a stack runs it: each region's calls of `families` become one fused kernel (see module doc).
    A trace without data flow (hand-built) or a stack without fusions is returned as it is."""
    if not families or not trace.flows:
        return trace
    hit = _FUSED.get((id(trace), families))
    if hit is not None and hit[0] is trace:
        return hit[1]
    out = _fuse(trace, families)
    if len(_FUSED) > 1024:
        _FUSED.clear()
    _FUSED[(id(trace), families)] = (trace, out)
    return out


def _fuse(trace: Trace, families: tuple[str, ...]) -> Trace:
    fusible = frozenset(families)
    traffic = _region_traffic(trace, fusible)
    members: dict[Region, list[KernelCall]] = {}
    kept: list[KernelCall] = []
    for c in trace.calls:
        region = (c.module, c.phase)
        if c.family in fusible and region in traffic:
            members.setdefault(region, []).append(c)
        else:
            kept.append(c)
    fused = []
    for region, calls in members.items():
        read, written, n = traffic[region]
        moved: dict[str, float] = {}
        for c in calls:
            moved[c.family] = moved.get(c.family, 0.0) + c.total.bytes
        dtypes = Counter(c.dtype for c in calls)
        shapes = tuple(dict.fromkeys(s for c in calls for s in c.shapes))
        cost = Cost(vector_flops=sum(c.total.vector_flops for c in calls) / n, bytes_read=read / n,
                    bytes_written=written / n)
        fused.append(KernelCall(family=max(moved, key=moved.__getitem__), op=f"fused({region[0]})",
                                shapes=shapes, dtype=dtypes.most_common(1)[0][0], cost=cost, count=n,
                                module=region[0], phase=region[1],
                                weight_bytes=sum(c.weight_bytes for c in calls) / n))
    return dataclasses.replace(trace, calls=tuple(kept) + tuple(fused))


def low_precision_casts(trace: Trace, precision: str, bytes_per_element: float) -> Trace:
    """The trace with the casts a low-precision recipe adds: every GEMM that takes a weight (forward and
    activation-gradient GEMMs; weight-gradient GEMMs reuse those casts' transposed copies) gets a cast kernel
    over its activation operand that moves `bytes_per_element` per element (`recipe.cast_bytes_per_element` of
    the stack: reading 16-bit, writing the low-precision copy and its transpose, less what fused producers
    write directly). GEMMs marked `KEEP_DTYPE` (LoRA adapters) stay 16-bit and take no cast."""
    if precision not in LOW_PRECISIONS or bytes_per_element <= 0:
        return trace
    width = dtype_bytes(activation_dtype(precision))
    casts = []
    for c in trace.calls:
        if c.family != "gemm" or c.weight_bytes <= 0 or c.phase == "optimizer" or KEEP_DTYPE in c.params:
            continue
        elements = max(c.cost.bytes_read - c.weight_bytes, 0.0) / width
        if elements <= 0:
            continue
        casts.append(KernelCall(family="elementwise", op=f"cast_{precision}", shapes=((int(elements),),),
                                dtype=activation_dtype(precision), count=c.count, module=c.module, phase=c.phase,
                                cost=Cost(vector_flops=2.0 * elements, bytes_read=elements * width,
                                          bytes_written=elements * max(bytes_per_element - width, 0.0))))
    return dataclasses.replace(trace, calls=trace.calls + tuple(casts)) if casts else trace


HEAD_MODULE = "head.output"  # the LM head's projection in the traced transformer (`workloads.transformer.Head`)


def keep_head_dtype(trace: Trace) -> Trace:
    """The trace with the LM head's GEMMs marked `KEEP_DTYPE` (`recipe.low_precision_head` false): the stacks
    quantize the transformer body's Linears and leave the vocabulary projection 16-bit (Megatron-Core's output
    layer is not a Transformer Engine module; torchtitan filters `output` from float8; the quantized checkpoints the
    engines load leave `lm_head` out), so a low-precision recipe neither casts nor runs it in its format."""
    calls = tuple(dataclasses.replace(c, params=c.params + (KEEP_DTYPE,))
                  if c.family == "gemm" and c.module == HEAD_MODULE and KEEP_DTYPE not in c.params else c
                  for c in trace.calls)
    return dataclasses.replace(trace, calls=calls)


def moe_blocks(trace: Trace) -> dict[Region, int]:
    """The trace's MoE blocks, the modules with a `router` child, per phase: their executions per step (their
    router GEMM's calls)."""
    return {(c.module.rpartition(".")[0], c.phase): c.count for c in trace.calls
            if c.family == "gemm" and c.module.endswith(".router")}


GROUPED_FAMILIES = ("gemm", "scatter", "embedding", "copy")  # expert GEMMs, un-permute adds, permute gathers


def group_experts(trace: Trace, streams: int = 0) -> Trace:
    """The trace with each MoE block's per-expert kernels run as grouped kernels (`moe.grouped_gemm`): the eager
    program loops over experts (a GEMM, a gather and an index-add each), where the engines and Megatron-Core launch
    one grouped GEMM per projection over all experts and one permute and un-permute kernel per layer. The work and
    bytes are unchanged; the launches, and the per-call fixed cost of each, become one per block execution.

    `streams` (`moe.expert_gemm_streams`): 0, the GEMMs of all experts are one grouped kernel, its waves filled with
    every expert's tiles; N, each expert's GEMM is its own library call, N of them running at once on N streams
    (Transformer Engine's grouped GEMM backend): ceil(E / N) launches per projection, each filling its waves with
    E / ceil(E / N) experts' tiles.

    An MoE block is a module with a `router` child (`moe_blocks`)."""
    routers = moe_blocks(trace)
    if not routers:
        return trace
    calls = []
    for c in trace.calls:
        runs = routers.get((c.module, c.phase))
        if runs and c.family in GROUPED_FAMILIES and c.count > runs:
            group = c.count / runs
            gemm = c.family == "gemm" and c.op == "aten.mm" and len(c.shapes) >= 2
            launches = math.ceil(group / streams) if gemm and streams else 1
            per = group / launches  # experts per launch
            c = dataclasses.replace(c, cost=c.cost * per, count=runs * launches, weight_bytes=c.weight_bytes * per)
            if gemm:
                # One launch over its experts' tiles: the waves fill with those experts' tiles together.
                (m, k), (_, n) = c.shapes[0][-2:], c.shapes[1][-2:]
                c = dataclasses.replace(c, op="grouped_mm", shapes=((round(per), m, k), (round(per), k, n)))
        calls.append(c)
    return dataclasses.replace(trace, calls=tuple(calls))


def fused_permute(trace: Trace) -> Trace:
    """The trace with each MoE block's permute and un-permute as a fused MoE kernel runs them (`moe.fused_permute`;
    after `group_experts`): the first grouped GEMM reads each routed row where it lies through the sorted token ids,
    so the gather of the hidden rows (`index_select` of a [T, H] input) moves nothing of its own; the second writes
    each (token, expert) row once, and one reduction sums each token's rows into the output (vLLM's and SGLang's
    fused_moe: `moe_sum` over [T, k, H]), where the eager scatter-add reads and rewrites an output row per routed
    row. The reduction reads the N routed rows and writes the T output rows."""
    blocks = {module for module, _ in moe_blocks(trace)}
    if not blocks:
        return trace
    calls = []
    for c in trace.calls:
        if c.module in blocks and c.op == "aten.index_select" and len(c.shapes[0]) == 2:
            continue  # the rows gathered inside the grouped GEMM, its operand bytes already counted there
        if c.module in blocks and c.op == "aten.index_add_":
            routed = c.cost.bytes_written  # one write per routed row (the scatter-add's read-modify-write)
            out = math.prod(c.shapes[0]) * dtype_bytes(c.dtype)
            c = dataclasses.replace(c, family="reduction", op="moe_sum", cost=Cost(
                vector_flops=routed / dtype_bytes(c.dtype), bytes_read=routed, bytes_written=out))
        calls.append(c)
    return dataclasses.replace(trace, calls=tuple(calls))


def low_precision_from_base(table: EfficiencyTable) -> EfficiencyTable:
    """The table with every `gemm.<dtype>` family on the 16-bit family's shape response
    (`recipe.low_precision_gemm_shape`): the serving engines pick their fp8 GEMM tiles per M bucket (swap-AB for
    small M), so their decode-shaped fp8 products stream weights as the 16-bit ones do, where the calibrated torch
    `_scaled_mm` (cuBLASLt) reaches half the bandwidth at M = 16."""
    base = table.families.get("gemm")
    if base is None:
        return table
    families = {name: (base_shaped(eff, base) if name.startswith("gemm.") else eff)
                for name, eff in table.families.items()}
    return dataclasses.replace(table, families=families)


def engine_trace(trace: Trace, engine: StackProfile) -> Trace:
    """A traced inference step as a serving engine runs it: the LM head 16-bit unless `recipe.low_precision_head`,
    q/k/v and gate/up as one GEMM each (`fusion.gemm_groups`; grouped first: `fuse` reads their flows), the
    engine's fused kernels (`fusion.families`), the experts as grouped kernels (`moe.grouped_gemm`) with the fused
    MoE kernel's permutes (`moe.fused_permute`)."""
    trace = trace if engine.get("recipe.low_precision_head") else keep_head_dtype(trace)
    trace = fuse(group_gemms(trace) if engine.get("fusion.gemm_groups") else trace, engine.fused_families)
    if not engine.get("moe.grouped_gemm"):
        return trace
    trace = group_experts(trace, int(engine.get("moe.expert_gemm_streams")))
    return fused_permute(trace) if engine.get("moe.fused_permute") else trace


def weight_only_from_base(table: EfficiencyTable, widen_ops: float, math_share: float) -> EfficiencyTable:
    """The table with the engine's weight-only GEMMs (`gemm.w4a16`, `gemv.w4a16`: `precision.WEIGHT_ONLY_BYTES`) on
    the 16-bit GEMM's shape response and bandwidth, spending `widen_ops` vector operations on each packed weight per
    row tile of their output and reaching `math_share` of its math efficiency (`recipe.weight_only_widen_ops`,
    `recipe.weight_only_math_share`): without 4-bit matrix units the kernel widens every weight it loads on the
    vector units before the matrix units take it, a cost of the SMs' throughput, not of memory. 0 and 1: the table
    as it is (the 16-bit GEMM's)."""
    if widen_ops == 0.0 and math_share == 1.0:
        return table
    families = dict(table.families)
    for key in ("gemm", MATRIX_VECTOR):
        base = table.get(key)
        for fmt in WEIGHT_ONLY_BYTES:
            families[f"{key}.{fmt}"] = dataclasses.replace(base, math=base.math * math_share, widen_ops=widen_ops)
    return dataclasses.replace(table, families=families)


def engine_table(table: EfficiencyTable, engine: StackProfile) -> EfficiencyTable:
    """The efficiencies the engine's kernels reach: low-precision GEMMs on the 16-bit shape response where the
    engine picks their tiles per shape (`recipe.low_precision_gemm_shape`), weight-only GEMMs as the engine's kernels
    widen their weights (`weight_only_from_base`)."""
    table = low_precision_from_base(table) if engine.get("recipe.low_precision_gemm_shape") else table
    return weight_only_from_base(table, float(engine.get("recipe.weight_only_widen_ops")),
                                 float(engine.get("recipe.weight_only_math_share")))


def engine_device(device: DeviceProfile, engine: StackProfile) -> tuple[DeviceProfile, float]:
    """The device as the engine's kernels run on it, and the host's launch cost per kernel on top of their time.

    With CUDA graphs a replayed graph's kernels follow each other on the device, a gap each
    (`host.graph_kernel_gap_s`) and no host launch; without, every kernel costs a launch (`host.kernel_launch_s`)."""
    if engine.get("host.cuda_graphs"):
        return dataclasses.replace(device, launch_overhead_s=float(engine.get("host.graph_kernel_gap_s"))), 0.0
    return device, float(engine.get("host.kernel_launch_s"))


def engine_view(device: DeviceProfile, table: EfficiencyTable, engine: StackProfile
                ) -> tuple[DeviceProfile, EfficiencyTable]:
    """The chip and its efficiency table as the engine's serving steps run them (`engine_device`, `engine_table`);
    without CUDA graphs the host's launch per kernel is folded into the device's launch overhead."""
    device, launch_s = engine_device(device, engine)
    if launch_s:
        device = dataclasses.replace(device, launch_overhead_s=device.launch_overhead_s + launch_s)
    return device, engine_table(table, engine)


SUSTAINED_FAMILIES = ("gemm", MATRIX_VECTOR, "attention")


_SUSTAINED: dict[tuple[int, float, float], tuple[EfficiencyTable, EfficiencyTable]] = {}


def sustained(table: EfficiencyTable, factor: float, attention: float = 1.0) -> EfficiencyTable:
    """The table with GEMM and attention math efficiencies scaled by `factor` (`efficiency.sustained_math`) and the
    attention family's by `attention` too (`efficiency.attention_kernel_rate`: the stack's attention kernel); the
    same object for the same inputs, so that caches keyed by table stay warm."""
    if factor == 1.0 and attention == 1.0:
        return table
    hit = _SUSTAINED.get((id(table), factor, attention))
    if hit is not None and hit[0] is table:
        return hit[1]
    if len(_SUSTAINED) > 256:
        _SUSTAINED.clear()
    out = _scaled(table, factor, attention)
    _SUSTAINED[(id(table), factor, attention)] = (table, out)
    return out


def stack_table(table: EfficiencyTable, stack: StackProfile, device_family: str) -> EfficiencyTable:
    """The efficiency table a training stack's step runs at on a device family: `sustained` by the stack's
    `efficiency.sustained_math` for that family and its `efficiency.attention_kernel_rate`."""
    return sustained(table, stack.sustained_math(device_family), stack.attention_kernel_rate())


def _scaled(table: EfficiencyTable, factor: float, attention: float) -> EfficiencyTable:
    def scale(name: str) -> float:
        return factor * (attention if name.split(".")[0] == "attention" else 1.0)

    families = {name: (dataclasses.replace(eff, math=eff.math * scale(name))
                       if name.split(".")[0] in SUSTAINED_FAMILIES else eff) for name, eff in table.families.items()}
    for name in SUSTAINED_FAMILIES:  # a family the table leaves to its default still gets the factor
        if name not in families:
            base = table.get(name)
            families[name] = dataclasses.replace(base, math=base.math * scale(name))
    return dataclasses.replace(table, families=families)


__all__ = ["engine_device", "engine_table", "engine_trace", "engine_view", "fuse", "fused_permute", "group_experts",
           "low_precision_casts", "stack_table", "sustained"]
