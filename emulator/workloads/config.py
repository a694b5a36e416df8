"""Model configurations: frozen, validated values that the modules, the tracer and the planner read.

`TransformerConfig` covers dense decoder-only transformers (Llama, GPT), mixture-of-experts (Mixtral, Qwen3-MoE,
DeepSeek-V3) and multi-head latent attention (MLA, DeepSeek-V2/V3). `DLRMConfig` covers the DLRM family of
recommenders. Parameter counts are closed-form so that planning a 405B model never builds it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from emulator.errors import EmulatorError
from emulator.fields import MAX_INTEGER
from emulator.workloads.lora import LoraConfig


def _positive(obj: Any, *names: str, allow_zero: tuple[str, ...] = ()) -> None:
    for name in names:
        _size(getattr(obj, name), name, zero=name in allow_zero)


def _size(value: Any, name: str, *, zero: bool = False) -> None:
    """A whole number > 0 (>= 0 with `zero`) and at most MAX_INTEGER, else an error naming the field."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise EmulatorError(f"must be an integer, got {value!r}. Fix: write a whole number.", field=name)
    if value < 0 or (value == 0 and not zero) or value > MAX_INTEGER:
        bound = "zero or positive" if zero else "positive"
        raise EmulatorError(f"must be {bound} and at most {MAX_INTEGER:,}, got {value}. Fix: check the model's "
                            "config.json.", field=name)


def _choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise EmulatorError(f"is {value!r}. Fix: use one of {', '.join(choices)}.", field=name)


def _freeze_assumed(obj: Any) -> None:
    object.__setattr__(obj, "assumed", MappingProxyType(dict(obj.assumed)))


@dataclass(frozen=True, slots=True, kw_only=True)
class TransformerConfig:
    """A decoder-only transformer. Zero means 'derived' for `num_kv_heads` (= heads) and `head_dim` (= hidden/heads)."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    ffn_hidden_size: int
    vocab_size: int
    max_seq_len: int
    num_kv_heads: int = 0
    head_dim: int = 0
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    mlp: Literal["swiglu", "gelu"] = "swiglu"
    positions: Literal["rope", "learned"] = "rope"
    rope_theta: float = 10000.0
    tie_embeddings: bool = False
    qkv_bias: bool = False
    out_bias: bool = False  # bias on the attention output projection (GPT-2)
    mlp_bias: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm over each head of q and k
    # Sliding window (0: none): a query sees its latest `sliding_window` keys, in every layer but each n-th one
    # (`full_attention_every` n; 0: all windowed). GPT-OSS: 128 and 2 (`transformer.layer_window`).
    sliding_window: int = 0
    full_attention_every: int = 0
    norm_eps: float = 1e-5
    # Mixture of experts (num_experts == 0: dense).
    num_experts: int = 0
    num_experts_per_token: int = 0
    moe_ffn_hidden_size: int = 0
    num_shared_experts: int = 0
    num_dense_layers: int = 0  # the first k layers are dense (DeepSeek's first_k_dense_replace)
    router: Literal["softmax", "sigmoid"] = "softmax"  # Mixtral/Qwen: softmax; DeepSeek-V3: sigmoid
    # Expert assignments per token that reach these experts, where that is not a whole top-k: one expert-parallel
    # rank of a serving replica receives k / ep of every token's k (`serving.replica.shard`; top-2 of 8 experts on
    # 8 ranks: a quarter). 0: num_experts_per_token.
    routed_per_token: float = 0.0
    # The expert load a trace assumes (`moe.MoE.route`): "uniform", each token's experts drawn at random (fewer experts
    # touched than assignments at small batches); "balanced", the T * k spread evenly over min(E, T * k) experts.
    expert_load: Literal["uniform", "balanced"] = "uniform"
    # Multi-head latent attention (DeepSeek-V2/V3).
    attention: Literal["gqa", "mla"] = "gqa"
    q_lora_rank: int = 0  # 0: q is projected directly from the hidden state
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # LoRA adapters trained on the frozen base (`lora.py`); None: every weight trains. Set from a training
    # scenario's `task: lora`; the traced training program then has the adapters (`adapters.py`).
    lora: LoraConfig | None = None
    # config.json keys the file left out, each with the Hugging Face default taken for it (workloads/hf.py). Left
    # out of equality and hashing: the model is the same whether a default was written out or assumed, so caches
    # keyed by the config are unaffected.
    assumed: Mapping[str, object] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _freeze_assumed(self)
        if not self.name:
            raise EmulatorError("is empty. Fix: give the model a name.", field="name")
        _positive(self, "num_layers", "hidden_size", "num_heads", "ffn_hidden_size", "vocab_size", "max_seq_len")
        optional = ("num_kv_heads", "head_dim", "num_experts", "num_experts_per_token", "moe_ffn_hidden_size",
                    "num_shared_experts", "num_dense_layers", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
                    "qk_rope_head_dim", "v_head_dim", "sliding_window", "full_attention_every")
        _positive(self, *optional, allow_zero=optional)
        if self.full_attention_every and not self.sliding_window:
            raise EmulatorError("is set but sliding_window is 0. Fix: give the window, or leave full_attention_every "
                                "out.", field="full_attention_every")
        _choice(self.norm, "norm", ("rmsnorm", "layernorm"))
        _choice(self.mlp, "mlp", ("swiglu", "gelu"))
        _choice(self.positions, "positions", ("rope", "learned"))
        _choice(self.attention, "attention", ("gqa", "mla"))
        _choice(self.router, "router", ("softmax", "sigmoid"))
        if self.head_dim == 0:
            if self.hidden_size % self.num_heads:
                raise EmulatorError(
                    f"{self.num_heads} heads do not divide hidden_size {self.hidden_size}. Fix: choose a head count "
                    "that divides it, or give head_dim explicitly.", field="num_heads")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.num_kv_heads == 0:
            object.__setattr__(self, "num_kv_heads", self.num_heads)
        if self.num_heads % self.num_kv_heads:
            raise EmulatorError(
                f"{self.num_kv_heads} key/value heads do not divide {self.num_heads} query heads, as grouped-query "
                "attention needs. Fix: make num_heads a multiple of num_kv_heads.", field="num_kv_heads")
        if self.positions == "rope" and self.attention == "gqa" and self.head_dim % 2:
            raise EmulatorError(f"head_dim {self.head_dim} is odd, but rotary embeddings rotate pairs. Fix: use an "
                                "even head_dim.", field="head_dim")
        if self.num_experts:
            if not 0 < self.num_experts_per_token <= self.num_experts:
                raise EmulatorError(
                    f"is {self.num_experts_per_token} with {self.num_experts} experts. Fix: route each token to "
                    "between 1 and num_experts experts.", field="num_experts_per_token")
            if not 0 <= self.routed_per_token < math.inf:
                raise EmulatorError(f"is {self.routed_per_token}. Fix: give 0 (a whole top-k) or the positive number "
                                    "of expert assignments per token these experts receive.", field="routed_per_token")
            _choice(self.expert_load, "expert_load", ("uniform", "balanced"))
            if self.moe_ffn_hidden_size == 0:
                object.__setattr__(self, "moe_ffn_hidden_size", self.ffn_hidden_size)
            if self.num_dense_layers > self.num_layers:
                raise EmulatorError(f"is {self.num_dense_layers} but the model has only {self.num_layers} layers. "
                                    "Fix: use at most num_layers.", field="num_dense_layers")
        elif self.num_experts_per_token or self.num_shared_experts:
            raise EmulatorError("is 0 but the experts per token or shared experts are set. Fix: set num_experts "
                                "for a mixture-of-experts model.", field="num_experts")
        if self.attention == "mla":
            _positive(self, "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
            if self.sliding_window:
                raise EmulatorError("is set, but multi-head latent attention runs no sliding window here. Fix: leave "
                                    "sliding_window out for an MLA model.", field="sliding_window")
            if self.qk_rope_head_dim % 2:
                raise EmulatorError("is odd, but rotary embeddings rotate pairs. Fix: use an even size.",
                                    field="qk_rope_head_dim")
            if self.num_kv_heads != self.num_heads:
                raise EmulatorError("differs from num_heads, but MLA decompresses one key/value per query head. "
                                    "Fix: set num_kv_heads = num_heads.", field="num_kv_heads")

    # ---- structure -------------------------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.num_dense_layers if self.is_moe else 0

    @property
    def qk_head_dim(self) -> int:
        """Width of one query/key head (MLA: the non-rotary part plus the rotary part)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.attention == "mla" else self.head_dim

    # ---- parameter counts ------------------------------------------------------------------------------------
    def _attention_matmul_params(self) -> int:
        h, nh = self.hidden_size, self.num_heads
        if self.attention == "mla":
            q = (h * self.q_lora_rank + self.q_lora_rank * nh * self.qk_head_dim if self.q_lora_rank
                 else h * nh * self.qk_head_dim)
            kv = h * (self.kv_lora_rank + self.qk_rope_head_dim)  # down-projection plus the shared rotary key
            kv += self.kv_lora_rank * nh * (self.qk_nope_head_dim + self.v_head_dim)  # up-projection to k_nope, v
            return q + kv + nh * self.v_head_dim * h
        d = self.head_dim
        return h * nh * d + 2 * h * self.num_kv_heads * d + nh * d * h

    def _attention_other_params(self) -> int:
        biases = (self.num_heads + 2 * self.num_kv_heads) * self.head_dim if self.qkv_bias else 0
        if self.out_bias:
            biases += self.hidden_size
        norms = 2 * self.head_dim if self.qk_norm else 0
        if self.attention == "mla":
            norms = self.q_lora_rank + self.kv_lora_rank
        return biases + norms

    def _mlp_matmul_params(self, ffn: int) -> int:
        return (3 if self.mlp == "swiglu" else 2) * self.hidden_size * ffn

    def _mlp_bias_params(self, ffn: int) -> int:
        return (ffn * (2 if self.mlp == "swiglu" else 1) + self.hidden_size) if self.mlp_bias else 0

    def _norm_params(self) -> int:
        return self.hidden_size * (2 if self.norm == "layernorm" else 1)

    def _layer_matmul_params(self, moe: bool, active: bool) -> int:
        attn = self._attention_matmul_params()
        if not moe:
            return attn + self._mlp_matmul_params(self.ffn_hidden_size)
        expert = self._mlp_matmul_params(self.moe_ffn_hidden_size)
        routed = self.num_experts_per_token if active else self.num_experts
        router = self.hidden_size * self.num_experts
        return attn + router + (routed + self.num_shared_experts) * expert

    def _matmul_params(self, active: bool) -> int:
        dense_layers = self.num_layers - self.num_moe_layers
        total = dense_layers * self._layer_matmul_params(False, active)
        total += self.num_moe_layers * self._layer_matmul_params(True, active)
        return total + self.vocab_size * self.hidden_size  # lm_head (a matmul even when tied)

    def num_matmul_params(self) -> int:
        """Weights of every Linear, lm_head included; a MoE counts all its experts."""
        return self._matmul_params(active=False)

    def num_routed_expert_params(self) -> int:
        """Weights of every routed expert (not the shared experts or the router)."""
        return self.num_moe_layers * self.num_experts * self._mlp_matmul_params(self.moe_ffn_hidden_size)

    def num_active_matmul_params(self) -> int:
        """Linear weights one token passes through: routed top-k plus shared experts plus the router."""
        return self._matmul_params(active=True)

    def num_params(self) -> int:
        """All parameters: matmul weights, embeddings, norms and biases (tied embeddings counted once)."""
        h = self.hidden_size
        total = self.num_matmul_params()
        if not self.tie_embeddings:
            total += self.vocab_size * h
        if self.positions == "learned":
            total += self.max_seq_len * h
        per_layer = self._attention_other_params() + 2 * self._norm_params()
        total += self.num_layers * per_layer + self._norm_params()
        dense_layers = self.num_layers - self.num_moe_layers
        total += dense_layers * self._mlp_bias_params(self.ffn_hidden_size)
        return total

    def num_active_params(self) -> int:
        """Parameters one token uses (equal to `num_params` for a dense model)."""
        return self.num_params() - self.num_matmul_params() + self.num_active_matmul_params()

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """Bytes of KV cache one token occupies across all layers (MLA: the latent plus the rotary key)."""
        if self.attention == "mla":
            return self.num_layers * (self.kv_lora_rank + self.qk_rope_head_dim) * dtype_bytes
        return self.num_layers * 2 * self.num_kv_heads * self.head_dim * dtype_bytes

    def scaled(self, **changes: Any) -> TransformerConfig:
        """A scale model: the same architecture with some sizes changed (e.g. `num_layers=2`)."""
        if "num_layers" in changes and self.num_dense_layers > changes["num_layers"]:
            changes.setdefault("num_dense_layers", min(self.num_dense_layers, changes["num_layers"]))
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        """A JSON-able description for `emulator models show`."""
        out: dict[str, Any] = {"kind": "transformer", **{f.name: getattr(self, f.name) for f in
                                                          dataclasses.fields(self)}}
        out["assumed"] = dict(self.assumed)
        out["lora"] = self.lora.as_dict() if self.lora else None
        out.update(num_params=self.num_params(), num_active_params=self.num_active_params(),
                   num_matmul_params=self.num_matmul_params(),
                   num_active_matmul_params=self.num_active_matmul_params(),
                   kv_bytes_per_token_bf16=self.kv_bytes_per_token(2))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class DLRMConfig:
    """A DLRM recommender: bottom MLP on dense features, pooled embedding tables, interaction, top MLP.

    `interaction` "dot" is the original DLRM pairwise dot product; "dcn" is DLRM-DCNv2's low-rank cross network
    (`dcn_num_layers` layers of rank `dcn_low_rank_dim`) over the concatenated features.
    `multi_hot_sizes` optionally gives each table its own lookups per sample; otherwise every table uses
    `pooling_factor`.
    """

    name: str
    num_dense_features: int
    embedding_rows: tuple[int, ...]
    embedding_dim: int
    bottom_mlp: tuple[int, ...]
    top_mlp: tuple[int, ...]
    pooling_factor: int = 1
    multi_hot_sizes: tuple[int, ...] = ()
    interaction: Literal["dot", "dcn"] = "dot"
    dcn_num_layers: int = 3
    dcn_low_rank_dim: int = 512
    # Always empty (DLRM keys are ours, with no Hugging Face defaults); present so every model config has it.
    assumed: Mapping[str, object] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _freeze_assumed(self)
        if not self.name:
            raise EmulatorError("is empty. Fix: give the model a name.", field="name")
        _positive(self, "num_dense_features", "embedding_dim", "pooling_factor", "dcn_num_layers",
                  "dcn_low_rank_dim")
        for field in ("embedding_rows", "bottom_mlp", "top_mlp", "multi_hot_sizes"):
            values = tuple(getattr(self, field))
            object.__setattr__(self, field, values)
            for v in values:
                if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= MAX_INTEGER:
                    raise EmulatorError(f"must list positive whole numbers, got {list(values)}. Fix: correct "
                                        f"{v!r}.", field=field)
            if not values and field != "multi_hot_sizes":
                raise EmulatorError("is empty. Fix: list at least one size.", field=field)
        if self.multi_hot_sizes and len(self.multi_hot_sizes) != len(self.embedding_rows):
            raise EmulatorError(f"has {len(self.multi_hot_sizes)} entries for {len(self.embedding_rows)} tables. "
                                "Fix: give one lookup count per table.", field="multi_hot_sizes")
        if self.bottom_mlp[-1] != self.embedding_dim:
            raise EmulatorError(f"ends with {self.bottom_mlp[-1]} but embedding_dim is {self.embedding_dim}. Fix: end "
                                "the bottom MLP with embedding_dim (its output joins the embeddings).",
                                field="bottom_mlp")
        if self.top_mlp[-1] != 1:
            raise EmulatorError(f"ends with {self.top_mlp[-1]}. Fix: end it with 1 (one click probability per "
                                "sample).", field="top_mlp")
        _choice(self.interaction, "interaction", ("dot", "dcn"))

    @property
    def num_tables(self) -> int:
        return len(self.embedding_rows)

    @property
    def pooling_factors(self) -> tuple[int, ...]:
        """Lookups per sample for each table."""
        return self.multi_hot_sizes or (self.pooling_factor,) * self.num_tables

    @property
    def interaction_dim(self) -> int:
        """Width of the top MLP's input."""
        num_features = self.num_tables + 1
        if self.interaction == "dcn":
            return num_features * self.embedding_dim
        return self.embedding_dim + num_features * (num_features - 1) // 2

    def _mlp_shapes(self) -> list[tuple[int, int]]:
        widths = (self.num_dense_features, *self.bottom_mlp)
        shapes = list(itertools.pairwise(widths))
        top = (self.interaction_dim, *self.top_mlp)
        shapes += list(itertools.pairwise(top))
        if self.interaction == "dcn":
            d, r = self.interaction_dim, self.dcn_low_rank_dim
            shapes += [(d, r), (r, d)] * self.dcn_num_layers
        return shapes

    def num_matmul_params(self) -> int:
        """Weights of the MLPs (and DCN cross layers); embedding tables are lookups, not matmuls."""
        return sum(i * o for i, o in self._mlp_shapes())

    def num_active_matmul_params(self) -> int:
        return self.num_matmul_params()

    def num_embedding_params(self) -> int:
        return sum(self.embedding_rows) * self.embedding_dim

    def num_params(self) -> int:
        biases = sum(o for _, o in self._mlp_shapes())
        if self.interaction == "dcn":
            biases -= self.dcn_num_layers * self.dcn_low_rank_dim  # the down-projection has no bias
        return self.num_matmul_params() + biases + self.num_embedding_params()

    def num_active_params(self) -> int:
        return self.num_params()

    @property
    def is_moe(self) -> bool:
        return False

    def scaled(self, **changes: Any) -> DLRMConfig:
        """A scale model (e.g. `embedding_rows=(1000,) * 26`)."""
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "dlrm", **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}
        out["assumed"] = dict(self.assumed)
        for key in ("embedding_rows", "bottom_mlp", "top_mlp", "multi_hot_sizes"):
            out[key] = list(out[key])
        out.update(num_params=self.num_params(), num_matmul_params=self.num_matmul_params(),
                   num_embedding_params=self.num_embedding_params(), interaction_dim=self.interaction_dim)
        return out


ModelConfig = TransformerConfig | DLRMConfig


def ceil_div(a: int, b: int) -> int:
    return -(-a // b) if b else 0


__all__ = ["DLRMConfig", "ModelConfig", "TransformerConfig", "ceil_div"]
