"""Network: collective times on a topology reproduce the published NCCL curves and respect the hierarchy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.cluster.network import Group, Network, efficiency_curve
from emulator.hardware import load_device, load_system
from emulator.published import load_cases

A100 = Network.of(load_system("hgx-a100"))
NVL72 = Network.of(load_system("gb200-nvl72"))


def _a100_sweep() -> list[tuple[str, float]]:
    return [(c["config"]["message_size"], c["value"]) for c in load_cases("kernels")
            if c["id"].startswith("kernel-nccl-allreduce-8gpu-a100")]


def test_eight_gpu_all_reduce_reproduces_the_published_sweep() -> None:
    """8-GPU all-reduce bus bandwidth on HGX A100 equals the published NCCL sweep at its measured sizes."""
    sizes = {"1M": 2**20, "16M": 16 * 2**20, "134M": 134 * 2**20, "1G": 2**30, "8G": 8 * 2**30}
    sweep = _a100_sweep()
    assert len(sweep) == 5
    for label, busbw in sweep:
        ours = A100.bus_bandwidth("all_reduce", sizes[label], Group(8))
        assert ours / 1e9 == pytest.approx(busbw, rel=0.02)


def test_curve_falls_back_to_the_mean_for_unmeasured_devices() -> None:
    """A device without a published sweep uses the mean of the shipped ones."""
    assert "mean" in efficiency_curve(load_device("mi300x")).source
    assert "a100-sxm" in efficiency_curve(load_device("a100-sxm")).source


def test_blackwell_takes_its_own_measured_sweep() -> None:
    """B200 (8 GPUs) and GB200 (4 GPUs) all-reduce on their own published NCCL sweeps (AIConfigurator's nccl-tests
    runs), which reach a smaller share of NVLink 5's line rate than Hopper's of NVLink 4 (0.66 against 0.92 at
    128-134 MiB): the 8-GPU B200 all-reduce reproduces its sweep."""
    sizes = {"1M": 2**20, "16M": 16 * 2**20, "128M": 128 * 2**20, "512M": 512 * 2**20}
    b200 = Network.of(load_system("hgx-b200"))
    sweep = [(c["config"]["message_size"], c["value"]) for c in load_cases("kernels")
             if c["id"].startswith("kernel-nccl-allreduce-8gpu-b200")]
    assert len(sweep) == 4 and "b200" in b200.curve.source and "gb200" in NVL72.curve.source
    for label, busbw in sweep:
        assert b200.bus_bandwidth("all_reduce", sizes[label], Group(8)) / 1e9 == pytest.approx(busbw, rel=0.02)
    assert b200.curve(128 * 2**20) < efficiency_curve(load_device("h200-sxm"))(134 * 2**20) - 0.2
    for system in ("hgx-b300", "gb300-nvl72"):  # Blackwell Ultra: their own sweeps (8 and 4 GPUs) as well
        net = Network.of(load_system(system))
        assert net.curve.source.startswith(f"published NCCL all-reduce sweep on {load_system(system).device.name}")


def test_groups_spanning_nodes_use_the_fabric() -> None:
    """A dp group with stride 8 on HGX has one rank per node: slower than the same group inside a node."""
    inside = A100.time("all_reduce", 256e6, Group(8, 1))
    across = A100.time("all_reduce", 256e6, Group(8, 8))
    assert A100.split(Group(8, 8)) == (1, 8)
    assert across > 5 * inside


def test_nvl72_keeps_72_ranks_in_one_domain() -> None:
    """On NVL72 a 64-rank group stays on NVLink; on HGX it spans 8 nodes."""
    assert NVL72.split(Group(64)) == (64, 1)
    assert A100.split(Group(64)) == (8, 8)


def test_latency_bounds_tiny_messages() -> None:
    """A tiny message over many ranks costs at least the hop latencies."""
    t = A100.time("all_reduce", 8, Group(1024, 8))
    assert t >= 2 * 10 * load_system("hgx-a100").scale_out.latency_s


def test_oversubscription_slows_the_fabric() -> None:
    """Halving the per-rank fabric bandwidth (oversubscription 2) lengthens inter-node collectives."""
    import dataclasses

    slow = dataclasses.replace(A100, scale_out_bytes_per_s=A100.scale_out_bytes_per_s / 2)
    assert slow.time("reduce_scatter", 1e9, Group(16, 8)) > A100.time("reduce_scatter", 1e9, Group(16, 8))


@given(st.sampled_from(["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "dispatch", "send_recv"]),
       st.floats(1e3, 1e10), st.sampled_from([2, 4, 8, 16, 64, 512]), st.sampled_from([1, 2, 8, 64]))
def test_time_grows_with_message_size(op: str, size: float, p: int, stride: int) -> None:
    """Collective time is positive and never falls as the message grows."""
    g = Group(p, stride)
    t1, t2 = A100.time(op, size, g), A100.time(op, size * 2, g)
    assert 0 < t1 <= t2 * (1 + 1e-9)


def test_all_reduce_costs_reduce_scatter_plus_all_gather() -> None:
    """Inside a node an all-reduce moves twice a reduce-scatter's bytes."""
    g = Group(8)
    assert A100.time("all_reduce", 1e9, g) == pytest.approx(2 * A100.time("reduce_scatter", 1e9, g))


def test_a_deduplicating_dispatch_crosses_the_fabric_once_per_remote_domain() -> None:
    """DeepEP-style dispatch of top-8 tokens over 64 ranks on 8 nodes: a token crosses the fabric to the
    7 (1 - (7/8)^8) = 4.59 remote nodes it reaches on average, where the all-to-all sends 8 x 56/64 = 7 copies;
    fabric-bound, the time falls by that ratio. With one copy per token it is the all-to-all's fabric share."""
    h100 = Network.of(load_system("hgx-h100"))
    g, payload = Group(64, 1), 8 * 64e6
    a2a, flex = h100.time("all_to_all", payload, g), h100.time("dispatch", payload, g, fanout=8)
    assert flex / a2a == pytest.approx(7 * (1 - (7 / 8) ** 8) / 7, rel=1e-9)
    assert h100.time("dispatch", 64e6, g, fanout=1) == pytest.approx(h100.time("all_to_all", 64e6, g))


def test_a_dispatch_inside_one_domain_sends_each_target_rank_one_copy() -> None:
    """Inside one NVLink domain a token reaches 8 (1 - (7/8)^8) = 5.25 distinct ranks of 8, not 8 copies: the
    dispatch moves that share of the all-to-all's bytes."""
    g = Group(8)
    a2a, flex = A100.time("all_to_all", 8 * 64e6, g), A100.time("dispatch", 8 * 64e6, g, fanout=8)
    assert flex / a2a == pytest.approx(8 * (1 - (7 / 8) ** 8) / 8, rel=1e-9)
