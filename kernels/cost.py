"""The cost of one kernel call, in counts: FLOPs by unit, bytes moved, bytes communicated."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(frozen=True, slots=True)
class Cost:
    """Counts for one kernel call (or a sum of calls). All fields are plain numbers, SI.

    matrix_flops: FLOPs on the matrix unit (tensor cores), counted as the model does (2 per multiply-add).
    vector_flops: FLOPs on the vector units (elementwise math, reductions, softmax exponentials).
    recompute_flops: matrix FLOPs the kernel executes beyond the model count (FlashAttention's backward
        recomputes the score matrix); they cost time but are not model FLOPs.
    bytes_read / bytes_written: traffic to the memory that holds the tensors, each input read once and
        each output written once (the minimum a perfect kernel moves).
    comm_bytes: bytes a collective sends per participant; comm_steps: its latency-bound steps.
    """

    matrix_flops: float = 0.0
    vector_flops: float = 0.0
    recompute_flops: float = 0.0
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    comm_bytes: float = 0.0
    comm_steps: float = 0.0

    @property
    def flops(self) -> float:
        """Model FLOPs: matrix plus vector."""
        return self.matrix_flops + self.vector_flops

    @property
    def bytes(self) -> float:
        """Bytes read plus written."""
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte (inf for a kernel that moves nothing)."""
        b = self.bytes
        return (self.flops + self.recompute_flops) / b if b else float("inf")

    def __add__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __mul__(self, k: float) -> Cost:
        return Cost(*(getattr(self, f.name) * k for f in fields(self)))

    __rmul__ = __mul__

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


ZERO = Cost()


@dataclass(frozen=True, slots=True)
class KernelCall:
    """One kernel signature in a trace: what ran, on which shapes, its per-call cost and how often.

    `count` multiplies `cost`; `total` is the cost of all `count` calls.
    """

    family: str
    op: str
    shapes: tuple[tuple[int, ...], ...]
    dtype: str
    cost: Cost
    count: int = 1
    module: str = ""
    phase: str = "forward"
    params: tuple[tuple[str, object], ...] = field(default=())
    weight_bytes: float = 0.0  # bytes of the reads that are model state (parameters, buffers): they live in main memory

    @property
    def total(self) -> Cost:
        return self.cost * self.count


ATTENTION_BACKWARD_OP = "emulator.attention_backward"


def attention_scores(op: str, shapes: tuple[tuple[int, ...], ...], matrix_flops: float) -> tuple[float, float]:
    """(query-key scores, head dimension) of a fused attention call, from its argument shapes (q, k, v first; the
    backward's grad_out, q, k, v, o) and model matrix FLOPs: 2 (d_qk + d_v) per score forward, twice that backward
    (`attention.py`); the head dimension is the mean of d_qk and d_v. Here for the same reason as `gemm_dims`."""
    backward = op == ATTENTION_BACKWARD_OP
    q, v = (shapes[1], shapes[3]) if backward else (shapes[0], shapes[2])
    width = q[-1] + v[-1]
    return matrix_flops / ((4.0 if backward else 2.0) * width), width / 2


def gemm_dims(op: str, shapes: tuple[tuple[int, ...], ...]) -> tuple[int, int, int, int]:
    """(batch, M, N, K) of a traced GEMM call (`matmul.py`'s ops) from its argument shapes. Here, not beside the
    cost rules, because the roofline reads it on traces loaded from disk, without torch (which the rules import)."""
    if op in ("aten.addmm", "aten.baddbmm"):
        shapes = shapes[1:]  # grouped_mm (a stack's grouped expert GEMM) is [G, M, K] x [G, K, N], like bmm
    a, b = shapes[0], shapes[1]
    if len(a) == 3:
        return a[0], a[1], b[2], a[2]
    return 1, a[0], b[1], a[1]
