"""One predicted training step as a timeline (`emulator predict --trace` on a training scenario).

Each pipeline stage is a process (every rank of a stage runs the same program under the model: tensor-, context-
and data-parallel ranks are symmetric). Its threads are the compute stream and one stream per communicator (tp, cp,
ep, dp, edp, pp). What is drawn, and how it adds up to the predicted step:
- Micro-batch slots. Every forward slot lasts the busiest stage's forward compute plus its share of the exposed
  per-micro-batch communication, every backward slot likewise (the slowest stage sets the pace, `step.py`); the
  shares split the exposed seconds by each direction's collective time. Slots follow 1F1B (warm-up forwards, one
  forward one backward, cool-down backwards; each forward after the previous stage's, each backward after the next
  stage's), which ends after m x (micro-batch) + the pipeline bubble. The interleaved schedule is drawn as the same
  1F1B order packed after a start delay, ending at the same time (its bubble is the model's (pp-1)/v slots).
- Kernels. Inside a slot, one span per kernel signature of the stage (its calls over the stage's layers together,
  `count` in args) in traced order, with the stage's own parts (the embedding on the first stage, the head on the
  last); a recomputing backward replays the forward kernels its policy reruns first. A span for the slot's exposed
  communication follows them.
- Collectives. A slot's collectives run on their group's stream from the slot's start (beside the compute they
  overlap); a pipeline send leaves at the end of a forward (to the next stage) or backward (to the previous one).
  The data-parallel gradient reduction starts with the last backward (bucket by bucket); the parameter all-gather
  of the previous step's update is drawn at the start of the step.
- After the last slot: exposed pipeline send/recv, exposed data-parallel communication and the optimizer, so every
  stage ends at the predicted step time.
"""

from __future__ import annotations

from collections.abc import Iterable

from emulator.cluster.layout import GROUP_NAMES, group_of
from emulator.cluster.network import call_s
from emulator.cluster.recompute import replayed_calls
from emulator.cluster.shard import part_of
from emulator.cluster.step import StepBreakdown, stage_times
from emulator.cluster.training import TrainingSetup
from emulator.engine.roofline import kernel_time
from emulator.engine.timeline import Timeline, TimelineBuilder
from emulator.engine.timing import KernelTiming
from kernels import KernelCall

COMPUTE = "compute"
Schedule = list[list[tuple[str, int, float]]]  # per stage: (F or B, micro-batch, start_s) in order
MAX_KERNEL_SPANS = 200_000  # past this, later slots are drawn without their kernels (the trace says so)
SOURCE = ("emulator training step model (emulator/cluster/step.py): kernel times from the roofline "
          "(emulator/engine/roofline.py), collective times from the network model (emulator/cluster/network.py)")


def one_f_one_b(pp: int, m: int, forward_s: float, backward_s: float) -> Schedule:
    """Per stage, its slots in order as (F or B, micro-batch, start): 1F1B with each forward after the previous
    stage's and each backward after the next stage's."""
    orders = []
    for s in range(pp):
        warm = min(pp - 1 - s, m)
        order = [("F", i) for i in range(warm)]
        for i in range(m - warm):
            order += [("F", warm + i), ("B", i)]
        orders.append(order + [("B", i) for i in range(m - warm, m)])
    done: dict[tuple[str, int, int], float] = {}
    free, pos = [0.0] * pp, [0] * pp
    out: Schedule = [[] for _ in range(pp)]
    while any(pos[s] < len(orders[s]) for s in range(pp)):
        for s in range(pp):
            while pos[s] < len(orders[s]):
                kind, i = orders[s][pos[s]]
                other = s - 1 if kind == "F" else s + 1
                dep = (kind, other, i) if 0 <= other < pp else None
                if dep is not None and dep not in done:
                    break  # 1F1B never waits on itself: the other stage gets there first
                start = max(free[s], done[dep] if dep else 0.0)
                free[s] = done[(kind, s, i)] = start + (forward_s if kind == "F" else backward_s)
                out[s].append((kind, i, start))
                pos[s] += 1
    return out


def _packed(pp: int, m: int, forward_s: float, backward_s: float, bubble_s: float) -> Schedule:
    """The interleaved schedule drawn as 1F1B order back to back after a start delay of s/(pp-1) of the bubble."""
    out = []
    for s in range(pp):
        t = bubble_s * s / max(pp - 1, 1)
        slots = []
        for kind, i, _ in one_f_one_b(pp, m, forward_s, backward_s)[s]:
            slots.append((kind, i, t))
            t += forward_s if kind == "F" else backward_s
        out.append(slots)
    return out


def _kernel_spans(b: TimelineBuilder, process: str, kernels: Iterable[tuple[KernelCall, KernelTiming]], start_s: float,
                  prefix: str = "") -> float:
    t = start_s
    for call, kt in kernels:
        t = b.span(process, COMPUTE, f"{prefix}{call.family} {call.module}".strip(), t, kt.time_s, "kernel",
                   op=call.op, shapes=[list(s) for s in call.shapes], dtype=call.dtype, count=call.count,
                   bound=kt.bound, flops=kt.cost.flops, bytes=kt.cost.bytes)
    return t


class _Stream:
    """One stage's collective streams: each group's spans follow each other."""

    def __init__(self, b: TimelineBuilder, process: str, setup: TrainingSetup) -> None:
        prog = setup.program
        self.b, self.process, self.setup = b, process, setup
        self.threads = {g: f"{g} collectives ({GROUP_NAMES[g]})" for g in dict.fromkeys(
            group_of(c) for c in prog.collectives) if prog.groups[g].size > 1}
        for thread in self.threads.values():
            b.thread(process, thread)
        self.cursor = dict.fromkeys(self.threads, 0.0)

    def add(self, call: KernelCall, at_s: float, what: str = "") -> None:
        group = group_of(call)
        if group in self.threads:
            start = max(at_s, self.cursor[group])
            self.cursor[group] = self.b.span(self.process, self.threads[group], f"{call.op}{what}", start,
                                             collective_s(self.setup, call), "collective", group=group,
                                             phase=call.phase, calls=call.count, payload_bytes=call.cost.comm_bytes)


def collective_s(setup: TrainingSetup, call: KernelCall) -> float:
    """Seconds of all `count` calls of a collective on the setup's network."""
    net = setup.network
    return call.count * call_s(net, call, setup.program.groups[group_of(call)]) if net else 0.0


def training_timeline(setup: TrainingSetup, step: StepBreakdown | None = None, **metadata: object) -> Timeline:
    """The step of `setup` as a timeline (module docstring); `metadata` joins what the trace says about itself."""
    step = step or setup.step()
    prog, plan, precision = setup.program, setup.plan, setup.training.precision
    m, pp = plan.num_microbatches, plan.pp
    timed = [(c, kernel_time(c, setup.device, setup.table, precision)) for c in prog.compute
             if c.family != "view" and c.phase != "optimizer"]
    st = stage_times(prog, setup.device, setup.table, precision)
    layers_f = st.get("layers", "forward")
    again = replayed_calls(prog.compute, plan.recompute, prog.selective, precision)
    rerun = {id(c) for c, a in zip(prog.compute, again, strict=True) if a}  # what the backward replays first
    ends: tuple[str, ...] = ("embed", "head")
    if pp > 1:  # the busiest stage holds the larger of the two ends (`training_step`)
        ends = (max(ends, key=lambda p: st.get(p, "forward") + st.get(p, "backward")),)
    compute = {"forward": layers_f + sum(st.get(p, "forward") for p in ends),
               "backward": st.get("layers", "backward") + st.recompute_s(plan.recompute) +
               sum(st.get(p, "backward") for p in ends)}
    per_mb = [c for c in prog.collectives if group_of(c) != "pp" and c.phase in compute]
    comm = {phase: sum(collective_s(setup, c) for c in per_mb if c.phase == phase) for phase in compute}
    exposed = max(step.microbatch_s - sum(compute.values()), 0.0)
    share = comm["forward"] / sum(comm.values()) if sum(comm.values()) > 0 else 0.5
    length = {"forward": compute["forward"] + exposed * share, "backward": compute["backward"] + exposed * (1 - share)}
    if plan.virtual_stages > 1:
        schedule = _packed(pp, m, length["forward"], length["backward"], step.bubble_s)
    else:
        schedule = one_f_one_b(pp, m, length["forward"], length["backward"])
    per_stage = plan.num_devices // pp
    step_calls = [c for c in prog.collectives if c.phase == "optimizer"]
    b = TimelineBuilder()
    budget, cut = MAX_KERNEL_SPANS, False
    for s in range(pp):
        process = f"pipeline stage {s} (ranks {s * per_stage}-{(s + 1) * per_stage - 1})"
        b.thread(process, COMPUTE)
        comms = _Stream(b, process, setup)
        parts = {"layers"} | ({"embed"} if s == 0 else set()) | ({"head"} if s == pp - 1 else set())
        mine = [(c, kt) for c, kt in timed if part_of(c) in parts]
        for call in step_calls:
            if call.op == "all_gather":
                comms.add(call, 0.0, " (parameters of the previous step's update)")
        last_backward = 0.0
        for kind, i, start in schedule[s]:
            phase = "forward" if kind == "F" else "backward"
            b.span(process, COMPUTE, f"{phase} micro-batch {i}", start, length[phase], "micro-batch", microbatch=i)
            if budget > 0:
                t = start
                if kind == "B" and rerun:
                    replay = ((c, kt) for c, kt in mine if id(c) in rerun)
                    t = _kernel_spans(b, process, replay, t, "recompute: ")
                _kernel_spans(b, process, ((c, kt) for c, kt in mine if c.phase == phase), t)
                budget -= len(mine)
            else:
                cut = True
            if length[phase] > compute[phase]:
                b.span(process, COMPUTE, "exposed communication", start + compute[phase],
                       length[phase] - compute[phase], "wait")
            for call in per_mb:
                if call.phase == phase:
                    comms.add(call, start)
            neighbour = s + 1 if kind == "F" else s - 1
            if 0 <= neighbour < pp:
                for call in prog.collectives:
                    if group_of(call) == "pp" and call.phase == phase:
                        what = "activations" if kind == "F" else "gradients"
                        comms.add(call, start + length[phase], f" {what} to stage {neighbour}")
            last_backward = start if kind == "B" else last_backward
        for call in step_calls:
            if call.op != "all_gather":
                comms.add(call, last_backward, " (gradients, during the last backward)")
        t = m * step.microbatch_s + step.bubble_s
        for name, seconds in (("exposed pipeline send/recv", step.pipeline_p2p_s),
                              ("exposed data-parallel communication", step.data_parallel_exposed_s)):
            if seconds > 0:
                t = b.span(process, COMPUTE, name, t, seconds, "wait")
        b.span(process, COMPUTE, "optimizer (fused AdamW)", t, step.optimizer_s, "kernel",
               count=step.optimizer.count, bound=step.optimizer.bound)
    notes = ["later micro-batches drawn without their kernels (too many spans)"] if cut else []
    return b.build(source=SOURCE, step_time_s=step.step_s, plan=plan.as_dict(), notes=notes, **metadata)


__all__ = ["one_f_one_b", "training_timeline"]
