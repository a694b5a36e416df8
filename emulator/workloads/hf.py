"""Import Hugging Face `config.json` files (and our own DLRM keys) into model configs.

Supported `model_type`s: llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, deepseek_v2, deepseek_v3, gpt2, gptj,
and `dlrm` (ours). Keys a model type does not use are ignored (config.json files carry many), except for `dlrm`,
whose keys are all ours, so an unknown one is an error:

    model_type: "dlrm"                  (required)
    name: str                           (optional; defaults to the file name or "dlrm")
    num_dense_features: int             (required) dense (continuous) features per sample
    embedding_rows: [int, ...]          (required) rows of each embedding table, one entry per table
    embedding_dim: int                  (required) width of every table; the bottom MLP's last width
    bottom_mlp: [int, ...]              (required) widths of the bottom MLP after the dense input
    top_mlp: [int, ...]                 (required) widths of the top MLP, ending in 1
    pooling_factor: int                 (optional, 1) lookups per table per sample
    multi_hot_sizes: [int, ...]         (optional) lookups per sample for each table, overriding pooling_factor
    interaction: "dot" | "dcn"          (optional, "dot")
    dcn_num_layers, dcn_low_rank_dim    (optional, 3 and 512) DCNv2 cross network shape
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from emulator.errors import EmulatorError, nearest
from emulator.workloads.config import DLRMConfig, ModelConfig, TransformerConfig

_MISSING = object()


class _Reader:
    """Reads keys from one config mapping, remembering which of our fields came from which key."""

    def __init__(self, mapping: Mapping[str, Any], origin: str, model_type: str) -> None:
        self.mapping, self.origin, self.model_type = mapping, origin, model_type
        self.source: dict[str, str] = {}

    def get(self, key: str, default: Any = _MISSING, *, field: str | None = None) -> Any:
        if field:
            self.source[field] = key
        value = self.mapping.get(key, _MISSING)
        if value is None and default is not _MISSING:
            return default
        if value is _MISSING:
            if default is _MISSING:
                raise EmulatorError(
                    f"is missing; a '{self.model_type}' config needs it. Add \"{key}\" to the config (copy it from "
                    "the model's Hugging Face config.json).", file=self.origin, field=key)
            return default
        return value


def _build(reader: _Reader, cls: Callable[..., ModelConfig], **kwargs: Any) -> ModelConfig:
    try:
        return cls(**kwargs)
    except EmulatorError as error:
        if error.file:
            raise
        message = str(error)
        if error.field:
            message = message.removeprefix(f"field '{error.field}': ")
        key = reader.source.get(error.field or "", error.field)
        raise EmulatorError(message, file=reader.origin, field=key) from None
    except TypeError as error:  # a value of the wrong type (e.g. a string where a number goes)
        raise EmulatorError(f"has a value of the wrong type ({error}); check the numbers in the config.",
                            file=reader.origin) from None


def _llama_like(r: _Reader, name: str, **extra: Any) -> dict[str, Any]:
    heads = r.get("num_attention_heads", field="num_heads")
    return dict(
        name=name,
        num_layers=r.get("num_hidden_layers", field="num_layers"),
        hidden_size=r.get("hidden_size", field="hidden_size"),
        num_heads=heads,
        num_kv_heads=r.get("num_key_value_heads", heads, field="num_kv_heads"),
        head_dim=r.get("head_dim", 0, field="head_dim"),
        ffn_hidden_size=r.get("intermediate_size", field="ffn_hidden_size"),
        vocab_size=r.get("vocab_size", field="vocab_size"),
        max_seq_len=r.get("max_position_embeddings", field="max_seq_len"),
        norm_eps=float(r.get("rms_norm_eps", 1e-6, field="norm_eps")),
        rope_theta=float(r.get("rope_theta", 10000.0, field="rope_theta")),
        tie_embeddings=bool(r.get("tie_word_embeddings", False, field="tie_embeddings")),
        **extra,
    )


def _llama(r: _Reader, name: str) -> ModelConfig:
    return _build(r, TransformerConfig, **_llama_like(r, name, qkv_bias=bool(r.get("attention_bias", False))))


def _qwen2(r: _Reader, name: str) -> ModelConfig:
    return _build(r, TransformerConfig, **_llama_like(r, name, qkv_bias=True))


def _qwen3(r: _Reader, name: str) -> ModelConfig:
    return _build(r, TransformerConfig, **_llama_like(r, name, qk_norm=True))


def _mixtral(r: _Reader, name: str) -> ModelConfig:
    kwargs = _llama_like(r, name)
    kwargs.update(num_experts=r.get("num_local_experts", field="num_experts"),
                  num_experts_per_token=r.get("num_experts_per_tok", field="num_experts_per_token"),
                  moe_ffn_hidden_size=kwargs["ffn_hidden_size"])
    return _build(r, TransformerConfig, **kwargs)


def _qwen3_moe(r: _Reader, name: str) -> ModelConfig:
    kwargs = _llama_like(r, name, qk_norm=True)
    # HF: layer i is sparse unless listed in mlp_only_layers or (i + 1) % decoder_sparse_step != 0. Stages only
    # need counts, so the dense layers are treated as coming first.
    step = r.get("decoder_sparse_step", 1) or 1
    dense_only = set(r.get("mlp_only_layers", []) or [])
    num_layers = kwargs["num_layers"]
    num_dense = sum(1 for i in range(num_layers) if i in dense_only or (i + 1) % step) if isinstance(
        num_layers, int) else 0
    kwargs.update(num_experts=r.get("num_experts", field="num_experts"),
                  num_experts_per_token=r.get("num_experts_per_tok", field="num_experts_per_token"),
                  moe_ffn_hidden_size=r.get("moe_intermediate_size", field="moe_ffn_hidden_size"),
                  num_dense_layers=num_dense)
    return _build(r, TransformerConfig, **kwargs)


def _deepseek(r: _Reader, name: str) -> ModelConfig:
    # The multi-token-prediction (MTP) module of DeepSeek-V3 (num_nextn_predict_layers) is ignored: it is an extra
    # training objective, not part of the model that serves tokens, and the published 671B excludes it.
    # Group-limited routing (n_group, topk_group) is treated as plain top-k: it changes which experts are chosen,
    # not how much work they do.
    kwargs = _llama_like(r, name)
    kwargs.update(num_experts=r.get("n_routed_experts", field="num_experts"),
                  num_experts_per_token=r.get("num_experts_per_tok", field="num_experts_per_token"),
                  moe_ffn_hidden_size=r.get("moe_intermediate_size", field="moe_ffn_hidden_size"),
                  num_shared_experts=r.get("n_shared_experts", 0, field="num_shared_experts"),
                  num_dense_layers=r.get("first_k_dense_replace", 0, field="num_dense_layers"),
                  router="sigmoid" if r.get("scoring_func", "softmax") == "sigmoid" else "softmax",
                  attention="mla",
                  q_lora_rank=r.get("q_lora_rank", 0, field="q_lora_rank"),
                  kv_lora_rank=r.get("kv_lora_rank", field="kv_lora_rank"),
                  qk_nope_head_dim=r.get("qk_nope_head_dim", field="qk_nope_head_dim"),
                  qk_rope_head_dim=r.get("qk_rope_head_dim", field="qk_rope_head_dim"),
                  v_head_dim=r.get("v_head_dim", field="v_head_dim"),
                  num_kv_heads=kwargs["num_heads"], head_dim=0)
    return _build(r, TransformerConfig, **kwargs)


def _deepseek_v3(r: _Reader, name: str) -> ModelConfig:
    r.mapping = {"scoring_func": "sigmoid", **r.mapping}
    return _deepseek(r, name)


def _gpt(r: _Reader, name: str, *, rope: bool) -> dict[str, Any]:
    hidden = r.get("n_embd", field="hidden_size")
    inner = r.get("n_inner", None, field="ffn_hidden_size")
    return {
        "name": name,
        "num_layers": r.get("n_layer", field="num_layers"),
        "hidden_size": hidden,
        "num_heads": r.get("n_head", field="num_heads"),
        "ffn_hidden_size": inner if inner is not None else (4 * hidden if isinstance(hidden, int) else hidden),
        "vocab_size": r.get("vocab_size", field="vocab_size"),
        "max_seq_len": r.get("n_positions", field="max_seq_len"),
        "norm_eps": float(r.get("layer_norm_epsilon", 1e-5, field="norm_eps")),
        "norm": "layernorm", "mlp": "gelu", "positions": "rope" if rope else "learned",
        "mlp_bias": True, "qkv_bias": not rope, "out_bias": not rope,
        "tie_embeddings": bool(r.get("tie_word_embeddings", not rope, field="tie_embeddings")),
    }


def _gpt2(r: _Reader, name: str) -> ModelConfig:
    return _build(r, TransformerConfig, **_gpt(r, name, rope=False))


def _gptj(r: _Reader, name: str) -> ModelConfig:
    # GPT-J approximated as a sequential GPT block with rotary positions over the whole head (GPT-J rotates the
    # first rotary_dim=64 of 256 dims and runs attention and MLP in parallel from one LayerNorm). The matmuls, and
    # so nearly all the time, are the same; the lm_head bias (vocab_size values) is left out.
    return _build(r, TransformerConfig, **_gpt(r, name, rope=True))


_DLRM_KEYS = {"model_type", "name", "num_dense_features", "embedding_rows", "embedding_dim", "bottom_mlp",
              "top_mlp", "pooling_factor", "multi_hot_sizes", "interaction", "dcn_num_layers", "dcn_low_rank_dim"}


def _dlrm(r: _Reader, name: str) -> ModelConfig:
    for key in r.mapping:
        if key not in _DLRM_KEYS:
            raise EmulatorError(f"is not a dlrm key; {nearest(key, _DLRM_KEYS)}", file=r.origin, field=key)
    kwargs: dict[str, Any] = {"name": r.mapping.get("name", name)}
    for key in ("num_dense_features", "embedding_dim"):
        kwargs[key] = r.get(key, field=key)
    for key in ("embedding_rows", "bottom_mlp", "top_mlp"):
        kwargs[key] = tuple(r.get(key, field=key))
    for key in ("pooling_factor", "interaction", "dcn_num_layers", "dcn_low_rank_dim"):
        if key in r.mapping:
            kwargs[key] = r.get(key, field=key)
    if "multi_hot_sizes" in r.mapping:
        kwargs["multi_hot_sizes"] = tuple(r.get("multi_hot_sizes", field="multi_hot_sizes"))
    return _build(r, DLRMConfig, **kwargs)


_IMPORTERS: dict[str, Callable[[_Reader, str], ModelConfig]] = {
    "llama": _llama, "mistral": _llama, "qwen2": _qwen2, "qwen3": _qwen3, "mixtral": _mixtral,
    "qwen3_moe": _qwen3_moe, "deepseek_v2": _deepseek, "deepseek_v3": _deepseek_v3, "gpt2": _gpt2,
    "gptj": _gptj, "dlrm": _dlrm,
}


def supported_model_types() -> list[str]:
    return sorted(_IMPORTERS)


def from_hf_config(mapping: Mapping[str, Any], *, origin: str, name: str | None = None) -> ModelConfig:
    """A model config from a Hugging Face config.json mapping (or our `dlrm` keys); `origin` names the file."""
    if not isinstance(mapping, Mapping):
        raise EmulatorError(f"must be a mapping of config.json keys, got {type(mapping).__name__}.", file=origin)
    model_type = mapping.get("model_type")
    if model_type is None:
        raise EmulatorError(f"is missing; say which architecture this is ({', '.join(supported_model_types())}).",
                            file=origin, field="model_type")
    importer = _IMPORTERS.get(str(model_type))
    if importer is None:
        raise EmulatorError(f"'{model_type}' is not supported; {nearest(str(model_type), _IMPORTERS)}",
                            file=origin, field="model_type")
    default_name = name or str(mapping.get("_name_or_path") or "") or _name_from_origin(origin) or str(model_type)
    return importer(_Reader(mapping, origin, str(model_type)), default_name)


def _name_from_origin(origin: str) -> str:
    base = os.path.basename(origin.rstrip("/"))
    if base == "config.json":
        base = os.path.basename(os.path.dirname(origin.rstrip("/")))
    return base.removesuffix(".json")
