"""One micro-batch of the busiest pipeline stage: its kernels' roofline times by part and phase, and the host's.

A pass (forward or backward) of a part takes the longer of its kernels and the host's time to dispatch its ops
outside CUDA graphs (`cluster.host`); the difference is `host_wait_s`, the device idle on the host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulator.cluster.host import call_host_s, moe_layers
from emulator.cluster.recompute import recomputed_calls
from emulator.cluster.shard import RankProgram, part_of
from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.roofline import error_band, kernel_time
from emulator.engine.timing import FamilyTiming, KernelTiming, family_totals
from emulator.hardware import DeviceProfile


@dataclass(frozen=True, slots=True)
class StageTimes:
    """Seconds of one micro-batch on the busiest rank, by part and phase; per-family totals for reporting."""

    seconds: Mapping[tuple[str, str], float]  # (embed|layers|head, forward|backward) -> s
    attention: Mapping[str, float]  # phase -> s of attention kernels
    families: Mapping[str, FamilyTiming]  # one micro-batch, forward and backward
    hardware_flops: Mapping[str, float]  # part -> FLOPs executed (matrix + recompute + vector), one micro-batch
    layer_forward_flops: float
    error_band: float  # time-weighted over the micro-batch's kernels (`roofline.error_band`)
    selective_s: float = 0.0  # the forward kernels the stack's selective recompute reruns (`cluster.recompute`)
    selective_flops: float = 0.0  # and their FLOPs (matrix + vector)
    host_wait_s: float = 0.0  # of `seconds`: the device waiting on the host's dispatch (`cluster.host`)

    def get(self, part: str, phase: str) -> float:
        return self.seconds.get((part, phase), 0.0)

    def recompute_s(self, recompute: str) -> float:
        """Seconds of forward the backward reruns under a plan's `recompute`, per micro-batch."""
        return {"full": self.get("layers", "forward"), "selective": self.selective_s}.get(recompute, 0.0)

    def recompute_flops(self, recompute: str) -> float:
        """Their FLOPs (matrix + vector)."""
        return {"full": self.layer_forward_flops, "selective": self.selective_flops}.get(recompute, 0.0)


_TIMES: dict[tuple[Any, ...], tuple[RankProgram, EfficiencyTable, StageTimes]] = {}


def stage_times(prog: RankProgram, device: DeviceProfile, table: EfficiencyTable, precision: str) -> StageTimes:
    """Roofline times of a rank's calls, cached per (traced shard, corrections, device, table, precision)."""
    p = prog.plan
    key = (id(prog.trace), p.tp, p.cp, p.sequence_parallel, p.microbatch_size, p.seq_len,
           prog.attention, prog.selective, prog.host, device, id(table), precision)
    hit = _TIMES.get(key)
    if hit is not None and hit[0].trace is prog.trace and hit[1] is table:  # ids are reused once objects die
        return hit[2]
    seconds: dict[tuple[str, str], float] = {}
    attention: dict[str, float] = {}
    hardware: dict[str, float] = {}
    timed: list[KernelTiming] = []
    layer_forward = selective = selective_flops = 0.0
    host: dict[tuple[str, str], float] = {}
    moe = moe_layers(prog.compute)
    again = recomputed_calls(prog.compute, prog.selective, precision)
    for call, rerun in zip(prog.compute, again, strict=True):
        # The optimizer runs once a step, on the rank's (ZeRO) shard: `optimizer_kernel` times it.
        if call.phase == "optimizer":
            continue
        part = part_of(call)
        host[(part, call.phase)] = host.get((part, call.phase), 0.0) + call_host_s(call, prog.host, moe)
        if call.family == "view":
            continue
        kt = kernel_time(call, device, table, precision)
        timed.append(kt)
        seconds[(part, call.phase)] = seconds.get((part, call.phase), 0.0) + kt.time_s
        if call.family == "attention" or call.module == "layers.attention":
            attention[call.phase] = attention.get(call.phase, 0.0) + kt.time_s
        cost = call.total
        executed = cost.matrix_flops + cost.recompute_flops + cost.vector_flops
        hardware[part] = hardware.get(part, 0.0) + executed
        if part == "layers" and call.phase == "forward":
            layer_forward += executed
        selective, selective_flops = selective + rerun * kt.time_s, selective_flops + rerun * executed
    waits = {k: max(0.0, h - seconds.get(k, 0.0)) for k, h in host.items()}
    seconds = {k: seconds.get(k, 0.0) + waits.get(k, 0.0) for k in seconds.keys() | waits.keys()}
    out = StageTimes(seconds, attention, family_totals(timed), hardware, layer_forward, error_band(timed, table),
                     selective, selective_flops, sum(waits.values()))
    if len(_TIMES) > 4096:
        _TIMES.clear()
    _TIMES[key] = (prog, table, out)
    return out


