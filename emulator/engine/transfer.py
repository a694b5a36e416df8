"""What carries over from a measured sibling to a chip without its own calibration: the transfer model.

A calibration fits, per kernel family, the fraction of the measured chip's peaks that large kernels reach (`math`,
`memory`) and how the rate falls below it for small, skinny and short kernels: GEMM tile and small-matrix half
size, per-call overhead, cache speed-up, vector efficiency (its shape response). A chip T without a calibration
takes a measured sibling S's efficiencies with their shape response unchanged, and moves their ceilings by what
each chip reaches in the same published benchmarks (`DeviceProfile.achievable`, each figure sourced):

    math_T(f)   = min(1, math_S(f)   * r_d),    r_d   = (A_T[d] / P_T[d]) / (A_S[d] / P_S[d])
    memory_T(f) = min(1, memory_S(f) * r_mem),  r_mem = (B_T / W_T) / (B_S / W_S)

A: the best dense matmul rate of a shape search (MAMF), P: the datasheet dense peak, B: a STREAM-style copy
bandwidth, W: the datasheet main-memory bandwidth; d: the dtype whose matrix units family f runs on (`gemm.fp8`:
fp8; `gemm` and every other family: bf16, the 16-bit ceiling). A GEMM family (`GEMM_FAMILIES`) whose dtype both
chips publish a one-row streaming rate G for (`achievable.gemm_stream_bytes_per_s`: the best weight bytes per second
of an m = 1 GEMM over a shape sweep, the rate decode's GEMMs approach) moves its memory ceiling by that instead:

    memory_T(gemm.d) = min(1, memory_S(gemm.d) * (G_T[d] / W_T) / (G_S[d] / W_S))

because a GEMM streaming its weights reaches a fraction of bandwidth of its own, which differs by dtype and chip
(AIConfigurator's TensorRT-LLM Linear sweeps: Blackwell's NVFP4 one-row GEMMs reach 66-73% of bandwidth, its bf16
ones 84-88%, the H200's fp8 85%), and the Blackwell chips publish no copy figure at all. Attention moves by its
own measured ceiling where both chips publish one (`achievable.attention_flops_per_s`, the best fused causal forward
of a measured grid):

    math_T(attention) = min(1, math_S(attention) * (F_T / P_T[bf16]) / (F_S / P_S[bf16]))

because a fused attention kernel also waits on the exponential units of its softmax, which chips do not scale with
their matrix units (Blackwell Ultra doubles them over Blackwell at equal tensor peaks: AIConfigurator's measured
TensorRT-LLM context attention runs 15-17% faster on B300 and GB300 than on B200 and GB200, NVIDIA's 'Making
Softmax More Efficient with NVIDIA Blackwell Ultra'); without both figures attention takes the bf16 ratio.
The fit thus sits at the same fraction of T's achievable rates as it does of S's: the achievable rates, measured
the same way on both chips, set the ceilings; the sibling says how far below them real kernels run. Efficiencies
are capped at 1 (no kernel beats the datasheet).

A figure missing on either chip falls back, and the basis says so: a dtype without one takes bf16's ratio; no bf16
figure, or no bandwidth, leaves that ratio at 1 (the sibling's fractions applied to T's datasheet, the plain
utilisation transfer). With no calibration to take at all, the spec defaults are moved the same way, their GEMM
math and copy memory efficiencies standing for the achievable fractions they were set from (`efficiency.py`).

A narrower format T publishes a figure for and S has no matrix units for at all (fp4 on
Blackwell from a Hopper sibling) gets a GEMM family of its own, built from S's next wider low-precision one
(`BUILT_FROM`: fp4 from fp8, both block- or tensor-scaled tensor-core GEMMs with their operands quantised):

    math_T(gemm.fp4) = min(1, math_S(gemm.fp8) * (A_T[fp4] / P_T[fp4]) / (A_S[fp8] / P_S[fp8]))

(its memory ceiling likewise by G_T[fp4] over the sibling's G_S[fp8]).

Without it the fp4 GEMMs would fall to the 16-bit `gemm` family at bf16's ratio, i.e. at the 16-bit fraction of
the fp4 peak: Blackwell's measured fp4 GEMMs reach about half of that peak where its bf16 ones reach three quarters
(AIConfigurator's TensorRT-LLM Linear tables, published_kernels.yaml; `validation.published_gemm` checks the
result against those tables).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from emulator.engine.efficiency import SPEC_DEFAULTS, EfficiencyTable
from emulator.hardware import DeviceProfile
from emulator.precision import LOW_PRECISIONS

REFERENCE_DTYPE = "bf16"  # the dtype of the 16-bit ceiling, and the fallback of a dtype without a figure
# A narrower format the sibling has no matrix units for takes the GEMM family of the sibling's next wider format.
BUILT_FROM = {"fp4": "fp8"}
# The families whose memory ceiling moves by the one-row GEMM streaming ratio of their dtype (bare: bf16)
GEMM_FAMILIES = ("gemm", "gemv")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ceilings:
    """Fractions of its datasheet a chip reaches in the achievable benchmarks."""

    name: str  # whose: a device, or the spec defaults
    matrix: Mapping[str, float]  # dtype -> achievable matmul / dense peak
    memory: float | None  # achievable copy / main-memory bandwidth (None: unpublished)
    attention: float | None = None  # achievable fused attention / bf16 dense peak (None: unpublished)
    stream: Mapping[str, float] = dataclasses.field(default_factory=dict)  # dtype -> one-row GEMM stream / bandwidth


def ceilings(device: DeviceProfile) -> Ceilings:
    """A device's achievable fractions (empty where it publishes none)."""
    a = device.achievable
    if a is None:
        return Ceilings(name=device.name, matrix={}, memory=None)
    matrix = {d: rate / device.matrix_peak(d) for d, rate in a.matrix_flops_per_s.items()}
    copy = a.memory_bytes_per_s / device.memory_bandwidth_bytes_per_s if a.memory_bytes_per_s else None
    attention = a.attention_flops_per_s / device.matrix_peak(REFERENCE_DTYPE) if a.attention_flops_per_s else None
    stream = {d: rate / device.memory_bandwidth_bytes_per_s for d, rate in a.gemm_stream_bytes_per_s.items()}
    return Ceilings(name=device.name, matrix=matrix, memory=copy, attention=attention, stream=stream)


# The spec defaults' GEMM math and copy memory efficiencies were set from published achievable fractions
# (MAMF and STREAM on H100-class chips, see `efficiency.py`): they are the ceilings the spec table stands on.
SPEC_CEILINGS = Ceilings(name="the spec defaults", matrix={REFERENCE_DTYPE: SPEC_DEFAULTS.get("gemm").math},
                         memory=SPEC_DEFAULTS.get("copy").memory)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scaling:
    """The ratios a table's ceilings move by, and what each rests on in words."""

    math: Mapping[str, float]  # dtype -> r_d (absent: falls back to bf16's, then 1)
    memory: float
    words: tuple[str, ...]
    built: Mapping[str, tuple[str, float]] = dataclasses.field(default_factory=dict)  # dtype -> (from, ratio)
    attention: float | None = None  # the attention family's own ratio (None: it takes bf16's)
    stream: Mapping[str, float] = dataclasses.field(default_factory=dict)  # dtype -> a GEMM family's memory ratio

    def memory_ratio(self, family: str) -> float:
        """A GEMM family's memory ceiling moves by its dtype's one-row streaming ratio where both chips publish one;
        every other family, and a GEMM without one, by the copy bandwidth's."""
        dtype = gemm_dtype(family)
        return self.memory if dtype is None else self.stream.get(dtype, self.memory)

    def math_ratio(self, family: str) -> float:
        if family == "attention" and self.attention is not None:
            return self.attention
        return self.math.get(gemm_dtype(family) or REFERENCE_DTYPE, self.math.get(REFERENCE_DTYPE, 1.0))


def gemm_dtype(family: str) -> str | None:
    """The dtype of a GEMM family (`gemm`, `gemv` and their `.<dtype>` tables; the bare name is 16-bit), None for
    every other family."""
    base, _, dtype = family.partition(".")
    return (dtype or REFERENCE_DTYPE) if base in GEMM_FAMILIES else None


def scaling(target: DeviceProfile, reference: Ceilings) -> Scaling:
    """The ratios that move `reference`'s ceilings to `target`'s achievable fractions."""
    mine = ceilings(target)
    math = {d: mine.matrix[d] / reference.matrix[d] for d in mine.matrix if d in reference.matrix}
    words = [f"{d} matmul x{r:.3f} ({mine.matrix[d]:.3f} vs {reference.matrix[d]:.3f} of peak)"
             for d, r in sorted(math.items())]
    if REFERENCE_DTYPE not in math:
        words.append(f"matmul x1 (no {REFERENCE_DTYPE} achievable rate on both {target.name} and {reference.name})")
    # Low-precision GEMMs are fitted as families of their own (`gemm.fp8`); 16-bit, tf32 and fp32 GEMMs share
    # `gemm` and so the bf16 ratio by design.
    built = {d: (wider, mine.matrix[d] / reference.matrix[wider]) for d, wider in BUILT_FROM.items()
             if d in mine.matrix and d not in reference.matrix and wider in reference.matrix}
    words += [f"{d} matmul built from the {wider} GEMMs x{r:.3f} ({mine.matrix[d]:.3f} of the {d} peak vs "
              f"{reference.matrix[wider]:.3f} of the {wider} peak)" for d, (wider, r) in sorted(built.items())]
    lacking = [d for d in LOW_PRECISIONS if d in target.matrix_flops_per_s and d not in math and d not in built]
    if lacking and REFERENCE_DTYPE in math:
        verb = "takes" if len(lacking) == 1 else "take"
        words.append(f"{', '.join(lacking)} {verb} the {REFERENCE_DTYPE} ratio (no achievable rate on both)")
    # each dtype's streaming figure against the sibling's own, else (a format built from a wider one) that one's
    against = {d: d if d in reference.stream else BUILT_FROM.get(d, "") for d in mine.stream}
    stream = {d: mine.stream[d] / reference.stream[r] for d, r in against.items() if r in reference.stream}
    words += [f"{d} GEMM streaming x{r:.3f} ({mine.stream[d]:.3f} vs {reference.stream[against[d]]:.3f} of "
              "bandwidth at one row)" for d, r in sorted(stream.items())]
    attention = None
    if mine.attention is not None and reference.attention is not None:
        attention = mine.attention / reference.attention
        words.append(f"attention x{attention:.3f} ({mine.attention:.3f} vs {reference.attention:.3f} of the "
                     f"{REFERENCE_DTYPE} peak in measured fused attention)")
    if mine.memory is not None and reference.memory is not None:
        memory = mine.memory / reference.memory
        words.append(f"memory x{memory:.3f} ({mine.memory:.3f} vs {reference.memory:.3f} of bandwidth)")
    else:
        memory = 1.0
        missing = target.name if mine.memory is None else reference.name
        words.append(f"memory x1 ({missing} publishes no STREAM-style copy bandwidth)")
    return Scaling(math=math, memory=memory, words=tuple(words), built=built, attention=attention, stream=stream)


def moved(table: EfficiencyTable, scale: Scaling, basis: str) -> EfficiencyTable:
    """`table` with every family's math and memory ceilings moved by `scale`; its shape response unchanged. A format
    `scale` builds (`BUILT_FROM`) and the table lacks is added as a GEMM family of its own."""
    families = {
        name: dataclasses.replace(eff, math=min(eff.math * scale.math_ratio(name), 1.0),
                                  memory=min(eff.memory * scale.memory_ratio(name), 1.0))
        for name, eff in table.families.items()
    }
    for dtype, (wider, ratio) in scale.built.items():
        base = table.families.get(f"gemm.{wider}")
        if base is not None and f"gemm.{dtype}" not in families:
            memory = min(base.memory * scale.memory_ratio(f"gemm.{dtype}"), 1.0)
            families[f"gemm.{dtype}"] = dataclasses.replace(base, math=min(base.math * ratio, 1.0), memory=memory)
    return dataclasses.replace(table, families=families, basis=f"{basis}: {'; '.join(scale.words)}")


def transferred(table: EfficiencyTable, target: DeviceProfile, sibling: DeviceProfile, why: str) -> EfficiencyTable:
    """A sibling's calibrated table (already `transferred`, its band widened) carried to `target`."""
    return moved(table, scaling(target, ceilings(sibling)),
                 f"{sibling.name}'s calibration ({why}), ceilings moved to {target.name}'s achievable rates")


def spec_for(target: DeviceProfile) -> EfficiencyTable:
    """The spec defaults, their ceilings moved to the device's achievable rates where it publishes some."""
    if target.achievable is None:
        return dataclasses.replace(SPEC_DEFAULTS, basis=f"spec defaults: no calibration to transfer and no published "
                                   f"achievable rates for {target.name}")
    return moved(SPEC_DEFAULTS, scaling(target, SPEC_CEILINGS),
                 f"spec defaults (no calibration to transfer), ceilings moved to {target.name}'s achievable rates")


__all__ = ["BUILT_FROM", "GEMM_FAMILIES", "SPEC_CEILINGS", "Ceilings", "Scaling", "ceilings", "gemm_dtype", "moved",
           "scaling", "spec_for", "transferred"]
