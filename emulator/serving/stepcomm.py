"""The collectives of one serving iteration: tensor-parallel all-reduces (the engine's one-shot and two-shot kernels
for small and mid-size messages), each waiting for the slowest rank, pipeline hand-offs, and the
attention-data-parallel MoE gathers."""

from __future__ import annotations

from emulator.cluster.network import Group, Network
from emulator.engine.memory import INFERENCE_ACTIVATION_BYTES
from emulator.hardware import SystemProfile
from emulator.stats import expected_max_normal
from emulator.workloads.config import TransformerConfig


def all_reduce_s(net: Network, payload: float, tp: int, one_shot_bytes: float, two_shot_bytes: float = 0.0,
                 link_share: float = 1.0) -> float:
    """An iteration's tensor-parallel all-reduce inside one scale-up domain as the engine runs it: its one-shot
    kernel up to `one_shot_bytes` (every rank reads its peers' copies in one step: one hop, (tp - 1) payloads over
    its links), its two-shot kernel up to `two_shot_bytes` (a reduce-scatter then an all-gather over the same
    links: two hops, 2 (tp - 1) / tp payloads), NCCL's ring above them or across domains (and wherever the ring is
    faster: the engines pick their kernel by size). The engine's kernels move their bytes at `link_share` of the
    links' bandwidth."""
    if tp > net.domain_size or payload > max(one_shot_bytes, two_shot_bytes):
        return net.time("all_reduce", payload, Group(tp))
    rate = net.scale_up_bytes_per_s * link_share
    if payload <= one_shot_bytes:
        return net.scale_up_latency_s + (tp - 1) * payload / rate
    return min(net.time("all_reduce", payload, Group(tp)),
               2 * net.scale_up_latency_s + 2 * (tp - 1) / tp * payload / rate)


def comm_s(model: TransformerConfig, system: SystemProfile | None, tp: int, pp: int, n: float,
           one_shot_bytes: float = 0.0, skew_s: float = 0.0, two_shot_bytes: float = 0.0,
           link_share: float = 1.0) -> float:
    """Collectives of one iteration of n tokens: TP all-reduces, each also waiting for the slowest of its ranks
    (`comm.rank_skew_s`: skew_s x E[max of tp normals]), and PP hand-offs. Experts spread over the tensor-parallel
    ranks (ep) move no tokens: every rank holds the whole batch after attention's all-reduce and the MoE block's
    all-reduce sums the experts' outputs (with attention data parallelism the ranks gather tokens instead:
    `attention_dp_comm_s`)."""
    if tp * pp == 1 or system is None:
        return 0.0
    net = Network.of(system)
    payload = n * model.hidden_size * INFERENCE_ACTIVATION_BYTES
    reduce_s = (all_reduce_s(net, payload, tp, one_shot_bytes, two_shot_bytes, link_share)
                + skew_s * expected_max_normal(tp))
    t = 2 * model.num_layers * reduce_s if tp > 1 else 0.0
    if pp > 1:
        t += (pp - 1) * net.time("send_recv", payload / tp, Group(2, stride=tp))
    return t


def attention_dp_comm_s(model: TransformerConfig, system: SystemProfile | None, ranks: int, n: float,
                        skew_s: float = 0.0) -> float:
    """Collectives of one attention-data-parallel iteration of n tokens over `ranks` ranks: per MoE layer an
    all-gather of every rank's hidden states before the experts and a reduce-scatter of their output after them,
    each waiting for the slowest rank; attention and dense layers run on each rank's own tokens and move
    nothing."""
    if ranks <= 1 or system is None or not model.num_moe_layers:
        return 0.0
    net = Network.of(system)
    gathered = n * model.hidden_size * INFERENCE_ACTIVATION_BYTES  # [n, hidden] on every rank after the gather
    each = net.time("all_gather", gathered, Group(ranks)) + net.time("reduce_scatter", gathered, Group(ranks))
    return model.num_moe_layers * (each + 2 * skew_s * expected_max_normal(ranks))


__all__ = ["all_reduce_s", "attention_dp_comm_s", "comm_s"]
