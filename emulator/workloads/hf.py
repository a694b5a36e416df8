"""Import Hugging Face `config.json` files (and our own DLRM keys) into model configs.

Supported `model_type`s: llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, deepseek_v2, deepseek_v3, kimi_k2 (the
DeepSeek-V3 architecture), kimi_k25 (its `text_config`, the language model), minimax_m2, gpt2, gptj, nemotron,
gpt_oss, and `dlrm` (ours). Keys a model type does not use are ignored (config.json files carry many).
A key Hugging Face's config class defaults (`HF_DEFAULTS`: context length, norm epsilon, RoPE theta, tied
embeddings...) may be left out: its default is taken and recorded in the config's `assumed` mapping, which
`--json` output shows. Sizes stay required. `dlrm` keys are all ours, so an unknown one is an error:

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
from types import MappingProxyType
from typing import Any

from emulator.errors import EmulatorError, nearest
from emulator.fields import Fields, check_number
from emulator.workloads.config import DLRMConfig, ModelConfig, TransformerConfig

_MISSING = object()

# Hugging Face's defaults for keys a config.json may leave out: what each config class takes when the key is
# absent, from transformers' src/transformers/models/<type>/configuration_<type>.py (configuration_llama.py,
# configuration_mistral.py, configuration_qwen2.py, configuration_qwen3.py, configuration_qwen3_moe.py,
# configuration_mixtral.py, configuration_deepseek_v2.py, configuration_deepseek_v3.py, configuration_gpt2.py,
# configuration_gptj.py, configuration_nemotron.py, configuration_gpt_oss.py; RoPE theta 10000 is `default_theta`
# unless the class sets its own, and GPT-2 and GPT-J inherit tie_word_embeddings=True from PretrainedConfig).
# Sizes (hidden_size, num_hidden_layers, vocab_size, intermediate_size, expert counts and widths) are left out on
# purpose: HF defaults them to one reference checkpoint, and planning a model with another model's sizes would be
# silently wrong; head dims are listed where the class defaults a number rather than hidden / heads (Qwen3,
# GPT-OSS). A default of None in HF means "derived" (head_dim = hidden / heads, num_key_value_heads = heads,
# n_inner = 4 x n_embd): that is the architecture's definition, not an assumption, so those keys are not listed.
_LLAMA_LIKE = {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False}
_QWEN = {**_LLAMA_LIKE, "max_position_embeddings": 32768}
HF_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "llama": {**_LLAMA_LIKE, "max_position_embeddings": 2048},
    "mistral": {**_LLAMA_LIKE, "max_position_embeddings": 4096 * 32, "num_key_value_heads": 8},
    "qwen2": {**_QWEN, "num_key_value_heads": 32},
    "qwen3": {**_QWEN, "num_key_value_heads": 32, "head_dim": 128},
    "qwen3_moe": {**_QWEN, "num_key_value_heads": 4, "decoder_sparse_step": 1, "mlp_only_layers": []},
    "mixtral": {"rms_norm_eps": 1e-5, "rope_theta": 1e6, "tie_word_embeddings": False,
                "max_position_embeddings": 4096 * 32, "num_key_value_heads": 8},
    "deepseek_v2": {**_LLAMA_LIKE, "max_position_embeddings": 2048, "n_shared_experts": 2, "first_k_dense_replace": 0,
                    "q_lora_rank": 1536},
    "deepseek_v3": {**_LLAMA_LIKE, "max_position_embeddings": 4096, "n_shared_experts": 1, "first_k_dense_replace": 3,
                    "q_lora_rank": 1536},
    "nemotron": {"norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
                 "max_position_embeddings": 4096, "attention_bias": False, "mlp_bias": False},
    "gpt_oss": {"rms_norm_eps": 1e-5, "rope_theta": 150000.0, "tie_word_embeddings": False,
                "max_position_embeddings": 131072, "head_dim": 64, "attention_bias": True, "sliding_window": 128},
    "gpt2": {"n_positions": 1024, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True},
    "gptj": {"n_positions": 2048, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True},
})


class _Reader:
    """Reads keys from one config mapping, remembering which of our fields came from which key and which keys
    took Hugging Face's default."""

    def __init__(self, mapping: Mapping[str, Any], origin: str, model_type: str) -> None:
        self.mapping, self.origin, self.model_type = mapping, origin, model_type
        self.source: dict[str, str] = {}
        self.assumed: dict[str, Any] = {}

    def get(self, key: str, derived: Any = _MISSING, *, field: str | None = None) -> Any:
        """The key's value. Absent: HF's default (recorded as assumed), else `derived`. Null: `derived` (what HF
        makes of None), else HF's default. Neither: a required key, so an error."""
        if field:
            self.source[field] = key
        value = self.mapping.get(key, _MISSING)
        if value is not _MISSING and value is not None:
            return value
        defaults = HF_DEFAULTS.get(self.model_type, {})
        if derived is not _MISSING and (value is None or key not in defaults):
            return derived
        if key in defaults:
            self.assumed[key] = defaults[key]
            return defaults[key]
        why = ", and Hugging Face has no default for it" if self.model_type in HF_DEFAULTS else ""
        raise EmulatorError(
            f"is {'missing' if value is _MISSING else 'null'}; a '{self.model_type}' config needs it{why}. Fix: add "
            f"\"{key}\" to the config (copy it from the model's Hugging Face config.json).", file=self.origin,
            field=key)


def _build(reader: _Reader, cls: Callable[..., ModelConfig], **kwargs: Any) -> ModelConfig:
    try:
        return cls(**kwargs, assumed=reader.assumed)
    except EmulatorError as error:
        if error.file:
            raise
        message = str(error)
        if error.field:
            message = message.removeprefix(f"field '{error.field}': ")
        key = reader.source.get(error.field or "", error.field)
        if key in reader.assumed:  # the clash may come from a default the user never wrote
            message += (f" ({key} is not in the config, so Hugging Face's default for {reader.model_type}, "
                        f"{reader.assumed[key]}, was assumed. Fix: add \"{key}\" with the model's value.)")
        raise EmulatorError(message, file=reader.origin, field=key) from None
    except TypeError as error:  # a value of the wrong type (e.g. a string where a number goes)
        raise EmulatorError(f"has a value of the wrong type ({error}). Fix: check the numbers in the config.",
                            file=reader.origin) from None


def _llama_like(r: _Reader, name: str, eps_key: str = "rms_norm_eps", **extra: Any) -> dict[str, Any]:
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
        norm_eps=_positive(r, eps_key, "norm_eps"),
        rope_theta=_positive(r, "rope_theta", "rope_theta"),
        tie_embeddings=bool(r.get("tie_word_embeddings", field="tie_embeddings")),
        **extra,
    )


def _positive(r: _Reader, key: str, field: str) -> float:
    """A number > 0 such as a norm epsilon or the RoPE base (HF's default when absent)."""
    return check_number(r.get(key, field=field), file=r.origin, field=key)


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
    step = r.get("decoder_sparse_step") or 1
    dense_only = r.get("mlp_only_layers") or []
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise EmulatorError(f"is {step!r}; it must be a whole number >= 1. Fix: copy it from the model's config.json.",
                            file=r.origin, field="decoder_sparse_step")
    if not isinstance(dense_only, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in dense_only):
        raise EmulatorError(f"is {dense_only!r}; it must be a list of layer indices. Fix: copy it from the model's "
                            "config.json.", file=r.origin, field="mlp_only_layers")
    num_layers = kwargs["num_layers"]
    num_dense = 0
    if isinstance(num_layers, int) and not isinstance(num_layers, bool):  # else TransformerConfig refuses it
        # Layers i with (i + 1) % step == 0 are sparse unless listed: counted, not enumerated (a typo may say 1e15).
        sparse = num_layers // step - len({i for i in dense_only if 0 <= i < num_layers and (i + 1) % step == 0})
        num_dense = num_layers - sparse
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
                  num_shared_experts=r.get("n_shared_experts", field="num_shared_experts"),
                  num_dense_layers=r.get("first_k_dense_replace", field="num_dense_layers"),
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


def _kimi_k25(r: _Reader, name: str) -> ModelConfig:
    # Kimi-K2.5 puts a vision encoder before a Kimi-K2 language model, whose config.json is its `text_config`: the
    # language model is what is planned (an image's tokens would add their encoder's work, not modelled).
    text = r.get("text_config", field="text_config")
    if not isinstance(text, Mapping):
        raise EmulatorError(f"is {text!r}; it must be the language model's config mapping. Fix: copy text_config from "
                            "the model's config.json.", file=r.origin, field="text_config")
    return from_hf_config(text, origin=f"{r.origin} text_config", name=name)


def _minimax_m2(r: _Reader, name: str) -> ModelConfig:
    # MiniMax-M2: every layer routes to experts of intermediate_size (no shared expert), scored by a sigmoid with a
    # correction bias as DeepSeek-V3's; QK norm over the whole q and k projections (per_layer: the same work as per
    # head); RoPE on rotary_dim of each head (rotated here over the whole head: a little more elementwise work); the
    # multi-token-prediction modules are left out as DeepSeek-V3's.
    shared = r.get("shared_intermediate_size", 0)
    if shared:
        raise EmulatorError(f"is {shared!r}: a shared expert beside the routed ones is not modelled for minimax_m2. "
                            "Fix: set it to 0 or describe the model as deepseek_v3.", file=r.origin,
                            field="shared_intermediate_size")
    kwargs = _llama_like(r, name, qk_norm=bool(r.get("use_qk_norm", False)))
    kwargs.update(num_experts=r.get("num_local_experts", field="num_experts"),
                  num_experts_per_token=r.get("num_experts_per_tok", field="num_experts_per_token"),
                  moe_ffn_hidden_size=kwargs["ffn_hidden_size"],
                  router="sigmoid" if r.get("scoring_func", "softmax") == "sigmoid" else "softmax")
    return _build(r, TransformerConfig, **kwargs)


def _nemotron(r: _Reader, name: str) -> ModelConfig:
    # Nemotron-4: LayerNorm (Megatron's layernorm1p, the same kernel), a non-gated MLP with squared ReLU (modelled as
    # the non-gated 2-GEMM MLP, whose one elementwise activation costs the same), RoPE on half of each head
    # (partial_rotary_factor 0.5; rotated here over the whole head: a little more elementwise work).
    bias = bool(r.get("attention_bias", field="qkv_bias"))
    return _build(r, TransformerConfig, **_llama_like(r, name, eps_key="norm_eps", norm="layernorm", mlp="gelu",
                                                      qkv_bias=bias, out_bias=bias,
                                                      mlp_bias=bool(r.get("mlp_bias", field="mlp_bias"))))


def _full_attention_every(r: _Reader, num_layers: int) -> int:
    """`full_attention_every` from config.json's `layer_types` (absent: GPT-OSS's default, sliding and full
    alternating from a sliding layer 0): the n whose every n-th layer is full, 0 when all slide; another pattern
    is an error, since the emulator states windows as that one period."""
    types = r.mapping.get("layer_types")
    if types is None:
        r.assumed["layer_types"] = "sliding_attention and full_attention alternating"
        return 2
    if not isinstance(types, list) or len(types) != num_layers or any(
            t not in ("sliding_attention", "full_attention") for t in types):
        raise EmulatorError(f"must list 'sliding_attention' or 'full_attention' for each of the {num_layers} layers. "
                            "Fix: copy layer_types from the model's config.json.", file=r.origin, field="layer_types")
    full = [i for i, t in enumerate(types) if t == "full_attention"]
    every = full[0] + 1 if full else 0
    if every and [i for i in range(num_layers) if (i + 1) % every == 0] != full:
        raise EmulatorError(f"puts full attention at layers {full[:6]}..., not every n-th layer as the emulator states "
                            "windows. Fix: use a layer_types pattern with one period.", file=r.origin,
                            field="layer_types")
    return every


def _gpt_oss(r: _Reader, name: str) -> ModelConfig:
    # GPT-OSS approximated: the attention sinks (a learned logit per head) are left out of the softmax (one more
    # key per row); the clamped SwiGLU experts run as SwiGLU; YaRN scaling as plain RoPE (same cost); the experts'
    # and the router's biases are left out. Its sliding-window layers (128 keys) alternate with full ones.
    bias = bool(r.get("attention_bias", field="qkv_bias"))
    kwargs = _llama_like(r, name, qkv_bias=bias, out_bias=bias)
    kwargs.update(num_experts=r.get("num_local_experts", field="num_experts"),
                  num_experts_per_token=r.get("num_experts_per_tok", field="num_experts_per_token"),
                  moe_ffn_hidden_size=kwargs["ffn_hidden_size"],
                  sliding_window=r.get("sliding_window", field="sliding_window"),
                  full_attention_every=_full_attention_every(r, kwargs["num_layers"]))
    return _build(r, TransformerConfig, **kwargs)


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
        "norm_eps": _positive(r, "layer_norm_epsilon", "norm_eps"),
        "norm": "layernorm", "mlp": "gelu", "positions": "rope" if rope else "learned",
        "mlp_bias": True, "qkv_bias": not rope, "out_bias": not rope,
        "tie_embeddings": bool(r.get("tie_word_embeddings", field="tie_embeddings")),
    }


def _gpt2(r: _Reader, name: str) -> ModelConfig:
    return _build(r, TransformerConfig, **_gpt(r, name, rope=False))


def _gptj(r: _Reader, name: str) -> ModelConfig:
    # GPT-J approximated as a sequential GPT block with rotary positions over the whole head (GPT-J rotates the
    # first rotary_dim=64 of 256 dims and runs attention and MLP in parallel from one LayerNorm). The matmuls, and
    # so nearly all the time, are the same; the lm_head bias (vocab_size values) is left out.
    return _build(r, TransformerConfig, **_gpt(r, name, rope=True))


_DLRM_KEYS = ("model_type", "name", "num_dense_features", "embedding_rows", "embedding_dim", "bottom_mlp",
              "top_mlp", "pooling_factor", "multi_hot_sizes", "interaction", "dcn_num_layers", "dcn_low_rank_dim")


def _dlrm(r: _Reader, name: str) -> ModelConfig:
    Fields(r.mapping, file=r.origin, allowed=_DLRM_KEYS)  # our own keys: an unknown one is a typo
    kwargs: dict[str, Any] = {"name": r.mapping.get("name", name)}
    for key in ("num_dense_features", "embedding_dim"):
        kwargs[key] = r.get(key, field=key)
    for key in ("embedding_rows", "bottom_mlp", "top_mlp"):
        kwargs[key] = _sizes(r, key)
    for key in ("pooling_factor", "interaction", "dcn_num_layers", "dcn_low_rank_dim"):
        if key in r.mapping:
            kwargs[key] = r.get(key, field=key)
    if "multi_hot_sizes" in r.mapping:
        kwargs["multi_hot_sizes"] = _sizes(r, "multi_hot_sizes")
    return _build(r, DLRMConfig, **kwargs)


def _sizes(r: _Reader, key: str) -> tuple[Any, ...]:
    """A list of sizes as a tuple (DLRMConfig checks each size)."""
    value = r.get(key, field=key)
    if not isinstance(value, list):
        raise EmulatorError(f"is {value!r}; it must be a list of whole numbers, one per table or layer. Fix: write "
                            f"e.g. \"{key}\": [512, 256, 64].", file=r.origin, field=key)
    return tuple(value)


_IMPORTERS: dict[str, Callable[[_Reader, str], ModelConfig]] = {
    "llama": _llama, "mistral": _llama, "qwen2": _qwen2, "qwen3": _qwen3, "mixtral": _mixtral,
    "qwen3_moe": _qwen3_moe, "deepseek_v2": _deepseek, "deepseek_v3": _deepseek_v3, "kimi_k2": _deepseek_v3,
    "kimi_k25": _kimi_k25, "minimax_m2": _minimax_m2, "gpt2": _gpt2, "gptj": _gptj, "nemotron": _nemotron,
    "gpt_oss": _gpt_oss, "dlrm": _dlrm,
}


def supported_model_types() -> list[str]:
    return sorted(_IMPORTERS)


def from_hf_config(mapping: Mapping[str, Any], *, origin: str, name: str | None = None) -> ModelConfig:
    """A model config from a Hugging Face config.json mapping (or our `dlrm` keys); `origin` names the file."""
    if not isinstance(mapping, Mapping):
        raise EmulatorError(f"must be a mapping of config.json keys, got {type(mapping).__name__}. Fix: use the "
                            "model's config.json.", file=origin)
    model_type = mapping.get("model_type")
    if model_type is None:
        raise EmulatorError(f"is missing. Fix: say which architecture this is ({', '.join(supported_model_types())}"
                            "), e.g. \"model_type\": \"llama\".",
                            file=origin, field="model_type")
    importer = _IMPORTERS.get(str(model_type))
    if importer is None:
        raise EmulatorError(f"'{model_type}' is not supported; {nearest(str(model_type), _IMPORTERS)}",
                            file=origin, field="model_type")
    default_name = name or str(mapping.get("_name_or_path") or "") or _name_from_origin(origin) or str(model_type)
    rope = mapping.get("rope_parameters")
    if "rope_theta" not in mapping and isinstance(rope, Mapping) and "rope_theta" in rope:
        mapping = {**mapping, "rope_theta": rope["rope_theta"]}  # where transformers 5 writes it
    return importer(_Reader(mapping, origin, str(model_type)), default_name)


def _name_from_origin(origin: str) -> str:
    base = os.path.basename(origin.rstrip("/"))
    if base == "config.json":
        base = os.path.basename(os.path.dirname(origin.rstrip("/")))
    return os.path.splitext(base)[0] if base.endswith((".json", ".yaml", ".yml")) else base  # inline: the scenario
