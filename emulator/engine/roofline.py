"""The only place counts become seconds: roofline time of each kernel call on a device profile.

For one call with cost C on device D with family efficiency e:
    t_matrix = (matrix + recompute FLOPs) / (matrix peak[dtype] * e.math * wave efficiency)
    t_vector = vector FLOPs / (vector peak[dtype] * e.vector)
    t_math   = max(t_matrix, t_vector)        (the units run concurrently inside a kernel)
             + t_score                         (fused attention below the reference head dimension, see SCORE_OPS)
    t_mem    = bytes / (bandwidth of the tier holding the working set * e.memory)
    t        = max(t_math, t_mem) + D.launch_overhead_s + e.overhead_s
Memory tiers: model state (weights, optimizer state) streams from main memory. Transient data that fits a
software-managed SRAM (the custom accelerator's scratchpad) streams at SRAM bandwidth; transient data that
fits a hardware cache streams `e.cache_speedup` times faster than main memory (1 until calibrated).
GEMM tile and wave quantisation: output tiles of e.tile x e.tile (padding at the edges) spread over the compute
units in waves; a partial last wave leaves units idle, so the effective rate is
useful / padded elements x tiles / (waves * units) of the full rate.
A step's time is max(sum of kernel times, host dispatch time): the host enqueues ops ahead of the device.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

from emulator.engine.efficiency import MATRIX_VECTOR, SPEC_DEFAULTS, EfficiencyTable, FamilyEfficiency
from emulator.engine.timing import KernelTiming, Timing
from emulator.hardware import DeviceProfile
from emulator.precision import DTYPE_BYTES, KEEP_DTYPE, LOW_PRECISIONS, WEIGHT_ONLY_BYTES, stored_bytes
from kernels import KernelCall
from kernels.cost import ATTENTION_BACKWARD_OP, attention_scores, gemm_dims

# A fused attention kernel spends on every query-key score some work outside its matrix units (scale, running max,
# exponent, row sum and rescale; the backward recomputes the exponent and forms dS), which a smaller head dimension
# does not shrink. Attention efficiencies are measured at head dimension 128 (calibration sweeps, achievable
# rates), so a head dimension d below it keeps that work's share of the reference: t_score = scores x SCORE_OPS /
# fp32 vector rate x (1 - d / 128). Kernel-level fit, in fp32 operations per score at the chip's vector fp32 rate:
# forward from AIConfigurator's TensorRT-LLM context attention at head dims 64 and 128 on equal shapes
# (`emulator/data/aic_attention_trtllm.csv`: 14 on H100, 26 H200, 24 B200, 28 GB200, 18 B300, 20 GB300) and our
# own torch SDPA on H100 and H200 (28, 27; calibrations/*.points.json); backward from the latter (107, 105): the
# median of each. Above 128 no saving is taken: AIConfigurator's head-dim-256 rows run 0-12% above the head-dim-128
# rate on Blackwell, where removing the reference's share would make them 30% faster.
SCORE_OPS = {"forward": 24.0, "backward": 106.0}
REFERENCE_HEAD_DIM = 128


def matrix_rate(device: DeviceProfile, table: EfficiencyTable, dtype: str) -> float:
    """Peak FLOP/s for matrix work in `dtype`: a measured rate (a profile-less CPU), else the profile's."""
    return table.peaks.get(f"matrix.{dtype}") or device.compute_peak(dtype)


def vector_rate(device: DeviceProfile, table: EfficiencyTable, dtype: str) -> float:
    """Peak FLOP/s of the vector units in `dtype`: a measured rate, else the profile's."""
    return table.peaks.get(f"vector.{dtype}") or table.peaks.get("vector.fp32") or device.vector_peak(dtype)


def memory_rate(device: DeviceProfile, table: EfficiencyTable) -> float:
    """Main-memory bytes/s: a measured rate, else the profile's."""
    return table.peaks.get("memory") or device.memory_bandwidth_bytes_per_s


@functools.lru_cache(maxsize=65536)
def wave_efficiency(batch: int, m: int, n: int, units: int, tile: int) -> float:
    """Fraction of the matrix units doing useful work on a [batch x] m x n GEMM output: tile and wave quantisation.

    The output is cut into tile x tile blocks; a partial block at an edge computes padding (a 16-row GEMM on
    64-row tiles uses a quarter of the units' work), and the blocks run in waves over the compute units, where
    a partial last wave leaves units idle.
    """
    if tile <= 0:
        return 1.0
    # Libraries pick narrower tiles for narrow operands (down to 16), so a dimension smaller than the tile
    # pads only to the next power of two.
    tile_m, tile_n = _tile_for(m, tile), _tile_for(n, tile)
    tiles_m, tiles_n = math.ceil(m / tile_m), math.ceil(n / tile_n)
    padding = (m * n) / (tiles_m * tiles_n * tile_m * tile_n)
    tiles = batch * tiles_m * tiles_n
    waves = math.ceil(tiles / units)
    return padding * tiles / (waves * units)


def _tile_for(dim: int, tile: int) -> int:
    return min(tile, max(16, 1 << max(dim - 1, 0).bit_length()))


def size_efficiency(min_dim: float, half_dim: float) -> float:
    """Small-matrix penalty of GEMM libraries: dim / (dim + half_dim) for the smallest of M, N and K (small
    products run other, less efficient kernels and cannot amortise loading their operands)."""
    return min_dim / (min_dim + half_dim) if half_dim > 0 else 1.0


def efficiency_key(family: str, op: str, shapes: tuple[tuple[int, ...], ...]) -> str:
    """The efficiency-table key of a call: `MATRIX_VECTOR` for a GEMM with a single output row or column, else
    its family."""
    if family == "gemm" and len(shapes) >= 2:
        _, m, n, _ = gemm_dims(op, shapes)
        if min(m, n) == 1:
            return MATRIX_VECTOR
    return family


def call_dtype(call: KernelCall, precision: str | None, device: DeviceProfile) -> str:
    """GEMMs on weights run in the requested low precision when the device has it (else as traced); a GEMM marked
    `KEEP_DTYPE` (a LoRA adapter's) runs as traced whatever the precision."""
    if (precision in LOW_PRECISIONS and call.family == "gemm" and precision in device.matrix_flops_per_s
            and KEEP_DTYPE not in call.params):
        return precision
    return call.dtype


def weight_only_format(call: KernelCall, precision: str | None) -> str | None:
    """The weight-only format (`WEIGHT_ONLY_BYTES`) a GEMM on weights runs in under `precision`, else None: its
    weights stream packed and are widened inside the kernel, its math in the traced dtype. Its efficiency is the
    table's `<family>.<format>` entry where one exists (a serving engine's weight-only kernels,
    `engine.stack.weight_only_from_base`), else the traced dtype's."""
    if (precision in WEIGHT_ONLY_BYTES and call.family == "gemm" and call.weight_bytes
            and KEEP_DTYPE not in call.params and call.dtype in DTYPE_BYTES):
        return precision
    return None


@dataclass(frozen=True, slots=True)
class CallTerms:
    """The efficiency-free parts of one kernel signature's time on one device: each unit's and each memory
    tier's seconds at 100% of its peak. `call_seconds` turns them into seconds with a `FamilyEfficiency`; the
    predictor and the calibration fit both go through it, so they fit and predict one model."""

    call: KernelCall  # as it runs: in its run dtype, a low-precision GEMM's operand bytes shrunk
    matrix_s: float  # matrix and recompute FLOPs at the matrix peak (before tile and size quantisation)
    vector_s: float  # vector FLOPs at the vector peak
    score_s: float  # fused attention's per-score work a head dimension below the reference keeps (SCORE_OPS)
    main_s: float  # bytes that stream from main memory (model state, outputs to fresh buffers) at its bandwidth
    cache_s: float  # bytes a hardware cache may hold, at main memory's bandwidth (sped up by `cache_speedup`)
    sram_s: float  # bytes held in a software-managed SRAM, at its bandwidth
    widen_s: float  # a weight-only GEMM's packed weights, one vector op each at the vector peak (0: none)
    weight_only: str | None  # the weight-only format it runs in (`weight_only_format`), None for every other call
    launch_s: float  # the profile's fixed cost per call
    gemm: tuple[int, int, int] | None  # (batch, M, N) of a GEMM's output, for tile and wave quantisation
    min_dim: float  # a GEMM's smallest dimension (inf for other kernels)
    num_units: int

    @property
    def dtype(self) -> str:
        return self.call.dtype


def call_terms(call: KernelCall, device: DeviceProfile, table: EfficiencyTable = SPEC_DEFAULTS,
               precision: str | None = None, *, cold: bool = False) -> CallTerms:
    """The terms of `call` on `device`. `cold`: every byte came from main memory (a calibration point that
    cycled through copies of its inputs, or was timed with the cache flushed)."""
    dtype = call_dtype(call, precision, device)
    cost = call.cost
    weight_only = weight_only_format(call, precision)
    widen_s = 0.0
    if dtype != call.dtype and call.dtype in DTYPE_BYTES:
        # Low-precision GEMM: operands shrink to the new width, block scales included (weights quantised,
        # activations cast).
        scale = stored_bytes(dtype) / DTYPE_BYTES[call.dtype]
        cost = dataclasses.replace(cost, bytes_read=cost.bytes_read * scale)
        call = dataclasses.replace(call, cost=cost, weight_bytes=call.weight_bytes * scale)
    elif weight_only is not None:
        # Weight-only format: the weights stream packed, the math stays in the traced dtype.
        packed = call.weight_bytes * WEIGHT_ONLY_BYTES[weight_only] / DTYPE_BYTES[call.dtype]
        widen_s = call.weight_bytes / DTYPE_BYTES[call.dtype] / vector_rate(device, table, call.dtype)
        cost = dataclasses.replace(cost, bytes_read=cost.bytes_read - call.weight_bytes + packed)
        call = dataclasses.replace(call, cost=cost, weight_bytes=packed)
    call = dataclasses.replace(call, dtype=dtype) if dtype != call.dtype else call
    main, cache, sram, sram_bytes_per_s = _tier_bytes(call, device, cold)
    rate = memory_rate(device, table)
    gemm, min_dim = None, math.inf
    if call.family == "gemm" and len(call.shapes) >= 2:
        batch, m, n, k = gemm_dims(call.op, call.shapes)
        gemm, min_dim = (batch, m, n), float(min(m, n, k))
    matrix = cost.matrix_flops + cost.recompute_flops
    score_s = 0.0
    if call.family == "attention" and cost.matrix_flops:
        scores, head_dim = attention_scores(call.op, call.shapes, cost.matrix_flops)
        if head_dim < REFERENCE_HEAD_DIM:
            ops = SCORE_OPS["backward" if call.op == ATTENTION_BACKWARD_OP else "forward"]
            score_s = scores * ops / vector_rate(device, table, "fp32") * (1 - head_dim / REFERENCE_HEAD_DIM)
    return CallTerms(
        call=call,
        matrix_s=matrix / matrix_rate(device, table, dtype) if matrix else 0.0,
        vector_s=cost.vector_flops / vector_rate(device, table, dtype) if cost.vector_flops else 0.0, score_s=score_s,
        main_s=main / rate, cache_s=cache / rate, sram_s=sram / sram_bytes_per_s if sram else 0.0, widen_s=widen_s,
        weight_only=weight_only,
        launch_s=device.launch_overhead_s if call.family != "view" else 0.0,
        gemm=gemm, min_dim=min_dim, num_units=device.num_compute_units,
    )


def _tier_bytes(call: KernelCall, device: DeviceProfile, cold: bool) -> tuple[float, float, float, float]:
    """(main-memory, cache-resident, SRAM-resident bytes, the SRAM's bytes/s) of one call, by where its data
    can live.

    Model state (weights, optimizer state) streams from main memory: a step touches far more state than any
    cache holds, so a layer's weights are gone from the cache by the time they are used again. Transient data
    (activations) that fits the software-managed SRAM streams at its bandwidth, or may be read from a hardware
    cache when it fits one. Outputs go to freshly allocated buffers that no recent op touched, so a hardware
    cache first fetches those lines from main memory (write-allocate); a microbenchmark loop hands the same
    hot buffer back every call.
    """
    total = call.cost.bytes
    if total <= 0 or cold:
        return max(total, 0.0), 0.0, 0.0, 0.0
    state = min(call.weight_bytes, total) if call.phase != "optimizer" else total
    transient = total - state
    for tier in device.memory:
        if tier.main or transient > tier.capacity_bytes:
            continue
        if tier.kind == "sram" and tier.bandwidth_bytes_per_s:
            return state, 0.0, transient, tier.bandwidth_bytes_per_s
        if tier.kind == "cache":
            written = min(call.cost.bytes_written, transient)
            return state + written, transient - written, 0.0, 0.0
    return total, 0.0, 0.0, 0.0


def call_seconds(t: CallTerms, eff: FamilyEfficiency) -> tuple[float, float, float]:
    """(t_math, t_mem, t_overhead) of one call under the family's efficiency.

    t_matrix = matrix_s / (eff.math * tile/wave * size quantisation);  t_vector = (vector_s + a weight-only GEMM's
    widening: widen_ops x widen_s per row tile of its output) / eff.vector
    t_math = max(t_matrix, t_vector) + score_s (the units run concurrently inside a kernel; a small head
    dimension's per-score attention work does not shrink with it)
    t_mem = (main_s + cache_s / eff.cache_speedup + sram_s) / eff.memory
    """
    t_matrix = 0.0
    if t.matrix_s:
        quantised = 1.0
        if t.gemm is not None:
            quantised = wave_efficiency(*t.gemm, t.num_units, eff.tile) * size_efficiency(t.min_dim, eff.half_dim)
        t_matrix = t.matrix_s / (eff.math * quantised)
    widen = 0.0
    if t.widen_s and eff.widen_ops and t.gemm is not None:  # every row tile of the output widens the weights again
        widen = eff.widen_ops * t.widen_s * (math.ceil(t.gemm[1] / eff.tile) if eff.tile else 1)
    t_vector = (t.vector_s + widen) / eff.vector if t.vector_s or widen else 0.0
    t_mem = (t.main_s + t.cache_s / eff.cache_speedup + t.sram_s) / eff.memory
    t_over = t.launch_s + eff.overhead_s if t.call.family != "view" else 0.0
    return max(t_matrix, t_vector) + t.score_s, t_mem, t_over


def kernel_time(
    call: KernelCall,
    device: DeviceProfile,
    table: EfficiencyTable = SPEC_DEFAULTS,
    precision: str | None = None,
) -> KernelTiming:
    """Roofline time of all `call.count` calls of one kernel signature."""
    terms = call_terms(call, device, table, precision)
    call = terms.call
    key = efficiency_key(call.family, call.op, call.shapes)
    eff = (table.families.get(f"{key}.{terms.weight_only}") if terms.weight_only else None) \
        or table.get(key, call.dtype)
    t_math, t_mem, t_over = call_seconds(terms, eff)
    busy = max(t_math, t_mem)
    if call.family == "view" or busy < t_over:
        bound = "overhead"
    else:
        bound = "compute" if t_math >= t_mem else "memory"
    return KernelTiming(
        family=call.family,
        op=call.op,
        module=call.module,
        phase=call.phase,
        dtype=call.dtype,
        shapes=call.shapes,
        count=call.count,
        time_s=(busy + t_over) * call.count,
        t_math_s=t_math,
        t_mem_s=t_mem,
        t_overhead_s=t_over,
        bound=bound,
        cost=call.total,
        main_memory_bytes=(terms.main_s + terms.cache_s) * memory_rate(device, table) * call.count,
    )


def _with_cold_calls(kernels: tuple[KernelTiming, ...], table: EfficiencyTable) -> tuple[KernelTiming, ...]:
    """Add each call's cold-call cost (a CPU's caches evicted by the traffic since the call last ran).

    A step runs in a loop, so the traffic between two runs of one kernel signature that runs n times a step
    is the step's traffic over n (a layer's op: the rest of its layer). GEMMs keep their fitted time: their
    calibration already timed cold-operand variants that stream past the cache, so their fitted per-call
    overhead holds this cost.
    """
    step_bytes = sum(k.cost.bytes for k in kernels)
    out = []
    for k in kernels:
        if k.family == "gemm" or not k.count:
            out.append(k)
            continue
        cold = table.cold_call_s(step_bytes / k.count)
        out.append(dataclasses.replace(k, time_s=k.time_s + cold * k.count, t_overhead_s=k.t_overhead_s + cold))
    return tuple(out)


def predict_calls(
    calls: Iterable[KernelCall],
    device: DeviceProfile,
    table: EfficiencyTable = SPEC_DEFAULTS,
    precision: str | None = None,
) -> Timing:
    """Timing of a step made of `calls` (views included: they cost host time only)."""
    calls = list(calls)
    kernels = tuple(kernel_time(c, device, table, precision) for c in calls if c.family != "view")
    if table.cold_call_curve:
        kernels = _with_cold_calls(kernels, table)
    device_s = sum(k.time_s for k in kernels)
    ops = sum(c.count for c in calls)  # ops the host dispatches, views included
    per_op = max(table.program_overhead_s, table.host_overhead_s)
    if table.synchronous:
        # The CPU dispatches and runs each op in turn: a bare op's dispatch is inside the fitted per-call
        # overheads; the model's own host work per op (modules, Python) adds to the kernels.
        host_s = ops * max(per_op - table.host_overhead_s, 0.0)
        total_s = device_s + host_s
    else:
        host_s = ops * per_op
        total_s = max(device_s, host_s)
    return Timing(
        total_s=total_s,
        provenance=table.provenance,
        error_band=error_band(kernels, table),
        device=device.name,
        kernels=kernels,
        device_s=device_s,
        host_s=host_s,
    )


def error_band(kernels: Iterable[KernelTiming], table: EfficiencyTable) -> float:
    """The one error band of a prediction: each kernel's held-out (or documented) relative error, weighted by its
    share of the time. A fractional half-width: the truth is expected within time * (1 +- band)."""
    return combined_band([(table.get(efficiency_key(k.family, k.op, k.shapes), k.dtype).error, k.time_s)
                          for k in kernels],
                         table.get("default").error)


def combined_band(parts: Iterable[tuple[float, float]], empty: float) -> float:
    """The band of parts timed in sequence, from (band, seconds) pairs: their time-weighted mean (`empty` when
    no part takes time)."""
    weighted = total = 0.0
    for band, seconds in parts:
        weighted += band * seconds
        total += seconds
    return weighted / total if total > 0 else empty
