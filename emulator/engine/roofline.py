"""The only place counts become seconds: roofline time of each kernel call on a device profile.

For one call with cost C on device D with family efficiency e:
    t_matrix = (matrix + recompute FLOPs) / (matrix peak[dtype] * e.math * wave efficiency)
    t_vector = vector FLOPs / (vector peak[dtype] * e.vector)
    t_math   = max(t_matrix, t_vector)        (the units run concurrently inside a kernel)
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
import math
from collections.abc import Iterable

from emulator.engine.efficiency import SPEC_DEFAULTS, EfficiencyTable, FamilyEfficiency
from emulator.engine.timing import KernelTiming, Timing
from emulator.hardware import DeviceProfile
from emulator.units import DTYPE_BYTES
from kernels import KernelCall
from kernels.matmul import gemm_dims

# Dtypes the precision setting may put GEMMs in (weights and activations of the matmul, W8A8-style).
LOW_PRECISIONS = ("fp8", "int8", "fp4")


def matrix_rate(device: DeviceProfile, table: EfficiencyTable, dtype: str) -> float:
    """Peak FLOP/s for matrix work in `dtype`: the matrix unit's, else (fp32 without TF32) the vector unit's."""
    measured = table.peaks.get(f"matrix.{dtype}")
    if measured:
        return measured
    if dtype in device.matrix_flops_per_s:
        return device.matrix_flops_per_s[dtype]
    return device.vector_peak(dtype if dtype in device.vector_flops_per_s else "fp32")


def vector_rate(device: DeviceProfile, table: EfficiencyTable, dtype: str) -> float:
    measured = table.peaks.get(f"vector.{dtype}") or table.peaks.get("vector.fp32")
    # Integer and index math (int64 routing, masks) runs at about the fp32 vector rate.
    return measured or device.vector_peak(dtype if dtype in device.vector_flops_per_s else "fp32")


def memory_rate(device: DeviceProfile, table: EfficiencyTable) -> float:
    return table.peaks.get("memory") or device.memory_bandwidth_bytes_per_s


def wave_efficiency(call: KernelCall, device: DeviceProfile, tile: int) -> float:
    """Fraction of the matrix units doing useful work on a GEMM: tile and wave quantisation.

    The output is cut into tile x tile blocks; a partial block at an edge computes padding (a 16-row GEMM on
    64-row tiles uses a quarter of the units' work), and the blocks run in waves over the compute units, where
    a partial last wave leaves units idle.
    """
    if tile <= 0 or call.family != "gemm" or len(call.shapes) < 2:
        return 1.0
    batch, m, n, _ = gemm_dims(call.op, call.shapes)
    # Libraries pick narrower tiles for narrow operands (down to 16), so a dimension smaller than the tile
    # pads only to the next power of two.
    tile_m, tile_n = _tile_for(m, tile), _tile_for(n, tile)
    tiles_m, tiles_n = math.ceil(m / tile_m), math.ceil(n / tile_n)
    padding = (m * n) / (tiles_m * tiles_n * tile_m * tile_n)
    tiles = batch * tiles_m * tiles_n
    units = device.num_compute_units
    waves = math.ceil(tiles / units)
    return padding * tiles / (waves * units)


def _tile_for(dim: int, tile: int) -> int:
    return min(tile, max(16, 1 << max(dim - 1, 0).bit_length()))


def size_efficiency(call: KernelCall, half_dim: float) -> float:
    """Small-matrix penalty of GEMM libraries: dim / (dim + half_dim) for the smallest of M, N and K (small
    products run other, less efficient kernels and cannot amortise loading their operands)."""
    if half_dim <= 0 or call.family != "gemm" or len(call.shapes) < 2:
        return 1.0
    _, m, n, k = gemm_dims(call.op, call.shapes)
    dim = min(m, n, k)
    return dim / (dim + half_dim)


def _tier_rate(call: KernelCall, device: DeviceProfile, table: EfficiencyTable, eff: FamilyEfficiency) -> float:
    """Effective bytes/s for the call's traffic, by where its data can live.

    Model state (weights, optimizer state) streams from main memory: a step touches far more state than any
    cache holds, so a layer's weights are gone from the cache by the time they are used again. Transient data
    (activations) that fits the software-managed SRAM streams at its bandwidth, or at `cache_speedup` times
    main memory when it fits a hardware cache.
    """
    main = memory_rate(device, table) * eff.memory
    total = call.cost.bytes
    if total <= 0:
        return main
    state = min(call.weight_bytes, total) if call.phase != "optimizer" else total
    transient = total - state
    for tier in device.memory:
        if tier.main or transient > tier.capacity_bytes:
            continue
        if tier.kind == "sram" and tier.bandwidth_bytes_per_s:
            return total / (state / main + transient / (tier.bandwidth_bytes_per_s * eff.memory))
        if tier.kind == "cache":
            # Reads of what earlier ops left in the cache run at its speed; the output goes to a freshly
            # allocated buffer that no recent op touched, so a hardware cache first fetches those lines from
            # main memory (write-allocate). A microbenchmark loop hands the same hot buffer back every call.
            written = min(call.cost.bytes_written, transient)
            return total / ((state + written) / main + (transient - written) / (main * eff.cache_speedup))
    return main


def call_dtype(call: KernelCall, precision: str | None, device: DeviceProfile) -> str:
    """GEMMs on weights run in the requested low precision when the device has it (else as traced)."""
    if precision in LOW_PRECISIONS and call.family == "gemm" and precision in device.matrix_flops_per_s:
        return precision
    return call.dtype


def kernel_time(
    call: KernelCall,
    device: DeviceProfile,
    table: EfficiencyTable = SPEC_DEFAULTS,
    precision: str | None = None,
) -> KernelTiming:
    """Roofline time of all `call.count` calls of one kernel signature."""
    cost = call.cost
    dtype = call_dtype(call, precision, device)
    eff = table.get(call.family, dtype)
    if dtype != call.dtype and call.dtype in DTYPE_BYTES:
        # Low-precision GEMM: operands shrink to the new width (weights quantised, activations cast).
        scale = DTYPE_BYTES[dtype] / DTYPE_BYTES[call.dtype]
        cost = dataclasses.replace(cost, bytes_read=cost.bytes_read * scale)
        call = dataclasses.replace(call, cost=cost, weight_bytes=call.weight_bytes * scale)
    matrix = cost.matrix_flops + cost.recompute_flops
    quantised = wave_efficiency(call, device, eff.tile) * size_efficiency(call, eff.half_dim)
    t_matrix = matrix / (matrix_rate(device, table, dtype) * eff.math * quantised) if matrix else 0.0
    t_vector = cost.vector_flops / (vector_rate(device, table, dtype) * eff.vector) if cost.vector_flops else 0.0
    t_math = max(t_matrix, t_vector)
    t_mem = cost.bytes / _tier_rate(call, device, table, eff) if cost.bytes else 0.0
    t_over = device.launch_overhead_s + eff.overhead_s if call.family != "view" else 0.0
    busy = max(t_math, t_mem)
    if call.family == "view":
        bound = "overhead"
    elif busy < t_over:
        bound = "overhead"
    else:
        bound = "compute" if t_math >= t_mem else "memory"
    return KernelTiming(
        family=call.family,
        op=call.op,
        module=call.module,
        phase=call.phase,
        dtype=dtype,
        shapes=call.shapes,
        count=call.count,
        time_s=(busy + t_over) * call.count,
        t_math_s=t_math,
        t_mem_s=t_mem,
        t_overhead_s=t_over,
        bound=bound,
        cost=call.total,
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
    # The step's error band: each kernel's held-out (or documented) error, weighted by its share of the time.
    band = (sum(k.time_s * table.get(k.family, k.dtype).error for k in kernels) / device_s if device_s
            else table.error_band)
    return Timing(
        total_s=total_s,
        provenance=table.provenance,
        error_band=band,
        device=device.name,
        kernels=kernels,
        device_s=device_s,
        host_s=host_s,
    )
