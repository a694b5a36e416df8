"""The plan's layout in the text of a training prediction: ranks on nodes, communicators on links, and each
collective's predicted time (`cluster.layout.Layout`)."""

from __future__ import annotations

from emulator.cluster.layout import GROUP_NAMES, RANK_ORDER, GroupPlacement, Layout
from emulator.units import fmt_bytes, fmt_seconds


def _where(g: GroupPlacement) -> str:
    if g.domains <= 1:
        return "within one node" if g.nodes <= 1 else f"within one scale-up domain over {g.nodes} nodes"
    if g.per_domain > 1:
        return f"{g.per_domain} per scale-up domain over {g.domains} domains, {g.nodes} nodes"
    return f"across {g.domains} scale-up domains, {g.nodes} nodes"


def layout_lines(layout: Layout | None, pp: int = 1) -> list[str]:
    """Indented lines for the prediction table; none for one rank (nothing to place)."""
    if layout is None or layout.num_ranks <= 1:
        return []
    lines = [f"  layout               {layout.num_ranks} ranks on {layout.num_nodes} node(s) of "
             f"{layout.devices_per_node} devices ({layout.system}: scale-up domains of {layout.domain_size} devices "
             f"({layout.scale_up}), scale-out {layout.scale_out})",
             f"  rank order           {RANK_ORDER}; each group below is the one holding rank 0"]
    if pp > 1:
        lines.append(f"    pp   {pp} pipeline stages, stage s on ranks s x {layout.num_ranks // pp} to "
                     f"(s + 1) x {layout.num_ranks // pp} - 1")
    for g in layout.groups:
        lines.append(f"    {g.name:4s} {GROUP_NAMES[g.name]:20s} {g.size} ranks ({g.ranks}): {_where(g)} [{g.link}]")
    if layout.collectives:
        lines.append(f"  collectives          per step of one rank, hidden or exposed (the step breakdown says how "
                     f"much is exposed); times from the {layout.source}")
    for c in sorted(layout.collectives, key=lambda c: -c.total_s):
        lines.append(f"    {c.group:4s} {c.op:14s} {c.phase:9s} {fmt_bytes(c.payload_bytes)} x {c.calls_per_step}: "
                     f"{fmt_seconds(c.time_per_call_s)} each, {fmt_seconds(c.total_s)} per step [{c.link}]")
    return lines
