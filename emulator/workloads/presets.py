"""Named models, written as the keys of their Hugging Face config.json and imported by `from_hf_config`.

Sources: each model's config.json on the Hugging Face Hub (meta-llama/*, mistralai/*, deepseek-ai/DeepSeek-V3,
Qwen/Qwen3-235B-A22B, Qwen/Qwen3-32B, Qwen/Qwen3-30B-A3B, EleutherAI/gpt-j-6b, openai/gpt-oss-120b; recalled, not
re-fetched, and checked against the model cards' parameter counts (tests/test_workloads.py): openai/gpt-oss-20b
(20.9B), Qwen/Qwen3-8B (8.2B), Qwen/Qwen3-14B (14.8B), meta-llama/Llama-3.2-1B (1.24B) and Llama-3.2-3B (3.21B,
both with tied embeddings);
MiniMaxAI/MiniMax-M2.5 and moonshotai/Kimi-K2.5 (its text_config) as NVIDIA AIConfigurator ships them,
ai-dynamo/aiconfigurator aic-core/src/aiconfigurator_core/model_configs/MiniMaxAI--MiniMax-M2.5_config.json and
moonshotai--Kimi-K2.5_config.json, 2026-07); GPT-3 175B
from Brown et al. 2020, table 2.1; Nemotron-4 340B from its technical report (NVIDIA 2024, arXiv 2406.11704,
Table 1: 96 layers, hidden 18432, 96 heads, 8 KV heads, squared-ReLU MLP of 73728, vocab 256000, RoPE, 4096
context); DLRM-v2 from the MLPerf Training reference (recommendation_v2/torchrec_dlrm: Criteo 1TB multi-hot,
tables capped at 40M rows). What the Nemotron and GPT-OSS importers approximate is said in `hf._nemotron` and
`hf._gpt_oss`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from emulator.errors import EmulatorError, nearest
from emulator.workloads.config import ModelConfig
from emulator.workloads.hf import from_hf_config


def _llama(layers: int, hidden: int, heads: int, kv_heads: int, ffn: int, vocab: int, positions: int,
           theta: float, eps: float = 1e-5) -> dict[str, Any]:
    return {"model_type": "llama", "num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": heads,
                "num_key_value_heads": kv_heads, "intermediate_size": ffn, "vocab_size": vocab,
                "max_position_embeddings": positions, "rope_theta": theta,
            "rms_norm_eps": eps, "tie_word_embeddings": False}


_PRESETS: dict[str, dict[str, Any]] = {
    "llama2-7b": _llama(32, 4096, 32, 32, 11008, 32000, 4096, 10000.0),
    "llama2-13b": _llama(40, 5120, 40, 40, 13824, 32000, 4096, 10000.0),
    "llama2-70b": _llama(80, 8192, 64, 8, 28672, 32000, 4096, 10000.0),
    "llama3-8b": _llama(32, 4096, 32, 8, 14336, 128256, 8192, 500000.0),
    "llama3-70b": _llama(80, 8192, 64, 8, 28672, 128256, 8192, 500000.0),
    "llama3.1-8b": _llama(32, 4096, 32, 8, 14336, 128256, 131072, 500000.0),
    "llama3.1-70b": _llama(80, 8192, 64, 8, 28672, 128256, 131072, 500000.0),
    "llama3.1-405b": _llama(126, 16384, 128, 8, 53248, 128256, 131072, 500000.0),
    "mixtral-8x7b": {**_llama(32, 4096, 32, 8, 14336, 32000, 32768, 1e6), "model_type": "mixtral",
                     "num_local_experts": 8, "num_experts_per_tok": 2},
    "mixtral-8x22b": {**_llama(56, 6144, 48, 8, 16384, 32768, 65536, 1e6), "model_type": "mixtral",
                      "num_local_experts": 8, "num_experts_per_tok": 2},
    "deepseek-v3": {
        **_llama(61, 7168, 128, 128, 18432, 129280, 163840, 10000.0, 1e-6), "model_type": "deepseek_v3",
        "n_routed_experts": 256, "num_experts_per_tok": 8, "moe_intermediate_size": 2048, "n_shared_experts": 1,
        "first_k_dense_replace": 3, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64, "v_head_dim": 128, "scoring_func": "sigmoid",
        "num_nextn_predict_layers": 1,  # the MTP module: ignored (see hf.py)
    },
    "qwen3-235b-a22b": {
        **_llama(94, 4096, 64, 4, 12288, 151936, 40960, 1e6, 1e-6), "model_type": "qwen3_moe", "head_dim": 128,
        "num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 1536, "decoder_sparse_step": 1,
        "mlp_only_layers": [],
    },
    "qwen3-32b": {**_llama(64, 5120, 64, 8, 25600, 151936, 40960, 1e6, 1e-6), "model_type": "qwen3", "head_dim": 128},
    "kimi-k2.5": {  # the language model (text_config); DeepSeek-V3's architecture with 384 experts and 64 heads
        **_llama(61, 7168, 64, 64, 18432, 163840, 262144, 50000.0, 1e-5), "model_type": "kimi_k2",
        "n_routed_experts": 384, "num_experts_per_tok": 8, "moe_intermediate_size": 2048, "n_shared_experts": 1,
        "first_k_dense_replace": 1, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64, "v_head_dim": 128, "scoring_func": "sigmoid",
    },
    "minimax-m2.5": {
        **_llama(62, 3072, 48, 8, 1536, 200064, 196608, 5e6, 1e-6), "model_type": "minimax_m2", "head_dim": 128,
        "num_local_experts": 256, "num_experts_per_tok": 8, "scoring_func": "sigmoid", "use_qk_norm": True,
        "rotary_dim": 64, "shared_intermediate_size": 0,
    },
    "qwen3-30b-a3b": {
        **_llama(48, 2048, 32, 4, 6144, 151936, 40960, 1e6, 1e-6), "model_type": "qwen3_moe", "head_dim": 128,
        "num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 768, "decoder_sparse_step": 1,
        "mlp_only_layers": [],
    },
    "nemotron4-340b": {"model_type": "nemotron", "num_hidden_layers": 96, "hidden_size": 18432,
                       "num_attention_heads": 96, "num_key_value_heads": 8, "intermediate_size": 73728,
                       "vocab_size": 256000, "max_position_embeddings": 4096, "hidden_act": "relu2",
                       "partial_rotary_factor": 0.5, "norm_eps": 1e-5, "rope_theta": 10000.0,
                       "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False},
    "gpt-oss-120b": {
        **_llama(36, 2880, 64, 8, 2880, 201088, 131072, 150000.0), "model_type": "gpt_oss", "head_dim": 64,
        "num_local_experts": 128, "num_experts_per_tok": 4, "attention_bias": True, "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * 18,
    },
    "gpt-oss-20b": {
        **_llama(24, 2880, 64, 8, 2880, 201088, 131072, 150000.0), "model_type": "gpt_oss", "head_dim": 64,
        "num_local_experts": 32, "num_experts_per_tok": 4, "attention_bias": True, "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * 12,
    },
    "qwen3-8b": {**_llama(36, 4096, 32, 8, 12288, 151936, 40960, 1e6, 1e-6), "model_type": "qwen3", "head_dim": 128},
    "qwen3-14b": {**_llama(40, 5120, 40, 8, 17408, 151936, 40960, 1e6, 1e-6), "model_type": "qwen3", "head_dim": 128},
    "llama3.2-1b": {**_llama(16, 2048, 32, 8, 8192, 128256, 131072, 500000.0), "tie_word_embeddings": True},
    "llama3.2-3b": {**_llama(28, 3072, 24, 8, 8192, 128256, 131072, 500000.0), "tie_word_embeddings": True},
    "gpt3-175b": {"model_type": "gpt2", "n_layer": 96, "n_embd": 12288, "n_head": 96, "n_inner": None,
                  "vocab_size": 50257, "n_positions": 2048, "layer_norm_epsilon": 1e-5,
                  "tie_word_embeddings": True},
    # GPT-J (MLPerf inference): approximated with GPT keys and rotary positions; see hf._gptj.
    "gpt-j-6b": {"model_type": "gptj", "n_layer": 28, "n_embd": 4096, "n_head": 16, "n_inner": None,
                 "vocab_size": 50400, "n_positions": 2048, "rotary_dim": 64, "tie_word_embeddings": False,
                 "layer_norm_epsilon": 1e-5},
    # MLPerf DLRM-v2 (DLRM-DCNv2) on Criteo 1TB: 13 dense features, 26 tables of dim 128 capped at 40M rows,
    # multi-hot lookups per table, 3 low-rank (512) DCNv2 cross layers, bottom 512-256-128, top 1024-1024-512-256-1.
    "dlrm-v2": {
        "model_type": "dlrm", "num_dense_features": 13, "embedding_dim": 128,
        "embedding_rows": [40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10, 2209,
                        11938, 155, 4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36],
        "multi_hot_sizes": [3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1],
        "bottom_mlp": [512, 256, 128], "top_mlp": [1024, 1024, 512, 256, 1], "interaction": "dcn", "dcn_num_layers": 3,
        "dcn_low_rank_dim": 512},
    # A tiny DLRM with dot interaction, for tests and quick runs.
    "dlrm-small": {"model_type": "dlrm", "num_dense_features": 13, "embedding_dim": 16,
                       "embedding_rows": [1000, 500, 200, 100], "pooling_factor": 2, "bottom_mlp": [64, 16],
                       "top_mlp": [64, 32, 1], "interaction": "dot"},
}

# Checkpoints that share another preset's architecture, under the names benchmarks publish them by: DeepSeek-R1 is
# DeepSeek-V3's network post-trained (deepseek-ai/DeepSeek-R1 config.json: the same keys), Llama 3.3 70B is Llama 3.1
# 70B's (meta-llama/Llama-3.3-70B-Instruct config.json: the same sizes and RoPE scaling).
_PRESETS |= {"deepseek-r1": _PRESETS["deepseek-v3"], "llama3.3-70b": _PRESETS["llama3.1-70b"]}

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(_PRESETS)


def list_models() -> list[str]:
    """Names of the shipped presets."""
    return sorted(PRESETS)


def preset(name: str) -> ModelConfig:
    """The config of a shipped preset."""
    if name not in PRESETS:
        raise EmulatorError(f"'{name}' is not a known model; {nearest(name, PRESETS)}", field="model")
    return from_hf_config(dict(PRESETS[name]), origin=f"preset {name}", name=name)
