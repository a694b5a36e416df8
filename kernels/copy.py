"""Copies, fills and the ops that run no kernel at all (views and metadata).

A copy reads its source once and writes its destination once (dtype casts included); a fill or a random
initialiser writes only. `VIEW_OPS` are free: they change metadata, never data.
"""

from __future__ import annotations

from typing import Any

from kernels.cost import ZERO, Cost
from kernels.registry import register
from kernels.tensors import bytes_of, flat_tensors

VIEW_OPS = [
    "aten.view", "aten._unsafe_view", "aten.t", "aten.transpose", "aten.permute", "aten.expand", "aten.slice",
    "aten.select", "aten.unsqueeze", "aten.squeeze", "aten.split", "aten.split_with_sizes", "aten.unbind",
    "aten.as_strided", "aten.detach", "aten.alias", "aten.lift_fresh", "aten.empty", "aten.empty_like",
    "aten.empty_strided", "aten.new_empty", "aten.new_empty_strided", "aten._local_scalar_dense",
    "aten.view_as_real", "aten.view_as_complex", "aten.diagonal", "aten.unfold", "aten._reshape_alias",
    "aten.detach_", "aten.t_", "aten.transpose_", "aten.squeeze_", "aten.unsqueeze_", "aten.as_strided_",
    "aten.unsafe_split", "aten.resize_", "aten.set_", "aten.is_same_size", "aten._assert_async",
    "aten._assert_tensor_metadata", "aten.sym_size", "aten.sym_stride", "aten.sym_numel",
    "aten.record_stream", "aten._conj", "aten.conj", "aten.real", "aten.imag", "aten._neg_view",
    "aten.is_nonzero", "aten.equal", "aten.sym_storage_offset", "aten._unsafe_index_put",
    "aten.unsafe_chunk", "aten.chunk", "aten.movedim", "aten.swapaxes", "aten.view_as",
    "aten.unflatten", "aten.flatten", "aten.reshape", "aten.narrow", "aten.expand_as", "aten.contiguous",
    "aten._reshape_copy_alias", "aten.lift", "aten._nested_tensor_from_mask_left_aligned",
    "profiler._record_function_enter_new", "profiler._record_function_exit", "profiler._record_function_enter",
    "c10d.barrier", "_c10d_functional.wait_tensor",
]

register("view", *VIEW_OPS)(lambda args, kwargs, out: ZERO)

_COPIES = [
    "aten._to_copy", "aten.copy_", "aten.copy", "aten.clone", "aten.cat", "aten.stack", "aten.repeat",
    "aten.constant_pad_nd", "aten.slice_scatter", "aten.select_scatter", "aten.as_strided_scatter",
    "aten.diagonal_scatter", "aten.flip", "aten.roll", "aten.lift_fresh_copy", "aten.expand_copy",
    "aten.permute_copy", "aten.view_copy", "aten.transpose_copy", "aten.split_with_sizes_copy",
    "aten.unbind_copy", "aten.slice_copy", "aten.repeat_interleave", "aten._unsafe_index",
    "aten.alias_copy", "aten.unsqueeze_copy", "aten.t_copy", "aten.detach_copy", "aten.col2im", "aten.im2col",
    "aten.pixel_shuffle", "aten._pad_packed_sequence", "aten.hstack", "aten.vstack", "aten.slice_backward",
    "aten.select_backward", "aten.diagonal_backward", "aten.unfold_backward", "aten.index_select_backward",
    "aten.narrow_copy",
]


@register("copy", *_COPIES)
def _copy(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    if out is None or (out is args[0] and len(args) > 1):
        # In-place copy_(dst, src): read src, write dst.
        return Cost(bytes_read=bytes_of(args[1:]), bytes_written=bytes_of(args[0]))
    return Cost(bytes_read=bytes_of(args), bytes_written=bytes_of(out))


_FILLS = [
    "aten.fill", "aten.fill_", "aten.zero_", "aten.zeros", "aten.zeros_like", "aten.ones", "aten.ones_like",
    "aten.full", "aten.full_like", "aten.new_zeros", "aten.new_ones", "aten.new_full", "aten.arange",
    "aten.scalar_tensor", "aten.linspace", "aten.randn", "aten.rand", "aten.randint", "aten.randn_like",
    "aten.rand_like", "aten.randint_like", "aten.normal_", "aten.uniform_", "aten.random_",
    "aten.randperm", "aten.eye", "aten.tril_indices", "aten.triu_indices", "aten.exponential_",
    "aten.bernoulli",
]


@register("copy", *_FILLS)
def _fill(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Cost:
    target = out if out is not None else args[0]
    written = sum(float(t.numel() * t.element_size()) for t in flat_tensors(target))
    return Cost(bytes_written=written)
