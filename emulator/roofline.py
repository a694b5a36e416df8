"""The only place counts become seconds: roofline time of each kernel call on a device profile.

For one call with cost C on device D with family efficiency e:
    t_matrix = (matrix + recompute FLOPs) / (matrix peak[dtype] * e.math * wave efficiency)
    t_vector = vector FLOPs / (vector peak[dtype] * e.vector)
    t_math   = max(t_matrix, t_vector)        (the units run concurrently inside a kernel)
    t_mem    = bytes / (bandwidth of the tier holding the working set * e.memory)
    t        = max(t_math, t_mem) + D.launch_overhead_s + e.overhead_s
Memory tiers: model state (weights, optimizer state) streams from main memory. Transient data that fits a
software-managed SRAM (the custom accelerator's scratchpad) streams at SRAM bandwidth; working sets that fit
a hardware cache stream `e.cache_speedup` times faster than main memory (1 until calibrated).
GEMM wave quantisation: output tiles of e.tile x e.tile spread over the compute units in waves; a partial last
wave leaves units idle, so the effective rate is tiles / (waves * units) of the full rate.
A step's time is max(sum of kernel times, host dispatch time): the host enqueues ops ahead of the device.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from emulator.efficiency import SPEC_DEFAULTS, EfficiencyTable, FamilyEfficiency
from emulator.hardware import DeviceProfile
from emulator.timing import KernelTiming, Timing
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
    """Fraction of the compute units busy over a GEMM's waves of output tiles."""
    if tile <= 0 or call.family != "gemm" or len(call.shapes) < 2:
        return 1.0
    batch, m, n, _ = gemm_dims(call.op, call.shapes)
    tiles = batch * math.ceil(m / tile) * math.ceil(n / tile)
    units = device.num_compute_units
    waves = math.ceil(tiles / units)
    return tiles / (waves * units)


def _tier_rate(call: KernelCall, device: DeviceProfile, table: EfficiencyTable, eff: FamilyEfficiency) -> float:
    """Effective bytes/s for the call's traffic, by where its data can live."""
    main = memory_rate(device, table) * eff.memory
    total = call.cost.bytes
    if total <= 0:
        return main
    state = min(call.weight_bytes, total) if call.phase != "optimizer" else total
    transient = max(total - state, 0.0)
    transient_rate = main
    for tier in device.memory:
        if tier.main or transient > tier.capacity_bytes:
            continue
        if tier.kind == "sram" and tier.bandwidth_bytes_per_s:
            transient_rate = tier.bandwidth_bytes_per_s * eff.memory
            break
        if tier.kind == "cache" and total <= tier.capacity_bytes:
            transient_rate = main * eff.cache_speedup
            state_rate = transient_rate
            return total / (state / state_rate + transient / transient_rate)
    # Harmonic mix: state bytes at main-memory speed, transient bytes at their tier's speed.
    return total / (state / main + transient / transient_rate)


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
    t_matrix = matrix / (matrix_rate(device, table, dtype) * eff.math * wave_efficiency(call, device, eff.tile)) if matrix else 0.0
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


def predict_calls(
    calls: Iterable[KernelCall],
    device: DeviceProfile,
    table: EfficiencyTable = SPEC_DEFAULTS,
    precision: str | None = None,
    num_ops: int | None = None,
) -> Timing:
    """Timing of a step made of `calls` (views included: they cost host time only).

    `num_ops` is how many ops the host dispatches, when it differs from the calls' counts.
    """
    calls = list(calls)
    kernels = tuple(kernel_time(c, device, table, precision) for c in calls if c.family != "view")
    device_s = sum(k.time_s for k in kernels)
    ops = num_ops if num_ops is not None else sum(c.count for c in calls)
    views = sum(c.count for c in calls if c.family == "view")
    if table.synchronous:
        # The CPU dispatches and runs each op in turn: per-kernel dispatch is in the fitted overheads,
        # views add their own host time.
        host_s = views * table.view_overhead_s
        total_s = device_s + host_s
    else:
        host_s = ops * table.host_overhead_s
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
