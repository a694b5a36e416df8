"""GEMM family: mm, addmm, bmm, baddbmm and scaled (fp8) matmul.

Cost of C[M,N] = A[M,K] @ B[K,N] (per batch item):
    matrix FLOPs = 2*M*N*K          (one multiply and one add per term)
    bytes read   = (M*K + K*N) * b   (each operand once; tiles re-read from cache are free)
    bytes written = M*N * b_out
addmm/baddbmm add the bias (or C) read and M*N vector FLOPs for the scaled add.
"""

from __future__ import annotations

from typing import Any

from kernels.cost import Cost
from kernels.registry import register
from kernels.tensors import nbytes


@register("gemm", "aten.mm", "aten._scaled_mm")
def _mm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    a, b = args[0], args[1]
    m, k = a.shape
    n = b.shape[1]
    o = out[0] if isinstance(out, tuple) else out
    bias = kwargs.get("bias") if kwargs else None
    extra = nbytes(bias) if bias is not None else 0.0
    return Cost(
        matrix_flops=2.0 * m * n * k,
        bytes_read=nbytes(a) + nbytes(b) + extra,
        bytes_written=nbytes(o),
    )


@register("gemm", "aten.addmm")
def _addmm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    bias, a, b = args[0], args[1], args[2]
    m, k = a.shape
    n = b.shape[1]
    return Cost(
        matrix_flops=2.0 * m * n * k,
        vector_flops=float(m * n),
        bytes_read=nbytes(a) + nbytes(b) + nbytes(bias),
        bytes_written=nbytes(out),
    )


@register("gemm", "aten.bmm")
def _bmm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    a, b = args[0], args[1]
    bs, m, k = a.shape
    n = b.shape[2]
    return Cost(matrix_flops=2.0 * bs * m * n * k, bytes_read=nbytes(a) + nbytes(b), bytes_written=nbytes(out))


@register("gemm", "aten.baddbmm")
def _baddbmm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    c, a, b = args[0], args[1], args[2]
    bs, m, k = a.shape
    n = b.shape[2]
    return Cost(
        matrix_flops=2.0 * bs * m * n * k,
        vector_flops=float(bs * m * n),
        bytes_read=nbytes(a) + nbytes(b) + nbytes(c),
        bytes_written=nbytes(out),
    )


@register("gemm", "aten.mv", "aten.dot", "aten.addmv")
def _mv(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    # Matrix-vector products run on vector units in practice, but count their FLOPs as GEMM work.
    tensors = [t for t in args if hasattr(t, "shape")]
    a = max(tensors, key=lambda t: t.numel())
    return Cost(
        matrix_flops=2.0 * a.numel(),
        bytes_read=sum(nbytes(t) for t in tensors),
        bytes_written=nbytes(out),
    )
