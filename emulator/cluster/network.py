"""Collectives on a system's topology: how long all-reduce, all-gather, reduce-scatter, all-to-all and
send/recv take for a group of ranks placed on scale-up domains and a scale-out fabric.

Conventions (nccl-tests' PERFORMANCE.md): for a payload S (bytes per rank) over p ranks the bus bytes each rank
moves are
    all_reduce 2(p-1)/p * S     all_gather / reduce_scatter (p-1)/p * S     all_to_all (p-1)/p * S     send_recv S
and t = bus bytes / bus bandwidth. Bus bandwidth = line rate per direction x efficiency(message size).

Efficiency by message size is data: the published NCCL all-reduce bus-bandwidth sweeps in
`emulator/data/published_kernels.yaml`, divided by the device's scale-up line rate and interpolated in log
message size (the device's own sweep when one is shipped, else the mean of all shipped sweeps). The measured
sweeps already contain the latency of the measured 8-GPU group, so the hop latency is a floor, not an addend:
    t = max(bus bytes / (line rate * efficiency(S)), steps * hop latency)
with ring steps (p-1) per pass, or 2*ceil(log2 p) for a tree over more than one domain (NCCL picks trees at
scale).

Hierarchy: a group of p ranks with stride `stride` (ranks between members) has `local` members per scale-up
domain and p/local domains. Two-level algorithms (NCCL's, and Megatron's for data parallel at scale):
    reduce_scatter / all_gather: intra-domain on S over `local`, then inter-domain on S/local over the domains
    all_reduce: reduce-scatter + all-reduce + all-gather, i.e. twice the two phases above
    all_to_all: the intra- and inter-domain shares run concurrently; the slower sets the time
    dispatch: an expert-parallel token dispatch (or combine) of `fanout` copies per token (top-k routing, payload
      = all copies) through a deduplicating dispatcher (DeepEP, HybridEP: Megatron-Core's flex dispatcher): a
      token crosses the fabric once per remote domain that hosts one of its experts and reaches each target rank
      once over the scale-up links (forwarded there from the rank its copy landed on). With experts spread evenly
      and routing uniform, of d domains a token reaches d (1 - (1 - 1/d)^k) and of p ranks p (1 - (1 - 1/p)^k):
      the fabric carries (d - 1)(1 - (1 - 1/d)^k) copies per token where the all-to-all carries k (d - 1)/d, the
      scale-up links the distinct target ranks x (local - 1)/local. The two shares run concurrently.
    send_recv: over the scale-up link when both ranks share a domain, else over the fabric.
Inter-domain bandwidth per rank is the node's NIC bandwidth shared by its devices (a rail-optimised fabric gives
each GPU its NIC), divided by the fabric's oversubscription. The same relative efficiency curve is applied to
the fabric, rescaled so that its large-message value is the measured per-NIC efficiency (the shipped
`busbw_per_nic` reports: 24 of 25 GB/s on HDR, 47 of 50 on NDR) — the curve's shape is an assumption until
scale-out sweeps are shipped or measured.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from emulator.engine import diskcache
from emulator.hardware import DeviceProfile, SystemProfile, load_device
from emulator.published import DATA, load_cases, profile_name
from kernels import KernelCall

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "dispatch", "send_recv")
_SIZE = re.compile(r"^\s*([0-9.]+)\s*([KMG]?)B?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}  # nccl-tests labels sizes in binary units


def _size_bytes(label: object) -> float:
    if isinstance(label, (int, float)):
        return float(label)
    m = _SIZE.match(str(label))
    if not m:
        raise ValueError(f"unreadable message size {label!r}")
    return float(m.group(1)) * _UNITS[m.group(2).upper()]


Sweeps = Mapping[str, tuple[tuple[float, float], ...]]
NicRatios = tuple[tuple[str, float], ...]


@functools.lru_cache(maxsize=1)
def _published() -> tuple[Sweeps, NicRatios]:
    """The NCCL sweeps and per-NIC ratios of the shipped kernel results, kept on disk (`diskcache`) by the file's
    content: parsing its YAML costs a serving prediction 0.1-0.2 s in every process, loading the two tables 1 ms."""
    path = DATA / "published_kernels.yaml"
    digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    return diskcache.cached("published-collectives", (path.name, digest), lambda: (_read_sweeps(), _read_nic_ratios()))


def _read_sweeps() -> Sweeps:
    """{device profile: ((message bytes, all-reduce bus bytes/s), ...)} from the shipped NCCL sweeps."""
    out: dict[str, list[tuple[float, float]]] = {}
    for case in load_cases("kernels"):
        if case.get("metric", {}).get("name") != "allreduce_bus_bandwidth":
            continue
        device = profile_name(case["hardware"]["device"])
        count = case["hardware"].get("count")
        if device is None or not isinstance(count, int) or count > 8:  # single-node sweeps only
            continue
        try:
            size = _size_bytes(case["config"].get("message_size"))
        except ValueError:  # a peak over a sweep, not a point of one
            continue
        out.setdefault(device, []).append((size, float(case["value"]) * 1e9))
    return {d: tuple(sorted(points)) for d, points in out.items()}


def _read_nic_ratios() -> NicRatios:
    """(device class, measured per-NIC bus bandwidth / NIC line rate) from the shipped inter-node reports."""
    out = []
    for case in load_cases("kernels"):
        if case.get("metric", {}).get("name") != "busbw_per_nic":
            continue
        network = str(case["hardware"].get("network", ""))
        m = re.search(r"([0-9]+)\s*Gb", network)
        if m:
            out.append((str(case["hardware"].get("device_class", "")), float(case["value"]) * 8 / float(m.group(1))))
    return tuple(out)


def scale_out_ratio(device: DeviceProfile) -> float:
    """Fraction of NIC line rate NCCL reaches on large messages between nodes (the device's class, else the mean)."""
    ratios = _published()[1]
    name = device.display_name.replace("-", " ").upper()
    mine = [r for cls, r in ratios if cls and cls.replace("-", " ").upper() in name]
    pool = mine or [r for _, r in ratios]
    return min(sum(pool) / len(pool), 1.0) if pool else 1.0


@dataclass(frozen=True, slots=True)
class EfficiencyCurve:
    """Fraction of line rate a collective reaches, by message size (log-linear between measured points)."""

    sizes: tuple[float, ...]  # bytes, ascending
    values: tuple[float, ...]  # fractions of line rate, capped at 1 (ring bound)
    source: str

    def __call__(self, size_bytes: float) -> float:
        if size_bytes <= self.sizes[0]:
            # Below the smallest measured size bandwidth falls off linearly with size (latency bound).
            return max(self.values[0] * size_bytes / self.sizes[0], 1e-6)
        if size_bytes >= self.sizes[-1]:
            return self.values[-1]
        i = bisect.bisect_right(self.sizes, size_bytes)
        x0, x1 = math.log(self.sizes[i - 1]), math.log(self.sizes[i])
        w = (math.log(size_bytes) - x0) / (x1 - x0)
        return self.values[i - 1] * (1 - w) + self.values[i] * w


@functools.lru_cache(maxsize=64)
def efficiency_curve(device: DeviceProfile) -> EfficiencyCurve:
    """The device's NCCL efficiency curve (its own published sweep, else the mean of the shipped sweeps)."""
    sweeps = _published()[0]

    def relative(name: str) -> dict[float, float]:
        line = load_device(name).links.scale_up_bytes_per_s or 1.0
        return {size: min(bw / line, 1.0) for size, bw in sweeps[name]}

    if device.name in sweeps:
        rel = relative(device.name)
        source = f"published NCCL all-reduce sweep on {device.name} (published_kernels.yaml)"
    else:
        curves = [relative(name) for name in sorted(sweeps)]
        common = sorted(set.intersection(*(set(c) for c in curves)))
        rel = {s: sum(c[s] for c in curves) / len(curves) for s in common}
        source = f"mean of published NCCL all-reduce sweeps on {', '.join(sorted(sweeps))} (published_kernels.yaml)"
    points = tuple(sorted(rel))
    return EfficiencyCurve(points, tuple(rel[s] for s in points), source)


@dataclass(frozen=True, slots=True)
class Group:
    """A communicator: `size` ranks, `stride` ranks apart in the global rank order."""

    size: int
    stride: int = 1


@dataclass(frozen=True, slots=True)
class Network:
    """Bandwidths and latencies of one system, per rank and direction."""

    domain_size: int
    scale_up_bytes_per_s: float
    scale_up_latency_s: float
    scale_out_bytes_per_s: float  # per rank: NICs x NIC rate / devices per node / oversubscription
    scale_out_latency_s: float
    curve: EfficiencyCurve
    name: str
    scale_out_ratio: float = 1.0  # large-message NIC efficiency over the curve's large-message efficiency

    @classmethod
    def of(cls, system: SystemProfile) -> Network:
        up, out = system.scale_up, system.scale_out
        curve = efficiency_curve(system.device)
        per_rank = out.nics_per_node * out.nic_bandwidth_bytes_per_s / system.devices_per_node / out.oversubscription
        return cls(domain_size=up.domain_size, scale_up_bytes_per_s=up.bandwidth_bytes_per_s,
                   scale_up_latency_s=up.latency_s, scale_out_bytes_per_s=per_rank, scale_out_latency_s=out.latency_s,
                   curve=curve, name=system.name, scale_out_ratio=scale_out_ratio(system.device) / curve.values[-1])

    def split(self, group: Group) -> tuple[int, int]:
        """(members per scale-up domain, domains spanned) for a group placed in rank order."""
        if group.size <= 1:
            return 1, 1
        per_domain = max(1, min(group.size, self.domain_size // max(group.stride, 1)))
        while group.size % per_domain:
            per_domain -= 1
        return per_domain, group.size // per_domain

    def _phase(self, bus_bytes: float, message: float, p: int, bandwidth: float, latency: float,
               tree: bool) -> float:
        if p <= 1 or bus_bytes <= 0:
            return 0.0
        steps = 2 * math.ceil(math.log2(p)) if tree else p - 1
        return max(bus_bytes / (bandwidth * self.curve(message)), steps * latency)

    def time(self, op: str, size_bytes: float, group: Group, fanout: int = 1) -> float:
        """Seconds one collective of `size_bytes` per rank (the payload) takes over `group`; `fanout`: a dispatch's
        copies per token (its top-k), which the payload counts."""
        if op not in OPS:
            raise ValueError(f"unknown collective {op!r}; use one of {', '.join(OPS)}")
        p = group.size
        if p <= 1 or size_bytes <= 0:
            return 0.0
        local, domains = self.split(group)
        up, lat_up = self.scale_up_bytes_per_s, self.scale_up_latency_s
        out, lat_out = self.scale_out_bytes_per_s, self.scale_out_latency_s
        tree = domains > 1
        if op == "send_recv":
            same = group.stride * (p - 1) < self.domain_size and local == p
            bw, lat = (up, lat_up) if same else (out * self.scale_out_ratio, lat_out)
            return max(size_bytes / (bw * self.curve(size_bytes)), lat)
        if op == "all_to_all":
            intra = self._phase((local - 1) / p * size_bytes, size_bytes, local, up, lat_up, False)
            inter = self._phase((p - local) / p * size_bytes, size_bytes, domains, out * self.scale_out_ratio,
                                lat_out, False)
            return max(intra, inter)
        if op == "dispatch":
            k, copy = max(fanout, 1), size_bytes / max(fanout, 1)
            remote = (domains - 1) * (1.0 - (1.0 - 1.0 / domains) ** k)
            targets = p * (1.0 - (1.0 - 1.0 / p) ** k)
            intra = self._phase(copy * targets * (local - 1) / local, size_bytes, local, up, lat_up, False)
            inter = self._phase(copy * remote, size_bytes, domains, out * self.scale_out_ratio, lat_out, False)
            return max(intra, inter)
        passes = 2 if op == "all_reduce" else 1
        intra = self._phase(passes * (local - 1) / local * size_bytes, size_bytes, local, up, lat_up, False)
        shard = size_bytes / local
        inter = self._phase(passes * (domains - 1) / domains * shard, shard, domains, out * self.scale_out_ratio,
                            lat_out, tree)
        return intra + inter

    def bus_bandwidth(self, op: str, size_bytes: float, group: Group) -> float:
        """The nccl-tests bus bandwidth this model predicts (bytes/s), for comparison with measurements."""
        p = group.size
        factor = {"all_reduce": 2 * (p - 1) / p, "send_recv": 1.0}.get(op, (p - 1) / p)
        t = self.time(op, size_bytes, group)
        return factor * size_bytes / t if t > 0 else 0.0


def fanout_of(call: KernelCall) -> int:
    """Copies per token a collective call carries (a dispatch's top-k; 1 for every other collective)."""
    fanout = dict(call.params).get("fanout", 1)
    return fanout if isinstance(fanout, int) else 1


def call_s(net: Network, call: KernelCall, group: Group) -> float:
    """Seconds one call of a rank program's collective takes over `group`."""
    return net.time(call.op, call.cost.comm_bytes, group, fanout_of(call))
