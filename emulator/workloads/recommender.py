"""DLRM recommenders: bottom MLP on dense features, pooled embedding-table lookups, interaction, top MLP.

Interaction "dot" is the original DLRM (pairwise dots of the F = tables + 1 feature vectors, upper triangle taken
by a fixed index, concatenated with the dense vector); "dcn" is DLRM-DCNv2 as in MLPerf DLRM-v2 (low-rank cross
layers x_{l+1} = x0 * (V(U x_l) + b) + x_l over the concatenated features).

Embedding training: production DLRM training (FBGEMM's table-batched embeddings, as MLPerf submissions use)
never materialises a dense table-sized gradient; the backward pass scatters each looked-up row's gradient straight
into the table with a fused row-wise optimizer. We do the same: `_FusedSparseUpdate` returns no gradient for the
table and instead runs `index_select` of the pooled gradient per lookup and `index_add_` into the table rows
(plain SGD with `TABLE_LR`; row-wise Adagrad would add one small per-row state). Table weights are marked
`_emulator_sparse` and `make_optimizer` leaves them out of AdamW, which updates only the MLPs. This works the
same on meta, CPU and CUDA, and the trace shows exactly the gather, the row-gradient gather and the scatter-add.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from emulator.workloads.config import DLRMConfig

TABLE_LR = 1e-2


class _FusedSparseUpdate(torch.autograd.Function):
    """Pooled lookup whose backward updates the looked-up table rows in place (no dense table gradient)."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor,
                pooling: int) -> torch.Tensor:
        ctx.save_for_backward(indices)
        ctx.weight, ctx.pooling = weight, pooling
        return F.embedding_bag(indices, weight, offsets, mode="sum")  # [B, D]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None, None]:
        (indices,) = ctx.saved_tensors
        bag = torch.arange(indices.shape[0], device=indices.device) // ctx.pooling  # [N] sample of each lookup
        rows = grad.index_select(0, bag)  # [N, D] gradient of each looked-up row
        with torch.no_grad():
            ctx.weight.index_add_(0, indices, rows.to(ctx.weight.dtype), alpha=-TABLE_LR)
        return None, None, None, None


def _mlp(widths: tuple[int, ...], *, last_relu: bool, dtype: torch.dtype, device: torch.device | str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b, dtype=dtype, device=device))
        if last_relu or i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CrossLayer(nn.Module):
    """One low-rank DCNv2 cross layer: x0 * (V(U x) + b) + x."""

    def __init__(self, dim: int, rank: int, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False, dtype=dtype, device=device)
        self.up = nn.Linear(rank, dim, dtype=dtype, device=device)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.up(self.down(x)) + x


class DLRM(nn.Module):
    """forward(dense [B, Fd], indices (one [B * p_t] tensor per table), offsets (one [B] per table), labels [B])."""

    pairs: torch.Tensor  # flat indices of the upper triangle of the [F, F] dot matrix

    def __init__(self, c: DLRMConfig, *, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.config = c
        self.bottom = _mlp((c.num_dense_features, *c.bottom_mlp), last_relu=True, dtype=dtype, device=device)
        self.tables = nn.ModuleList(
            nn.EmbeddingBag(rows, c.embedding_dim, mode="sum", dtype=dtype, device=device) for rows in c.embedding_rows)
        for table in self.tables:
            table.weight._emulator_sparse = True  # type: ignore[union-attr]  # updated in backward, not AdamW
        num_features = c.num_tables + 1
        if c.interaction == "dot":
            upper = torch.triu_indices(num_features, num_features, offset=1, device=device)
            self.register_buffer("pairs", upper[0] * num_features + upper[1], persistent=False)  # [F(F-1)/2]
            self.cross = None
        else:
            self.cross = nn.ModuleList(
                CrossLayer(c.interaction_dim, c.dcn_low_rank_dim, dtype=dtype, device=device)
                for _ in range(c.dcn_num_layers))
        self.top = _mlp((c.interaction_dim, *c.top_mlp), last_relu=False, dtype=dtype, device=device)

    def _lookup(self, table: nn.EmbeddingBag, indices: torch.Tensor, offsets: torch.Tensor,
                pooling: int) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            return _FusedSparseUpdate.apply(table.weight, indices, offsets, pooling)
        return F.embedding_bag(indices, table.weight, offsets, mode="sum")

    def forward(self, dense: torch.Tensor, indices: list[torch.Tensor], offsets: list[torch.Tensor],
                labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.bottom(dense)  # [B, D]
        pooled = [self._lookup(t, i, o, p) for t, i, o, p in  # type: ignore[arg-type]
                  zip(self.tables, indices, offsets, self.config.pooling_factors, strict=True)]  # each [B, D]
        if self.cross is None:
            feats = torch.stack([x, *pooled], dim=1)  # [B, F, D]
            dots = torch.bmm(feats, feats.transpose(1, 2))  # [B, F, F]
            z = torch.cat((x, dots.flatten(1).index_select(1, self.pairs)), dim=1)  # [B, D + F(F-1)/2]
        else:
            x0 = z = torch.cat([x, *pooled], dim=1)  # [B, F*D]
            for layer in self.cross:
                z = layer(x0, z)
        logit = self.top(z).squeeze(1)  # [B]
        if labels is None:
            return torch.sigmoid(logit)
        return F.binary_cross_entropy_with_logits(logit.float(), labels.float())


def dlrm_inputs(c: DLRMConfig, batch_size: int, *, dtype: torch.dtype, device: torch.device | str,
                generator: torch.Generator | None = None, labels: bool) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Random (args, kwargs) for `DLRM.forward` (empty tensors on meta)."""
    meta = torch.device(device).type == "meta"
    dense = (torch.empty(batch_size, c.num_dense_features, dtype=dtype, device=device) if meta else
             torch.rand(batch_size, c.num_dense_features, dtype=dtype, device=device, generator=generator) + 0.1)
    indices, offsets = [], []
    for rows, pooling in zip(c.embedding_rows, c.pooling_factors, strict=True):
        n = batch_size * pooling
        indices.append(torch.empty(n, dtype=torch.long, device=device) if meta else
                       torch.randint(0, rows, (n,), device=device, generator=generator))
        offsets.append(torch.arange(batch_size, device=device) * pooling)
    kwargs: dict[str, Any] = {}
    if labels:
        kwargs["labels"] = (torch.empty(batch_size, device=device) if meta else
                            torch.randint(0, 2, (batch_size,), device=device, generator=generator).float())
    return (dense, indices, offsets), kwargs
