"""Where a plan's ranks sit and where its collectives run: the layout part of a training prediction.

Ranks follow Megatron-LM's order (`plan.py`): tensor parallel fastest, then context, data and pipeline parallel, so
rank r sits on node r // devices_per_node. Each communicator of the rank program (`shard.groups_of`) is described by
the group that holds rank 0: its ranks, the nodes and scale-up domains it spans (`Network.split`, the same
placement the collective times use) and the links it crosses. Each collective the rank issues gets its time per call
(`Network.time`) and per step: micro-batch and layer collectives run once per micro-batch, pipeline sends once per
schedule slot (`schedule.pipeline_slots`), data-parallel gradient collectives once per step, as `step.training_step`
counts them; the step breakdown says how much of each class stays exposed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulator.cluster.network import Group, Network, call_s
from emulator.cluster.plan import Plan
from emulator.cluster.schedule import pipeline_slots
from emulator.cluster.shard import RankProgram
from emulator.hardware import SystemProfile
from kernels import KernelCall

RANK_ORDER = "tp fastest, then cp, dp, pp (Megatron-LM); expert layers fold tp x cp x dp into etp, ep, edp"
GROUP_NAMES = {"tp": "tensor parallel", "cp": "context parallel", "ep": "expert parallel", "dp": "data parallel",
               "edp": "expert data parallel", "pp": "pipeline neighbours"}


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupPlacement:
    """One communicator: the group holding rank 0, and where its members sit."""

    name: str  # tp | cp | ep | dp | edp | pp
    size: int
    stride: int  # ranks between consecutive members: the group holding rank 0 is 0, stride, ..., (size-1) stride
    per_domain: int  # members in one scale-up domain
    domains: int  # scale-up domains spanned
    nodes: int  # nodes spanned
    link: str  # scale-up | scale-out | scale-up + scale-out

    @property
    def ranks(self) -> str:
        """The ranks of the group holding rank 0, e.g. "0-7" or "0, 8, ..., 56"."""
        last = (self.size - 1) * self.stride
        if self.stride == 1:
            return f"0-{last}"
        shown = [str(i * self.stride) for i in range(min(self.size, 3))]
        return ", ".join(shown + (["...", str(last)] if self.size > 3 else []))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "stride": self.stride, "ranks": self.ranks,
                "per_domain": self.per_domain, "domains": self.domains, "nodes": self.nodes, "link": self.link}


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectiveTiming:
    """One collective a rank issues, its predicted time per call and per step (hidden or exposed)."""

    group: str
    op: str
    phase: str  # forward | backward | optimizer
    payload_bytes: float  # per rank and call
    calls_per_step: int
    time_per_call_s: float
    link: str

    @property
    def total_s(self) -> float:
        return self.calls_per_step * self.time_per_call_s

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "op": self.op, "phase": self.phase, "payload_bytes": self.payload_bytes,
                "calls_per_step": self.calls_per_step, "time_per_call_s": self.time_per_call_s,
                "total_s": self.total_s, "link": self.link}


@dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """The plan on its system: nodes, communicators and the collectives' times (`--json` `layout`)."""

    system: str
    num_ranks: int
    devices_per_node: int
    domain_size: int  # devices per scale-up domain
    scale_up: str  # the scale-up topology (switch | mesh | pcie)
    scale_out: str  # the scale-out fabric, as the system profile names it
    groups: tuple[GroupPlacement, ...]
    collectives: tuple[CollectiveTiming, ...]
    source: str  # where the collective times come from

    @property
    def num_nodes(self) -> int:
        return -(-self.num_ranks // self.devices_per_node)

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "num_ranks": self.num_ranks, "num_nodes": self.num_nodes,
                "devices_per_node": self.devices_per_node, "domain_size": self.domain_size,
                "scale_up": self.scale_up, "scale_out": self.scale_out, "rank_order": RANK_ORDER,
                "groups": [g.as_dict() for g in self.groups],
                "collectives": [c.as_dict() for c in self.collectives], "collective_time_source": self.source}


def group_of(call: KernelCall) -> str:
    """The communicator a collective of the rank program runs on."""
    return str(dict(call.params)["group"])


def calls_per_step(call: KernelCall, plan: Plan) -> int:
    """How often a rank issues `call` in one step (see the module docstring)."""
    if group_of(call) == "pp":
        return call.count * pipeline_slots(plan.pp, plan.num_microbatches)
    if call.phase == "optimizer":
        return call.count
    return call.count * plan.num_microbatches


def _link(per_domain: int, domains: int) -> str:
    if domains <= 1:
        return "scale-up"
    return "scale-up + scale-out" if per_domain > 1 else "scale-out"


def placement(name: str, group: Group, net: Network, devices_per_node: int) -> GroupPlacement:
    """Where the group holding rank 0 sits."""
    per_domain, domains = net.split(group)
    nodes = len({i * group.stride // devices_per_node for i in range(group.size)})
    return GroupPlacement(name=name, size=group.size, stride=group.stride, per_domain=per_domain, domains=domains,
                          nodes=nodes,
                          link=_link(per_domain, domains))


def plan_layout(prog: RankProgram, net: Network, system: SystemProfile) -> Layout:
    """The layout of a rank program's plan on `system` (module docstring)."""
    plan = prog.plan
    used = {group_of(c) for c in prog.collectives}  # a dense model's edp group carries nothing
    groups = {name: placement(name, g, net, system.devices_per_node) for name, g in prog.groups.items()
              if g.size > 1 and name in used}
    timings = []
    for c in prog.collectives:
        group = group_of(c)
        g = prog.groups[group]
        per_domain, domains = net.split(g)
        timings.append(CollectiveTiming(group=group, op=c.op, phase=c.phase, payload_bytes=c.cost.comm_bytes,
                                        calls_per_step=calls_per_step(c, plan),
                                        time_per_call_s=call_s(net, c, g),
                                        link=_link(per_domain, domains)))
    return Layout(system=system.name, num_ranks=plan.num_devices, devices_per_node=system.devices_per_node,
                  domain_size=net.domain_size, scale_up=system.scale_up.topology, scale_out=system.scale_out.topology,
                  groups=tuple(groups.values()), collectives=tuple(timings),
                  source=f"network model of {system.name} (emulator/cluster/network.py; efficiency: "
                         f"{net.curve.source})")


__all__ = ["RANK_ORDER", "CollectiveTiming", "GroupPlacement", "Layout", "calls_per_step", "group_of", "placement",
           "plan_layout"]
