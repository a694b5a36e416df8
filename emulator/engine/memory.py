"""The one memory model: bytes one device needs for a step, by component.

Training (mixed-precision AdamW; Rajbhandari et al. 2020, ZeRO, Sec. 3.1): weights and gradients at the
training weight width (2 B/param, 4 in fp32; fp8 training keeps bf16 weights), 12 B/param of optimizer state
(fp32 master weights and two moments). Dense parameters are replicated over the data-parallel ranks and routed
experts over the expert-data-parallel ranks; ZeRO-1 divides the optimizer states by them, ZeRO-2 also the
gradients, ZeRO-3/FSDP also the weights (plus the gathered weights in flight). Embedding tables updated sparsely
(DLRM) keep no gradient or optimizer state. Activations are the caller's: the bytes autograd saves while tracing
(one device), or Korthikanti et al.'s per-layer formula under a plan (`cluster.memory`).
Inference: weights at the serving precision, the KV cache, and a workspace for one iteration's transients (one
layer's q, k, v, attention output and MLP intermediates for every token in flight, and fp32 logits of the rows
that sample a token).
Both add a 5% allocator allowance (fragmentation of PyTorch's caching allocator; an assumption), whose size is
the memory figure's error band.
"""

from __future__ import annotations

import math

from emulator.precision import ADAM_STATE_BYTES_PER_PARAM, DTYPE_BYTES, training_weight_bytes, weight_bytes_per_param
from emulator.workloads.config import DLRMConfig, ModelConfig, TransformerConfig

ALLOCATOR_ALLOWANCE = 0.05
# Activations, workspace transients and collective payloads of inference run in 16 bits.
INFERENCE_ACTIVATION_BYTES = 2.0
LOGIT_BYTES = 4.0  # fp32 logits


def with_allowance(parts: dict[str, float]) -> dict[str, float]:
    """The components plus the allocator's allowance on their sum."""
    return {**parts, "allocator_allowance": sum(parts.values()) * ALLOCATOR_ALLOWANCE}


def training_memory(*, dense_params: float, precision: str, activations: float, expert_params: float = 0.0,
                    sparse_params: float = 0.0, zero: int = 0, dp: int = 1, edp: int = 1,
                    gathered_params: float = 0.0, temporaries: float | None = None) -> dict[str, float]:
    """Bytes per device of a training step: sharded model state, activations, temporaries, allowance.

    `dense_params` are replicated over `dp` data-parallel ranks, `expert_params` over `edp` ranks, and
    `sparse_params` (sparsely updated tables) keep weights only. `zero` is the ZeRO stage (3 for FSDP).
    `gathered_params` are weights ZeRO-3 holds gathered at once (the running and the prefetched layer).
    """
    width = training_weight_bytes(precision)

    def state(per_param: float, sharded: bool) -> float:
        return per_param * (dense_params / dp + expert_params / edp if sharded else dense_params + expert_params)

    parts = {
        "weights": state(width, zero >= 3) + sparse_params * width + gathered_params * width,
        "gradients": state(width, zero >= 2),
        "optimizer_states": state(ADAM_STATE_BYTES_PER_PARAM, zero >= 1),
        "activations": activations,
    }
    if temporaries is not None:
        parts["temporary_buffers"] = temporaries
    return with_allowance(parts)


def serving_weight_bytes(model: ModelConfig, precision: str, shards: int = 1, low_precision_head: bool = True) -> float:
    """Weights one device holds serving in `precision`, split over `shards` devices (tp x pp). A low-precision
    format quantizes a transformer's Linears: its embedding table stays 16-bit, and so does an untied LM head whose
    stack leaves it out (`recipe.low_precision_head` false)."""
    per_param = weight_bytes_per_param(precision)
    total = model.num_params() * per_param
    if isinstance(model, TransformerConfig) and per_param < DTYPE_BYTES["bf16"]:
        tables = 1 if model.tie_embeddings or low_precision_head else 2
        total += tables * model.vocab_size * model.hidden_size * (DTYPE_BYTES["bf16"] - per_param)
    return total / shards


def kv_bytes_per_token(model: TransformerConfig, kv_dtype: str, tp: int = 1, pp: int = 1) -> float:
    """KV bytes one token occupies on one device: its stage's layers (pp) and its share of the KV heads (GQA heads
    split over tp, replicated when fewer than tp; MLA's latent is replicated)."""
    layers = math.ceil(model.num_layers / pp)
    width = DTYPE_BYTES[kv_dtype]
    if model.attention == "mla":
        return layers * (model.kv_lora_rank + model.qk_rope_head_dim) * width
    return layers * 2 * max(model.num_kv_heads // tp, 1) * model.head_dim * width


def workspace_bytes(model: TransformerConfig, tokens: float, logit_rows: float, tp: int = 1) -> float:
    """Transients of one iteration of `tokens` tokens on one tensor-parallel rank: one layer's q, k, v, attention
    output and MLP intermediates, and the fp32 logits of the rows that sample."""
    ffn = max(model.ffn_hidden_size, model.moe_ffn_hidden_size) // tp
    return (tokens * INFERENCE_ACTIVATION_BYTES * (4 * model.hidden_size + 3 * ffn)
            + logit_rows * math.ceil(model.vocab_size / tp) * LOGIT_BYTES)


def dlrm_workspace_bytes(model: DLRMConfig, batch: int) -> float:
    """A recommender batch's transients: every table's pooled row and the dense features, fp32, in and out."""
    return float(batch * (model.num_tables + 1) * model.embedding_dim * 2 * 4)


def inference_memory(*, weights: float, workspace: float, kv_cache: float | None = None) -> dict[str, float]:
    """Bytes per device of serving: weights, KV cache (transformers), workspace, allowance."""
    parts = {"weights": weights}
    if kv_cache is not None:
        parts["kv_cache"] = kv_cache
    parts["activations"] = workspace
    return with_allowance(parts)
