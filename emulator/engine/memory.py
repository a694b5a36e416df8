"""Memory one device needs for a step: model state, activations, KV cache and an allowance.

Training (one device, no sharding; the cluster model shards these by plan):
  weights 2 B/param (bf16/fp16; 4 for fp32), gradients 2 B/param, AdamW master weights and two moments
  12 B/param: the 16 bytes per parameter of mixed-precision Adam (Rajbhandari et al. 2020, ZeRO, Sec. 3.1).
  Embedding tables updated sparsely (DLRM) keep no AdamW state.
  Activations: the bytes autograd saves for backward while tracing one micro-batch (measured on the traced
  program, not a formula), model state excluded.
Inference: weights at the serving precision, the KV cache of the whole batch at full length, and a workspace
  for one layer's transient activations plus the logits.
Both add a 5% allocator allowance (fragmentation of PyTorch's caching allocator; an assumption).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emulator.engine.trace import Trace
from emulator.units import DTYPE_BYTES
from emulator.workloads.config import DLRMConfig, ModelConfig

if TYPE_CHECKING:
    from emulator.scenario import Inference

ALLOCATOR_ALLOWANCE = 0.05
ADAM_STATE_BYTES_PER_PARAM = 12.0  # fp32 master weights, first and second moments


def _sparse_params(model: ModelConfig) -> float:
    return float(model.num_embedding_params()) if isinstance(model, DLRMConfig) else 0.0


def training_memory(model: ModelConfig, trace: Trace, precision: str) -> dict[str, float]:
    """Bytes per device of a single-device training step, by component."""
    params = float(model.num_params())
    width = 4.0 if precision == "fp32" else 2.0
    parts = {
        "weights": params * width,
        "gradients": (params - _sparse_params(model)) * width,
        "optimizer_states": (params - _sparse_params(model)) * ADAM_STATE_BYTES_PER_PARAM,
        "activations": float(trace.meta.get("activation_bytes", 0.0)),
    }
    return _total(parts)


def inference_memory(model: ModelConfig, prefill: Trace, inference: Inference) -> dict[str, float]:
    """Bytes per device of a batch of requests, by component."""
    params = float(model.num_params())
    parts = {"weights": params * DTYPE_BYTES[inference.precision if inference.precision != "fp32" else "fp32"]}
    b = inference.batch_size
    if isinstance(model, DLRMConfig):
        parts["activations"] = float(b * (model.num_tables + 1) * model.embedding_dim * 2 * 4)
        return _total(parts)
    kv_width = int(DTYPE_BYTES[inference.kv_precision or ("bf16" if inference.precision in ("fp8", "fp4", "int8")
                                                          else inference.precision)])
    parts["kv_cache"] = float(b * (inference.input_tokens + inference.output_tokens) * model.kv_bytes_per_token(kv_width))
    # One layer's transients (q, k, v, attention output, MLP intermediates) and the fp32 logits of the last tokens.
    tokens = b * inference.input_tokens
    per_token = 2 * (4 * model.hidden_size + 3 * max(model.ffn_hidden_size, model.moe_ffn_hidden_size))
    parts["activations"] = float(tokens * per_token + b * model.vocab_size * 4)
    return _total(parts)


def _total(parts: dict[str, float]) -> dict[str, float]:
    subtotal = sum(parts.values())
    parts["allocator_allowance"] = subtotal * ALLOCATOR_ALLOWANCE
    parts["total"] = subtotal * (1 + ALLOCATOR_ALLOWANCE)
    return parts
