"""Specs for Hugging Face config.json import and model loading: every supported model_type, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emulator.errors import EmulatorError
from emulator.workloads import DLRMConfig, TransformerConfig, from_hf_config, load_model, preset

LLAMA = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
         "num_key_value_heads": 2,
             "intermediate_size": 128, "vocab_size": 256, "max_position_embeddings": 128, "rms_norm_eps": 1e-5}
CONFIGS: dict[str, dict[str, Any]] = {
    "llama": LLAMA,
    "mistral": {**LLAMA, "model_type": "mistral"},
    "qwen2": {**LLAMA, "model_type": "qwen2"},
    "qwen3": {**LLAMA, "model_type": "qwen3", "head_dim": 32},
    "mixtral": {**LLAMA, "model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen3_moe": {**LLAMA, "model_type": "qwen3_moe", "num_experts": 8, "num_experts_per_tok": 2,
                  "moe_intermediate_size": 32, "mlp_only_layers": [0]},
    "deepseek_v3": {**LLAMA, "model_type": "deepseek_v3", "num_key_value_heads": 4, "n_routed_experts": 8,
                    "num_experts_per_tok": 2, "moe_intermediate_size": 32, "n_shared_experts": 1,
                    "first_k_dense_replace": 1, "q_lora_rank": 32, "kv_lora_rank": 16, "qk_nope_head_dim": 16,
                    "qk_rope_head_dim": 8, "v_head_dim": 16, "num_nextn_predict_layers": 1},
    "gpt2": {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "n_inner": None,
             "vocab_size": 256, "n_positions": 128},
    "gptj": {"model_type": "gptj", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 256, "n_positions": 128},
    "dlrm": {"model_type": "dlrm", "num_dense_features": 4, "embedding_rows": [10, 20], "embedding_dim": 8,
                 "bottom_mlp": [16, 8], "top_mlp": [16, 1], "pooling_factor": 2},
}


def _write(tmp_path: Path, mapping: dict[str, Any], name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(mapping))
    return path


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_each_model_type_imports_from_a_file(tmp_path: Path, model_type: str) -> None:
    """A config.json of every supported model_type loads into a config."""
    path = _write(tmp_path, CONFIGS[model_type])
    config = load_model(str(path), origin="scenario.yaml")
    assert isinstance(config, DLRMConfig if model_type == "dlrm" else TransformerConfig)
    assert config.num_params() > 0


def test_architecture_details() -> None:
    """Each model type maps onto the right architecture switches."""
    gpt2 = from_hf_config(CONFIGS["gpt2"], origin="x")
    assert isinstance(gpt2, TransformerConfig)
    assert (gpt2.ffn_hidden_size, gpt2.positions, gpt2.norm, gpt2.tie_embeddings) == (256, "learned", "layernorm", True)
    assert from_hf_config(CONFIGS["qwen2"], origin="x").qkv_bias  # type: ignore[union-attr]
    assert from_hf_config(CONFIGS["qwen3"], origin="x").qk_norm  # type: ignore[union-attr]
    qwen_moe = from_hf_config(CONFIGS["qwen3_moe"], origin="x")
    assert qwen_moe.num_dense_layers == 1 and qwen_moe.num_experts == 8  # type: ignore[union-attr]
    deepseek = from_hf_config(CONFIGS["deepseek_v3"], origin="x")
    assert (deepseek.attention, deepseek.router, deepseek.num_shared_experts) == ("mla", "sigmoid", 1)  # type: ignore


def test_relative_path_resolves_against_the_scenario_file(tmp_path: Path) -> None:
    """A relative config path is read from the folder of the file that names it."""
    (tmp_path / "models").mkdir()
    _write(tmp_path / "models", CONFIGS["llama"], "tiny.json")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("model: models/tiny.json\n")
    config = load_model("models/tiny.json", origin=str(scenario))
    assert config.name == "tiny"


def test_inline_mapping_and_preset() -> None:
    """Inline keys and preset names both load."""
    assert load_model(CONFIGS["llama"], origin="s.yaml").num_layers == 2  # type: ignore[union-attr]
    assert load_model("llama3-8b", origin="s.yaml") == preset("llama3-8b")


def test_missing_field_names_file_and_field(tmp_path: Path) -> None:
    """A missing key is reported with the file and the key."""
    mapping = dict(CONFIGS["llama"])
    del mapping["intermediate_size"]
    path = _write(tmp_path, mapping)
    with pytest.raises(EmulatorError, match="intermediate_size") as info:
        load_model(str(path), origin="s.yaml")
    assert str(path) in str(info.value) and "Add" in str(info.value)


def test_unknown_model_type_lists_nearest() -> None:
    """An unknown model_type suggests the closest supported ones."""
    with pytest.raises(EmulatorError, match="'llama'"):
        from_hf_config({**LLAMA, "model_type": "lama"}, origin="c.json")


def test_unknown_preset_lists_nearest() -> None:
    """An unknown preset name suggests close names."""
    with pytest.raises(EmulatorError, match="llama3-8b"):
        load_model("llama3-8", origin="s.yaml")


def test_heads_not_dividing_hidden(tmp_path: Path) -> None:
    """Heads that do not divide the hidden size are a clear error naming the config key."""
    path = _write(tmp_path, {**LLAMA, "num_attention_heads": 5, "num_key_value_heads": 5})
    with pytest.raises(EmulatorError, match="num_attention_heads.*do not divide") as info:
        load_model(str(path), origin="s.yaml")
    assert str(path) in str(info.value)


def test_kv_heads_not_dividing_heads() -> None:
    """KV heads must divide query heads."""
    with pytest.raises(EmulatorError, match="num_key_value_heads"):
        from_hf_config({**LLAMA, "num_key_value_heads": 3}, origin="c.json")


@pytest.mark.parametrize("key", ["num_hidden_layers", "hidden_size", "vocab_size", "intermediate_size"])
@pytest.mark.parametrize("value", [0, -4])
def test_zero_or_negative_sizes(key: str, value: int) -> None:
    """Zero or negative sizes are rejected with the key named."""
    with pytest.raises(EmulatorError, match=key):
        from_hf_config({**LLAMA, key: value}, origin="c.json")


def test_too_many_experts_per_token() -> None:
    """experts_per_token above the number of experts is an error."""
    with pytest.raises(EmulatorError, match="num_experts_per_tok"):
        from_hf_config({**CONFIGS["mixtral"], "num_experts_per_tok": 5}, origin="c.json")


def test_malformed_json(tmp_path: Path) -> None:
    """A broken JSON file gets a clear error with the position."""
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "llama",')
    with pytest.raises(EmulatorError, match="not valid JSON"):
        load_model(str(path), origin="s.yaml")


def test_dlrm_unknown_key() -> None:
    """Our own dlrm keys are strict: a misspelt key is an error with a suggestion."""
    with pytest.raises(EmulatorError, match="embedding_dim"):
        from_hf_config({**CONFIGS["dlrm"], "embeding_dim": 8}, origin="d.json")


def test_dlrm_bottom_mlp_must_end_at_embedding_dim() -> None:
    """The bottom MLP's last width must equal the embedding width."""
    with pytest.raises(EmulatorError, match="bottom_mlp"):
        from_hf_config({**CONFIGS["dlrm"], "bottom_mlp": [16, 4]}, origin="d.json")
