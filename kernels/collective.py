"""Collectives as kernel calls: what each rank sends, never how long it takes.

For a tensor of S bytes on each of p ranks, the bytes each rank sends with the bandwidth-optimal
algorithms (ring or tree; Thakur et al. 2005):
    all_reduce      2*(p-1)/p * S
    all_gather      (p-1)/p * S_out      reduce_scatter  (p-1)/p * S_in
    all_to_all      (p-1)/p * S          send/recv       S
`comm_bytes` holds S (the payload); the network model in the emulator applies the algorithm factor and
the topology, because p and the links are properties of the plan, not of the kernel.
"""

from __future__ import annotations

from typing import Any

from kernels.cost import Cost
from kernels.registry import register
from kernels.tensors import bytes_of, flat_tensors

COLLECTIVE_OPS = {
    "_c10d_functional.all_reduce": "all_reduce",
    "_c10d_functional.all_reduce_": "all_reduce",
    "_c10d_functional.all_gather_into_tensor": "all_gather",
    "_c10d_functional.reduce_scatter_tensor": "reduce_scatter",
    "_c10d_functional.all_to_all_single": "all_to_all",
    "_c10d_functional.broadcast": "broadcast",
    "c10d.allreduce_": "all_reduce",
    "c10d.allgather_": "all_gather",
    "c10d._allgather_base_": "all_gather",
    "c10d.reduce_scatter_": "reduce_scatter",
    "c10d._reduce_scatter_base_": "reduce_scatter",
    "c10d.alltoall_": "all_to_all",
    "c10d.alltoall_base_": "all_to_all",
    "c10d.send": "send_recv",
    "c10d.recv_": "send_recv",
    "c10d.broadcast_": "broadcast",
}


@register("collective", *COLLECTIVE_OPS)
def _collective(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    payload = max((float(t.numel() * t.element_size()) for t in flat_tensors(args)), default=0.0)
    return Cost(comm_bytes=payload, comm_steps=1.0, bytes_read=payload, bytes_written=bytes_of(out) or payload)
