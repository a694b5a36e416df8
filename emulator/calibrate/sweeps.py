"""Calibration sweeps: which microbenchmarks to time on a device, per kernel family.

A sweep is data: a list of `BenchPoint`s naming a reference in `kernels.references`, its shape parameters and
a dtype. Shapes cover each family's regimes (small and launch-bound, skinny, cache-resident, far larger than
cache, non-powers of two). `quick=True` is budgeted to finish in about 2 minutes on a 2-core CPU and 4 on an
H100, warm-up and tracing included; the full sweep is several times longer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emulator.errors import EmulatorError

KiB = 1024
MiB = 1024**2
GiB = 1024**3


@dataclass(frozen=True, slots=True)
class BenchPoint:
    """One microbenchmark: `name` is a key of `kernels.references.REFERENCES`; `params` its shape."""

    family: str
    name: str
    params: dict[str, Any] = field(hash=False)
    dtype: str

    @property
    def label(self) -> str:
        shape = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}[{shape}]:{self.dtype}"


def _gemm(device_kind: str, quick: bool) -> list[BenchPoint]:
    gpu = device_kind == "cuda"
    if gpu:
        square = [256, 512, 1024, 2048, 4096, 8192]
        if not quick:
            square = [64, 128, *square[:-1], 6144, 8192, 16384]
        odd = [(1000, 1000, 1000), (4160, 4096, 4096), (3000, 5000, 7000)]
        skinny_nk = 8192 if quick else 16384
        skinny_m = [1, 16, 64, 256] if quick else [1, 2, 4, 8, 16, 32, 64, 128, 256]
        dtypes = ["bf16", "fp16", "tf32", "fp32"] if not quick else ["bf16", "fp32"]
        big_dtypes = ["bf16", "fp16", "tf32"] if quick else dtypes
    else:
        square = [64, 128, 256, 512, 1024] if quick else [64, 128, 256, 512, 1024, 1536, 2048]
        odd = [(1000, 1000, 1000)] if quick else [(1000, 1000, 1000), (576, 1088, 640), (1024 + 64, 1024, 1024)]
        skinny_nk = 1024 if quick else 4096
        # Down to M=1: a decode step at batch 1 runs matrix-vector products, which BLAS libraries run as another
        # kernel class (no row tiles to pad, weights streamed once). Fitted on M >= 16 only, the small-matrix
        # penalty extrapolated to M=1 predicted batch-1 decode on a CPU 10x slow (issue 14).
        skinny_m = [1, 4, 16, 64] if quick else [1, 2, 4, 8, 16, 32, 64]
        dtypes = ["fp32"]
        big_dtypes = dtypes
    points = []
    for dt in dtypes:
        for s in square:
            if s > 1024 and dt not in big_dtypes:
                continue
            points.append(BenchPoint("gemm", "gemm", {"m": s, "n": s, "k": s}, dt))
        for m, n, k in odd:
            points.append(BenchPoint("gemm", "gemm", {"m": m, "n": n, "k": k}, dt))
        for m in skinny_m:
            points.append(BenchPoint("gemm", "gemm", {"m": m, "n": skinny_nk, "k": skinny_nk}, dt))
    if gpu:
        # Transformer-shaped products (tokens x hidden x hidden, MLP up/down, vocabulary head).
        for m, n, k in ((8192, 4096, 4096), (8192, 14336, 4096), (8192, 4096, 14336), (4096, 1024, 4096),
                        (2048, 128256, 4096), (16384, 2048, 2048), (512, 4096, 4096)):
            points.append(BenchPoint("gemm", "gemm", {"m": m, "n": n, "k": k}, "bf16"))
    # Batched products (attention-shaped): many small matrices.
    bs = [(32, 128 if not gpu else 512, 128)] if quick else [(32, 128, 128), (64, 256, 64), (16, 512, 128)]
    bdt = "bf16" if gpu else "fp32"
    for batch, mn, k in bs:
        points.append(BenchPoint("gemm", "bmm", {"batch": batch, "m": mn, "n": mn, "k": k}, bdt))
    if gpu:
        points += _gemm_fp8() + _grouped_experts()
    if not gpu:
        # Layer-shaped products of small models: one token (decode) to many (prefill, training).
        for m in (1, 16, 128, 512):
            for k, n in ((512, 2048), (2048, 512), (512, 512)):
                if not m == n == k:  # squares are in the list above
                    points.append(BenchPoint("gemm", "gemm", {"m": m, "n": n, "k": k}, "fp32"))
                # The same products with cold operands: in a model step a layer's weights come from DRAM.
                points.append(BenchPoint("gemm", "gemm", {"m": m, "n": n, "k": k, "cold": True}, "fp32"))
        # A decode step's weight as large as a 7-8B model's (a 4096^2 projection): past the cache, a product over it
        # streams at nearly the DRAM's rate, where the small weights above pay a cold start of the same order.
        points.append(BenchPoint("gemm", "gemm", {"m": 1, "n": 4096, "k": 4096, "cold": True}, "fp32"))
        points += _cpu_bf16(quick)
    return points


def _cpu_bf16(quick: bool) -> list[BenchPoint]:
    """bf16 products on a CPU, fitted on their own (`fit.split_dtypes`): bf16 is what serving scenarios run, and a
    CPU runs it through another library than fp32 (oneDNN's AVX-512 BF16 / AMX kernels, not the fp32 BLAS), with
    its own speed for each shape: on our 2-core AMD EPYC a 16-row product over a 4096^2 weight ran at 0.75 of the
    bf16 rate and 0.47 of the fp32 one."""
    squares = [256, 512, 1024] if quick else [64, 256, 512, 1024, 2048]
    points = [BenchPoint("gemm", "gemm", {"m": s, "n": s, "k": s}, "bf16") for s in squares]
    for m in ([1, 4, 16, 64] if quick else [1, 2, 4, 8, 16, 32, 64]):
        points.append(BenchPoint("gemm", "gemm", {"m": m, "n": 1024, "k": 1024}, "bf16"))
    for m in (1, 16, 128) if quick else (1, 4, 16, 128, 512):
        for k, n in ((512, 2048), (2048, 512)):
            points.append(BenchPoint("gemm", "gemm", {"m": m, "n": n, "k": k, "cold": True}, "bf16"))
    # A 7-8B model's decode weights (4096^2 projections and 4096 x 14336 MLP matrices, 32-117 MB in bf16) stream at
    # nearly the DRAM's rate; the small weights above pay a cold start of the same order as their stream (on our
    # 2-core AMD EPYC 2 MB went at 2-2.5 GB/s where 32-117 MB went at 3-3.5), so the regime gets its own points.
    for m, k, n in ((1, 4096, 4096), (16, 4096, 4096), (1, 4096, 14336), (1, 14336, 4096)):
        points.append(BenchPoint("gemm", "gemm", {"m": m, "n": n, "k": k, "cold": True}, "bf16"))
    return points


# fp8 GEMMs over the shape classes of bf16 (squares, odd, skinny, decode- and prefill-shaped layers): a family
# fitted on squares alone has no evidence for decode's skinny products (issue 12, item 2). cuBLASLt's fp8 kernels
# need every dimension divisible by 16, as the engines pad their token counts to.
FP8_SQUARES = (256, 512, 1024, 2048, 4096, 8192, 16384)
FP8_SHAPES = (
    (1008, 1008, 1008), (4160, 4096, 4096), (3008, 5008, 7008),                       # odd
    *((m, 16384, 16384) for m in (16, 32, 64, 128, 256)), (16, 8192, 8192), (64, 8192, 8192),  # skinny
    (16, 6144, 4096), (64, 28672, 4096), (128, 4096, 14336), (256, 10240, 8192),      # decode-shaped layers
    (8192, 4096, 4096), (8192, 14336, 4096), (8192, 4096, 14336), (2048, 10240, 8192),  # prefill/training
    (4096, 28672, 8192), (16384, 2048, 2048),
)

# Expert GEMMs as the engines run them: one batched product over [experts, tokens per expert, hidden], timed as
# `grouped_mm` calls are predicted (see `emulator.engine.stack.group_experts`). Shapes of Mixtral (8 x 14336),
# Qwen3-30B-A3B (128 x 768) and DeepSeek-V3 (256 x 2048) experts at decode and prefill token counts.
EXPERT_SHAPES = ((8, 512, 14336, 4096), (8, 2048, 4096, 14336), (128, 16, 768, 2048), (128, 256, 768, 2048),
                 (128, 64, 2048, 768), (32, 128, 2048, 7168), (256, 16, 2048, 7168), (64, 512, 2048, 7168))


def _gemm_fp8() -> list[BenchPoint]:
    shapes = [(s, s, s) for s in FP8_SQUARES] + list(FP8_SHAPES)
    return [BenchPoint("gemm", "scaled_mm", {"m": m, "n": n, "k": k}, "fp8") for m, n, k in shapes]


def _grouped_experts() -> list[BenchPoint]:
    return [BenchPoint("gemm", "bmm", {"batch": g, "m": m, "n": n, "k": k}, "bf16") for g, m, n, k in EXPERT_SHAPES]


def _attention(device_kind: str, quick: bool) -> list[BenchPoint]:
    gpu = device_kind == "cuda"
    dt = "bf16" if gpu else "fp32"
    if gpu:
        prefill = [(4, 32, 8, 1024, 128), (1, 32, 8, 4096, 128), (8, 16, 16, 2048, 64), (2, 64, 8, 4096, 128)]
        if not quick:
            prefill += [(1, 64, 8, 8192, 128), (16, 32, 32, 512, 128), (2, 128, 128, 2048, 192)]
        kv_lens = [128, 512, 2048, 8192, 32768]
        decode_batch = 32
    else:
        prefill = [(1, 8, 2, 256, 64), (2, 4, 4, 512, 64)]
        if not quick:
            prefill += [(1, 8, 8, 1024, 64), (4, 16, 4, 256, 128)]
        kv_lens = [128, 2048] if quick else [128, 512, 2048, 8192]
        decode_batch = 4
    points = []
    for b, hq, hkv, s, d in prefill:
        p = {"batch": b, "heads": hq, "kv_heads": hkv, "seq_len": s, "kv_len": s, "head_dim": d, "causal": True}
        points.append(BenchPoint("attention", "attention_prefill", p, dt))
    for kv in kv_lens:
        p = {"batch": decode_batch, "heads": 32, "kv_heads": 8, "seq_len": 1, "kv_len": kv, "head_dim": 128,
             "causal": False}
        points.append(BenchPoint("attention", "attention_decode", p, dt))
    bwd = prefill[:1] if quick and not gpu else prefill[:3]
    for b, hq, hkv, s, d in bwd:
        p = {"batch": b, "heads": hq, "kv_heads": hkv, "seq_len": s, "kv_len": s, "head_dim": d, "causal": True}
        points.append(BenchPoint("attention", "attention_backward", p, dt))
    return points


def _copy(device_kind: str, quick: bool) -> list[BenchPoint]:
    # From cache-resident to far beyond any cache (4x the largest L2/LLC we expect).
    top = (4 * GiB if not quick else 2 * GiB) if device_kind == "cuda" else (256 * MiB if not quick else 64 * MiB)
    sizes, s = [], 64 * KiB
    step = 4 if quick else 2
    while s <= top:
        sizes.append(s)
        s *= step
    if sizes[-1] != top:
        sizes.append(top)
    dt = "bf16" if device_kind == "cuda" else "fp32"
    points = [BenchPoint("copy", "copy", {"bytes": b}, dt) for b in sizes]
    points += [BenchPoint("copy", "clone", {"bytes": b}, dt) for b in sizes[:: 2 if quick else 1]]
    return points


def _rows_cols(device_kind: str, quick: bool) -> list[tuple[int, int]]:
    if device_kind == "cuda":
        if quick:
            return [(1024, 1024), (8192, 4096), (32768, 8192)]
        return [(64, 1024), (1024, 1024), (8192, 4096), (16384, 8192), (32768, 8192), (4096, 12288 + 64)]
    if quick:
        return [(64, 256), (1024, 1024), (4096, 2048)]
    return [(64, 256), (256, 1000), (1024, 1024), (4096, 2048), (8192, 4096)]


def _vector(device_kind: str, quick: bool) -> list[BenchPoint]:
    dt = "bf16" if device_kind == "cuda" else "fp32"
    shapes = _rows_cols(device_kind, quick)
    points = []
    for r, c in shapes:
        rc = {"rows": r, "cols": c}
        points += [BenchPoint("elementwise", n, rc, dt) for n in ("add", "mul", "silu", "gelu")]
        points += [BenchPoint("norm", n, rc, dt) for n in ("rms_norm", "layer_norm")]
        points.append(BenchPoint("softmax", "softmax", rc, dt))
        points.append(BenchPoint("reduction", "sum", rc, dt))
    if device_kind == "cpu":
        # Small ops right after a stream larger than the cache (`evict`: the stream over the last-level cache's
        # size): in a model step every op follows other layers' traffic, which evicts its code, page-table
        # entries and data, and a 16x512 op that takes 3-7 us repeated took 60-220 us after a 16-64 MB stream
        # on our 2-core VM. These points measure that per-call cost and how much traffic it takes (see
        # `emulator.calibrate.fit.cold_call_curve`); they are not fitted into their families.
        for evict in (0.125, 0.25, 0.5, 2.0):
            for n in ("mul", "silu", "rms_norm"):
                points.append(BenchPoint("elementwise" if n != "rms_norm" else "norm", n,
                                         {"rows": 64, "cols": 256, "evict": evict}, dt))
    vocab = 32000 if device_kind != "cuda" else 128256
    rows_ce = [256] if device_kind != "cuda" else [1024, 8192]
    for r in rows_ce[: 1 if quick else None]:
        points.append(BenchPoint("softmax", "cross_entropy", {"rows": r, "vocab": vocab}, dt))
    return points


def _embedding(device_kind: str, quick: bool) -> list[BenchPoint]:
    gpu = device_kind == "cuda"
    rows = [100_000, 1_000_000] if gpu else [10_000, 100_000]
    if not quick:
        rows.append(10_000_000 if gpu else 1_000_000)
    batches = [512, 4096] if gpu else [128, 1024]
    points = []
    for r in rows:
        for b in batches:
            bag = {"rows": r, "dim": 128, "batch": b, "pooling": 20}
            points.append(BenchPoint("embedding", "embedding_bag", bag, "fp32"))
        # Token-embedding-like rows on GPU (512 wide), recommender-like (128) on CPU.
        gather = {"rows": r, "dim": 512 if gpu else 128, "num_indices": batches[-1]}
        points.append(BenchPoint("embedding", "embedding", gather, "fp32"))
        for num in (batches[0] * 4, batches[-1] * 16):
            update = {"rows": r, "dim": 128 if gpu else 64, "num_indices": num}
            points.append(BenchPoint("scatter", "index_add", update, "fp32"))
        if not gpu:
            # Recommender tables are far larger than a CPU cache in a model step: the same lookups and
            # updates on cold tables (the GPU flushes its L2 before every repetition anyway).
            bag = {"rows": r, "dim": 128, "batch": batches[-1], "pooling": 20, "cold": True}
            points.append(BenchPoint("embedding", "embedding_bag", bag, "fp32"))
            update = {"rows": r, "dim": 64, "num_indices": batches[-1] * 16, "cold": True}
            points.append(BenchPoint("scatter", "index_add", update, "fp32"))
    return points


def _optimizer(device_kind: str, quick: bool) -> list[BenchPoint]:
    sizes = [(1_000_000, 8), (64_000_000, 64)] if device_kind == "cuda" else [(100_000, 8), (4_000_000, 16)]
    if not quick:
        sizes.append((256_000_000, 128) if device_kind == "cuda" else (16_000_000, 32))
    return [BenchPoint("optimizer", "adamw", {"numel": n, "num_tensors": t}, "fp32") for n, t in sizes]


FAMILIES = ("gemm", "attention", "elementwise", "norm", "softmax", "reduction", "embedding", "scatter", "copy",
            "optimizer")


def sweep(device_kind: str, quick: bool) -> list[BenchPoint]:
    """The calibration points for a device kind ('cpu' or 'cuda'); every family in `FAMILIES` appears."""
    if device_kind == "cuda":
        # A GPU measures the whole sweep in well under a minute, so --quick keeps every point there.
        quick = False
    if device_kind not in ("cpu", "cuda"):
        raise EmulatorError(
            f"no calibration sweep for device kind '{device_kind}'; use 'cpu' or 'cuda'", field="device"
        )
    return (
        _gemm(device_kind, quick)
        + _attention(device_kind, quick)
        + _vector(device_kind, quick)
        + _embedding(device_kind, quick)
        + _copy(device_kind, quick)
        + _optimizer(device_kind, quick)
    )
