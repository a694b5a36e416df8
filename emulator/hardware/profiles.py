"""Hardware profiles: devices, systems and sites, loaded from sourced YAML files under `hw_profiles/`.

Every number is SI (FLOP/s, bytes, bytes/s, W, s, USD), dense (no 2:4 sparsity) and carries a source in the
file's `sources:` mapping, keyed by the field's dotted path (`matrix_flops_per_s.bf16`,
`memory.hbm3.bandwidth_bytes_per_s`). The loader refuses unknown keys, missing keys, non-positive numbers,
unknown dtypes and unsourced numbers with an `EmulatorError` naming the file, the field and the fix. The
schema is documented in `hw_profiles/README.md`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

from emulator.errors import EmulatorError, nearest
from emulator.hardware.checks import _check_profile, _choice, _fail, _FieldError, _freeze
from emulator.precision import LOW_PRECISIONS
from emulator.units import GB, GiB

DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp4", "int8")
# Integer and boolean tensors of routing, masks and indices: their math runs on the vector units.
INDEX_DTYPES = ("int64", "int32", "int16", "uint8", "bool")
DEVICE_KINDS = ("gpu", "asic")
MEMORY_KINDS = ("cache", "sram", "dram")
SCALE_UP_TOPOLOGIES = ("switch", "mesh", "pcie")


# --- profiles -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryTier:
    """One memory level; a cache may leave its bandwidth unknown, a scratchpad or DRAM may not."""

    name: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float | None
    kind: str  # cache (hardware-managed) | sram (software-managed scratchpad) | dram
    main: bool = False

    def __post_init__(self) -> None:
        _choice(self.kind, MEMORY_KINDS, "kind")
        if self.bandwidth_bytes_per_s is None and (self.kind != "cache" or self.main):
            _fail("bandwidth_bytes_per_s", f"is required for a {self.kind} tier. Fix: give a sourced bandwidth.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Links:
    """Per-device link rates, per direction."""

    scale_up_bytes_per_s: float | None  # NVLink / xGMI; None when the chip has no scale-up link
    host_bytes_per_s: float  # PCIe or C2C to the host CPU


@dataclass(frozen=True, slots=True, kw_only=True)
class Power:
    """Device board power at full load (TDP) and idle, and the lowest power limit the board accepts."""

    tdp_w: float
    idle_w: float
    min_limit_w: float | None = None  # lowest settable power limit (nvidia-smi -pl, amd-smi); None: unpublished

    def __post_init__(self) -> None:
        if self.idle_w > self.tdp_w:
            _fail("idle_w", f"{self.idle_w} W exceeds tdp_w {self.tdp_w} W. Fix: idle power must be at most TDP.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """Purchase price and on-demand rental price of one device (market estimates are dated in sources)."""

    capex_usd: float
    rental_usd_per_hour: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Achievable:
    """What the chip reaches in published kernel benchmarks at its TDP: its own evidence, the ceiling a measured
    sibling's efficiencies are scaled to when it has no calibration (`emulator.engine.transfer`)."""

    matrix_flops_per_s: Mapping[str, float]  # best dense matmul rate found per dtype (MAMF-style shape search)
    memory_bytes_per_s: float | None = None  # STREAM-style copy of main memory: bytes read + written per second
    # Best 16-bit fused causal attention forward (FlashAttention-style) of a measured grid, in model FLOP/s:
    # attention runs on the matrix units but also on the exponential units, which chips scale differently.
    attention_flops_per_s: float | None = None
    # Best weight-streaming rate of a one-row GEMM (m = 1) per weight dtype over a shape sweep, in bytes of weights
    # (block scales included) per second: the rate decode's GEMMs approach, which differs by dtype and chip
    gemm_stream_bytes_per_s: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _freeze(self, "matrix_flops_per_s", "gemm_stream_bytes_per_s")

@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceProfile:
    """One accelerator chip: peak dense FLOP/s per dtype and unit, memory tiers, links, power, price."""

    name: str
    display_name: str
    vendor: str
    family: str  # devices of one family share calibrations by transfer
    kind: str  # gpu | asic
    num_compute_units: int  # SMs / CUs / PEs
    matrix_flops_per_s: Mapping[str, float]  # tensor cores / matrix engine, per dtype
    vector_flops_per_s: Mapping[str, float]  # non-matrix units, per dtype; always has fp32
    memory: tuple[MemoryTier, ...]  # fastest/smallest first; exactly one main tier
    usable_memory_bytes: float  # what the runtime can allocate
    links: Links
    launch_overhead_s: float  # fixed cost per kernel call before calibration
    power: Power
    price: Price
    launch_year: int
    sources: Mapping[str, str]
    achievable: Achievable | None = None  # published achievable rates (absent: none published)
    power_limit_w: float | None = None  # a power limit below the TDP (MaxQ systems, `nvidia-smi -pl`); None: the TDP

    def __post_init__(self) -> None:
        _freeze(self, "matrix_flops_per_s", "vector_flops_per_s", "sources", "memory")
        _choice(self.kind, DEVICE_KINDS, "kind")
        for unit in ("matrix_flops_per_s", "vector_flops_per_s"):
            for dtype in getattr(self, unit):
                if dtype not in DTYPES:
                    _fail(
                        f"{unit}.{dtype}",
                        f"unknown dtype '{dtype}'; {nearest(dtype, DTYPES)} Fix: use one of {', '.join(DTYPES)}.",
                    )
        if "fp32" not in self.vector_flops_per_s:
            _fail("vector_flops_per_s.fp32", "is required: other vector dtypes fall back to it. Fix: add it.")
        _check_profile(self)
        self._check_memory()
        self._check_achievable()
        self._check_power_limit()

    def _check_memory(self) -> None:
        names = [tier.name for tier in self.memory]
        if len(set(names)) != len(names):
            _fail("memory", f"tier names must be unique, got {names}. Fix: rename the duplicates.")
        if sum(tier.main for tier in self.memory) != 1:
            _fail("memory", "exactly one tier needs `main: true`. Fix: mark the device's main memory (HBM/DRAM).")
        sizes = [tier.capacity_bytes for tier in self.memory]
        if sizes != sorted(sizes):
            _fail("memory", f"tiers must go from smallest to largest, got {names}. Fix: reorder them.")
        if self.usable_memory_bytes > self.physical_memory_bytes * 1.001:
            _fail(
                "usable_memory_bytes",
                f"{self.usable_memory_bytes:.4g} exceeds the main tier's capacity. "
                "Fix: check the units (bytes, not MiB or GB).",
            )

    def _check_achievable(self) -> None:
        """Achievable rates are measured on the chip's own units and memory, so never above its datasheet."""
        if self.achievable is None:
            return
        for dtype, rate in self.achievable.matrix_flops_per_s.items():
            field = self._achievable_dtype("matrix_flops_per_s", dtype)
            if rate > self.matrix_flops_per_s[dtype]:
                _fail(field, f"{rate:.4g} exceeds the dense peak {self.matrix_flops_per_s[dtype]:.4g}. Fix: check the "
                      "units (FLOP/s) and that the peak is dense, not 2:4 sparse.")
        attention = self.achievable.attention_flops_per_s
        if attention is not None and attention > self.matrix_peak("bf16"):
            _fail("achievable.attention_flops_per_s", f"{attention:.4g} exceeds the bf16 dense peak "
                  f"{self.matrix_peak('bf16'):.4g}. Fix: check the units (model FLOP/s of a causal forward).")
        for dtype, rate in self.achievable.gemm_stream_bytes_per_s.items():
            field = self._achievable_dtype("gemm_stream_bytes_per_s", dtype)
            if rate > self.memory_bandwidth_bytes_per_s:
                _fail(field, f"{rate:.4g} exceeds the main memory's {self.memory_bandwidth_bytes_per_s:.4g} bytes/s. "
                      "Fix: check the units (weight bytes read per second).")
        copy = self.achievable.memory_bytes_per_s
        if copy is not None and copy > self.memory_bandwidth_bytes_per_s:
            _fail("achievable.memory_bytes_per_s", f"{copy:.4g} exceeds the main memory's "
                  f"{self.memory_bandwidth_bytes_per_s:.4g} bytes/s. Fix: check the units (bytes/s, read + write).")

    def _achievable_dtype(self, figure: str, dtype: str) -> str:
        """The field `achievable.<figure>.<dtype>`, an error unless the chip has a matrix peak in that dtype."""
        field = f"achievable.{figure}.{dtype}"
        if dtype not in self.matrix_flops_per_s:
            _fail(field, f"'{dtype}' has no matrix peak on this chip. Fix: use one of "
                  f"{', '.join(self.matrix_flops_per_s)}, or add the peak under matrix_flops_per_s.")
        return field

    def _check_power_limit(self) -> None:
        limit = self.power_limit_w
        if limit is None:
            return
        # The datasheet rates hold at the TDP; below the board's lowest settable limit (else its idle power) the
        # clock model of `engine.power_limit` has no ground.
        low = self.power.min_limit_w
        above_floor = limit >= low if low is not None else limit > self.power.idle_w
        if not above_floor or limit > self.power.tdp_w:
            floor = f"{low:g} W" if low is not None else f"above its {self.power.idle_w:g} W idle power"
            _fail("power_limit_w", f"{limit:g} W is outside {self.name}'s range ({floor} to its {self.power.tdp_w:g} W "
                  "TDP). Fix: pick a limit in that range, or leave it out to run at the TDP.")

    def with_power_limit(self, limit_w: float | None, source: str) -> DeviceProfile:
        """This chip run under a power limit (`source`: where the setting comes from); None: at its TDP."""
        sources = {**self.sources, "power_limit_w": source} if limit_w is not None else self.sources
        return dataclasses.replace(self, power_limit_w=limit_w, sources=sources)

    def with_main_memory(self, capacity_bytes: float, bandwidth_bytes_per_s: float, source: str) -> DeviceProfile:
        """The same chip carrying other main memory (a board variant: H100 with 96 GB of HBM2e): its capacity and
        bandwidth replace the main tier's, the allocatable memory and the published copy rate scale with them, and
        `source` says where the variant's figures come from."""
        main = self.main_memory
        tier = dataclasses.replace(main, capacity_bytes=capacity_bytes, bandwidth_bytes_per_s=bandwidth_bytes_per_s)
        scale = bandwidth_bytes_per_s / self.memory_bandwidth_bytes_per_s
        achievable = self.achievable
        if achievable is not None:
            copy = achievable.memory_bytes_per_s
            achievable = dataclasses.replace(
                achievable, memory_bytes_per_s=None if copy is None else copy * scale,
                gemm_stream_bytes_per_s={d: r * scale for d, r in achievable.gemm_stream_bytes_per_s.items()})
        field = f"memory.{main.name}"
        sources = {**self.sources, f"{field}.capacity_bytes": source, f"{field}.bandwidth_bytes_per_s": source}
        shown = f"{self.display_name} ({capacity_bytes / GB:g} GB, {bandwidth_bytes_per_s / 1e12:g} TB/s)"
        return dataclasses.replace(
            self, display_name=shown,
            memory=tuple(tier if t is main else t for t in self.memory), achievable=achievable, sources=sources,
            usable_memory_bytes=self.usable_memory_bytes * capacity_bytes / main.capacity_bytes)

    @property
    def max_power_w(self) -> float:
        """Board power at full load: the power limit where one is set, else the TDP."""
        return self.power_limit_w if self.power_limit_w is not None else self.power.tdp_w

    def __hash__(self) -> int:
        return hash(("device", self.name, self.display_name, self.power_limit_w))

    @property
    def main_memory(self) -> MemoryTier:
        """The tier marked `main` (HBM, GDDR, LPDDR): where weights and activations live."""
        return next(tier for tier in self.memory if tier.main)

    @property
    def cache_bandwidth_bytes_per_s(self) -> float | None:
        """The bandwidth of the largest hardware cache (the L2) where the profile gives one, else None."""
        rates = [t.bandwidth_bytes_per_s for t in self.memory if t.kind == "cache" and t.bandwidth_bytes_per_s]
        return rates[-1] if rates else None

    @property
    def physical_memory_bytes(self) -> float:
        """The main memory the chips hold: a datasheet's "80 GB" of HBM is 80 GiB (memory dies come in binary
        sizes), so the runtime may see up to GiB/GB times the decimal figure."""
        return self.main_memory.capacity_bytes * GiB / GB

    @property
    def memory_bytes(self) -> float:
        """Bytes the runtime can allocate on the device."""
        return self.usable_memory_bytes

    @property
    def memory_bandwidth_bytes_per_s(self) -> float:
        """Main-memory bandwidth, per direction summed (the datasheet figure)."""
        bandwidth = self.main_memory.bandwidth_bytes_per_s
        assert bandwidth is not None  # guaranteed by MemoryTier validation
        return bandwidth

    def has_dtype(self, dtype: str) -> bool:
        """True when the chip computes in `dtype` on its matrix or vector units."""
        return dtype in self.matrix_flops_per_s or dtype in self.vector_flops_per_s

    def check_precision(self, precision: str, *, file: str | None, field: str) -> None:
        """A low precision (a GEMM format) this chip's matrix units lack is an error naming the ones it has."""
        if precision in LOW_PRECISIONS and precision not in self.matrix_flops_per_s:
            have = [d for d in (*LOW_PRECISIONS, "bf16") if d in self.matrix_flops_per_s]
            raise EmulatorError(f"'{precision}' is not supported by {self.name} (it has {', '.join(have)}). Fix: pick "
                                "one of those or a device with this precision.", file=file, field=field)

    def matrix_peak(self, dtype: str) -> float:
        """Dense matrix-unit FLOP/s for `dtype`; an error listing the dtypes the chip has when absent."""
        if dtype not in self.matrix_flops_per_s:
            self._missing("matrix_flops_per_s", dtype)
        return self.matrix_flops_per_s[dtype]

    def vector_peak(self, dtype: str) -> float:
        """Vector-unit FLOP/s for `dtype`, falling back to the fp32 vector rate for a dtype it lacks (integer and
        index math, int64 routing and masks, runs at about the fp32 rate); an error for an unknown dtype."""
        if dtype in self.vector_flops_per_s:
            return self.vector_flops_per_s[dtype]
        if dtype in DTYPES or dtype in INDEX_DTYPES:
            return self.vector_flops_per_s["fp32"]
        self._missing("vector_flops_per_s", dtype)

    def compute_peak(self, dtype: str) -> float:
        """FLOP/s for matrix work in `dtype`: the matrix unit's, else (fp32 without TF32, a chip without that
        format) the vector unit's."""
        return self.matrix_flops_per_s.get(dtype) or self.vector_peak(dtype)

    def mfu_peak(self, precision: str) -> float:
        """The dense matrix peak MFU and HFU divide by: the precision's own, else bf16's (a chip without the
        precision's matrix format is credited as if it ran bf16)."""
        return self.matrix_peak(precision if precision in self.matrix_flops_per_s else "bf16")

    def _missing(self, unit: str, dtype: str) -> NoReturn:
        have = [d for d in DTYPES if d in getattr(self, unit)]
        raise EmulatorError(
            f"device '{self.name}' has no {unit.split('_')[0]} peak for dtype '{dtype}'; it has "
            f"{', '.join(have)}. Fix: run in one of those dtypes or pick a device that supports '{dtype}'.",
            field=f"{unit}.{dtype}",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleUp:
    """The fast domain (NVLink/NVSwitch, xGMI mesh; for PCIe-only nodes the PCIe peer path)."""

    domain_size: int  # devices in one scale-up domain
    bandwidth_bytes_per_s: float  # per device, per direction, line rate
    latency_s: float
    topology: str  # switch | mesh | pcie

    def __post_init__(self) -> None:
        _choice(self.topology, SCALE_UP_TOPOLOGIES, "topology")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleOut:
    """The network between nodes."""

    nics_per_node: int
    nic_bandwidth_bytes_per_s: float  # per NIC, per direction
    latency_s: float
    topology: str  # free text
    oversubscription: float  # 1 = non-blocking; >1 oversubscribed above the first switch tier

    def __post_init__(self) -> None:
        if self.oversubscription < 1:
            _fail("oversubscription", f"is {self.oversubscription}; it must be >= 1 (1 = non-blocking). Fix it.")


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemPower:
    """Per-node power besides the devices."""

    host_w: float  # CPUs, memory, fans, NICs, on-board switches
    network_w_per_node: float  # this node's share of the fabric's switches and optics


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemPrice:
    """Per-node purchase price besides the devices."""

    node_capex_usd_excluding_devices: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemProfile:
    """A node (or tray) of devices, its scale-up domain and its scale-out network."""

    name: str
    display_name: str
    device: DeviceProfile  # the YAML names it; the loader resolves it
    devices_per_node: int
    scale_up: ScaleUp
    scale_out: ScaleOut
    power: SystemPower
    price: SystemPrice
    sources: Mapping[str, str]
    power_limit_w: float | None = None  # every device's power limit (MaxQ-style systems); None: their TDP

    def __post_init__(self) -> None:
        _freeze(self, "sources")
        _check_profile(self)
        if self.power_limit_w is not None:  # the system's setting is its devices' limit
            try:
                device = self.device.with_power_limit(self.power_limit_w, self.sources["power_limit_w"])
            except _FieldError as e:
                _fail("power_limit_w", e.message)
            object.__setattr__(self, "device", device)
        domain, node = self.scale_up.domain_size, self.devices_per_node
        if domain % node and node % domain:
            _fail(
                "scale_up.domain_size",
                f"{domain} neither divides nor is a multiple of devices_per_node "
                f"{node}. Fix: a domain is a whole number of nodes or of a node's parts.",
            )

    def __hash__(self) -> int:
        return hash(("system", self.name, self.display_name))


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    """Facility economics: power usage effectiveness, electricity price, hardware amortization."""

    name: str
    display_name: str
    pue: float  # facility power / IT power, >= 1
    electricity_usd_per_kwh: float
    amortization_years: float
    sources: Mapping[str, str]

    def __post_init__(self) -> None:
        _freeze(self, "sources")
        _check_profile(self)
        if self.pue < 1:
            _fail("pue", f"is {self.pue}; PUE is facility over IT power, so at least 1. Fix it (typical 1.1-1.6).")

    def __hash__(self) -> int:
        return hash(("site", self.name, self.display_name))
