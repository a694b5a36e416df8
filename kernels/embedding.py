"""Embedding lookups, embedding bags (family `embedding`) and the scatters (family `scatter`: index_add_,
index_put_, scatter_add) of MoE routing, KV-cache writes and sparse embedding updates. Scatters are their own
family because they read-modify-write with atomics or serial conflicts and run far below gather speed.

A lookup of I indices into a [rows, D] table reads the indices and I*D elements of the table, never the
whole table, and writes its output. Scatters (index_add_, index_put_, scatter_add) read the source and the
index and read-modify-write as many destination elements as the source has. The dense backward of an
embedding writes the whole table gradient (zero fill) and accumulates I rows into it.
"""

from __future__ import annotations

from typing import Any

from kernels.cost import Cost
from kernels.registry import register
from kernels.tensors import bytes_of, flat_tensors, nbytes


def _rows_bytes(num_indices: int, weight: Any) -> float:
    row = weight.shape[-1] if weight.dim() > 1 else 1
    return float(num_indices * row * weight.element_size())


@register("embedding", "aten.embedding")
def _embedding(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    weight, indices = args[0], args[1]
    return Cost(bytes_read=nbytes(indices) + _rows_bytes(indices.numel(), weight), bytes_written=nbytes(out))


@register("embedding", "aten.embedding_dense_backward")
def _embedding_backward(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    grad, indices = args[0], args[1]
    return Cost(
        vector_flops=float(grad.numel()),
        bytes_read=nbytes(grad) + nbytes(indices) + nbytes(grad),
        bytes_written=nbytes(out) + nbytes(grad),
    )


@register("embedding", "aten._embedding_bag", "aten._embedding_bag_forward_only")
def _bag(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    weight, indices, offsets = args[0], args[1], args[2]
    o = out[0]
    return Cost(
        vector_flops=float(indices.numel() * weight.shape[-1]),
        bytes_read=nbytes(indices) + nbytes(offsets) + _rows_bytes(indices.numel(), weight),
        bytes_written=nbytes(o),
    )


@register(
    "embedding",
    "aten._embedding_bag_backward",
    "aten._embedding_bag_dense_backward",
    "aten._embedding_bag_sparse_backward",
    "aten._embedding_bag_per_sample_weights_backward",
)
def _bag_backward(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    grad, indices = args[0], args[1]
    dim = grad.shape[-1]
    touched = float(indices.numel() * dim * grad.element_size())
    return Cost(
        vector_flops=float(indices.numel() * dim),
        bytes_read=nbytes(grad) + nbytes(indices) + touched,
        bytes_written=touched if out is None else min(bytes_of(out), touched + bytes_of(out)),
    )


@register("embedding", "aten.index_select", "aten.gather", "aten.index", "aten.take", "aten.masked_select")
def _gather(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    src = args[0]
    index_bytes = sum(nbytes(t) for t in flat_tensors(args[1:]) if not t.is_floating_point())
    o = next(flat_tensors(out))
    return Cost(bytes_read=index_bytes + o.numel() * src.element_size(), bytes_written=nbytes(o))


@register(
    "scatter",
    "aten.index_add", "aten.index_add_", "aten.index_put", "aten.index_put_", "aten._index_put_impl_",
    "aten.scatter_add", "aten.scatter_add_", "aten.scatter", "aten.scatter_", "aten.index_copy",
    "aten.index_copy_", "aten.scatter_reduce", "aten.scatter_reduce_", "aten.index_fill_", "aten.masked_scatter_",
)
def _scatter(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    dest = args[0]
    rest = list(flat_tensors(args[1:]))
    floats = [t for t in rest if t.is_floating_point()]
    index_bytes = sum(nbytes(t) for t in rest if not t.is_floating_point())
    largest = max((t.numel() for t in rest), default=0)
    moved = sum(nbytes(t) for t in floats) if floats else largest * dest.element_size()
    functional = not _in_place(args, out)
    # The functional form copies the destination first.
    copy = 2.0 * nbytes(dest) if functional else 0.0
    return Cost(
        vector_flops=moved / max(dest.element_size(), 1),
        bytes_read=index_bytes + 2.0 * moved + copy / 2,
        bytes_written=moved + copy / 2,
    )


def _in_place(args: tuple[Any, ...], out: Any) -> bool:
    return out is args[0]
