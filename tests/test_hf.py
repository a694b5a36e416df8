"""Specs for Hugging Face config.json import and model loading: every supported model_type, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emulator.errors import EmulatorError
from emulator.workloads import DLRMConfig, TransformerConfig, from_hf_config, list_models, load_model, preset

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
    "minimax_m2": {**LLAMA, "model_type": "minimax_m2", "head_dim": 16, "num_local_experts": 8,
                   "num_experts_per_tok": 2, "scoring_func": "sigmoid", "use_qk_norm": True, "rotary_dim": 8,
                   "shared_intermediate_size": 0, "rope_theta": 5e6, "tie_word_embeddings": False},
    "gpt2": {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "n_inner": None,
             "vocab_size": 256, "n_positions": 128},
    "gptj": {"model_type": "gptj", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 256, "n_positions": 128},
    "dlrm": {"model_type": "dlrm", "num_dense_features": 4, "embedding_rows": [10, 20], "embedding_dim": 8,
                 "bottom_mlp": [16, 8], "top_mlp": [16, 1], "pooling_factor": 2},
}


KIMI_TEXT = {**CONFIGS["deepseek_v3"], "model_type": "kimi_k2", "rope_theta": 50000.0, "tie_word_embeddings": False}
CONFIGS["kimi_k2"] = KIMI_TEXT
CONFIGS["kimi_k25"] = {"model_type": "kimi_k25", "architectures": ["KimiK25ForConditionalGeneration"],
                       "text_config": KIMI_TEXT, "vision_config": {"hidden_size": 32}}


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
    direct = from_hf_config(CONFIGS[model_type], origin="inline", name=config.name)
    assert config == direct and config.num_params() == direct.num_params()


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


def test_kimi_and_minimax_import_as_their_architectures() -> None:
    """Kimi-K2 is DeepSeek-V3's architecture; Kimi-K2.5's language model is its text_config; MiniMax-M2 routes
    every layer's tokens by sigmoid scores to experts of intermediate_size, with QK norm."""
    k2 = from_hf_config(KIMI_TEXT, origin="x", name="k")
    assert isinstance(k2, TransformerConfig) and (k2.attention, k2.router, k2.num_experts) == ("mla", "sigmoid", 8)
    assert from_hf_config(CONFIGS["kimi_k25"], origin="x", name="k") == k2
    minimax = from_hf_config(CONFIGS["minimax_m2"], origin="x")
    assert isinstance(minimax, TransformerConfig)
    assert (minimax.router, minimax.qk_norm, minimax.num_dense_layers, minimax.num_shared_experts) == (
        "sigmoid", True, 0, 0)
    assert minimax.moe_ffn_hidden_size == 128 and minimax.num_experts == 8 and minimax.head_dim == 16


@pytest.mark.parametrize("mapping, field", [
    ({**CONFIGS["kimi_k25"], "text_config": "kimi"}, "text_config"),
    ({**CONFIGS["minimax_m2"], "shared_intermediate_size": 512}, "shared_intermediate_size"),
])
def test_kimi_and_minimax_refuse_what_they_cannot_model(mapping: dict[str, Any], field: str) -> None:
    with pytest.raises(EmulatorError) as err:
        from_hf_config(mapping, origin="c.json")
    assert err.value.field == field and "Fix:" in err.value.message


@pytest.mark.parametrize("name, total, active", [("kimi-k2.5", 1.04e12, 32e9), ("minimax-m2.5", 230e9, 10e9)])
def test_new_moe_presets_have_their_model_cards_sizes(name: str, total: float, active: float) -> None:
    """Kimi-K2.5 (moonshotai: 1T total, 32B activated) and MiniMax-M2.5 (MiniMaxAI: 230B total, 10B active) as
    their cards state them: the total within 3%, the active within 5% (the cards round; counted without the input
    embedding, a table lookup, and with the LM head, a matmul every token runs)."""
    model = preset(name)
    assert isinstance(model, TransformerConfig) and model.is_moe
    assert model.num_params() == pytest.approx(total, rel=0.03)
    assert model.num_active_params() - model.vocab_size * model.hidden_size == pytest.approx(active, rel=0.05)


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
    assert str(path) in str(info.value) and "Fix: add" in str(info.value)


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


# --- Hugging Face's defaults for keys a config.json leaves out -----------------------------------------------------

# model_type -> the defaulted keys dropped from CONFIGS and the values transformers' config classes take for them
# (configuration_<type>.py; GPT-2 and GPT-J inherit tie_word_embeddings=True from PretrainedConfig).
HF_TAKEN: dict[str, dict[str, Any]] = {
    "llama": {"max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "tie_word_embeddings": False},
    "mistral": {"max_position_embeddings": 4096 * 32, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                "tie_word_embeddings": False},
    "qwen2": {"max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "tie_word_embeddings": False},
    "qwen3": {"max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "tie_word_embeddings": False},
    "qwen3_moe": {"max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                  "tie_word_embeddings": False, "decoder_sparse_step": 1},
    "mixtral": {"max_position_embeddings": 4096 * 32, "rms_norm_eps": 1e-5, "rope_theta": 1e6,
                "tie_word_embeddings": False},
    "deepseek_v3": {"max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                    "tie_word_embeddings": False},
    "gpt2": {"n_positions": 1024, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True},
    "gptj": {"n_positions": 2048, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True},
}
FULL_LLAMA = {**LLAMA, "rope_theta": 10000.0, "tie_word_embeddings": False}  # every defaulted key written out


@pytest.mark.parametrize("model_type", sorted(HF_TAKEN))
def test_left_out_keys_take_hugging_face_defaults(model_type: str) -> None:
    """Context length, norm epsilon, RoPE theta and tying may be left out: HF's defaults are used and recorded."""
    taken = HF_TAKEN[model_type]
    config = from_hf_config({k: v for k, v in CONFIGS[model_type].items() if k not in taken}, origin="c.json")
    assert isinstance(config, TransformerConfig) and dict(config.assumed) == taken
    assert config.max_seq_len == taken.get("max_position_embeddings", taken.get("n_positions"))
    assert config.norm_eps == taken.get("rms_norm_eps", taken.get("layer_norm_epsilon"))
    assert config.tie_embeddings == taken["tie_word_embeddings"]
    assert config.rope_theta == taken.get("rope_theta", 10000.0)  # GPT: the field's default, never used


def test_written_out_keys_assume_nothing_and_compare_equal() -> None:
    """A config that writes every key assumes nothing, and equals (and hashes like) the one whose keys were assumed."""
    written = from_hf_config(FULL_LLAMA, origin="c.json")
    assumed = from_hf_config({k: v for k, v in FULL_LLAMA.items() if k != "max_position_embeddings"}, origin="c.json")
    assert dict(written.assumed) == {}  # type: ignore[union-attr]
    written_2048 = from_hf_config({**FULL_LLAMA, "max_position_embeddings": 2048}, origin="c.json")
    assert written_2048 == assumed and hash(written_2048) == hash(assumed)
    assert json.loads(json.dumps(assumed.summary()))["assumed"] == {"max_position_embeddings": 2048}


@pytest.mark.parametrize("name", list_models())
def test_presets_state_their_values(name: str) -> None:
    """Presets write their values out, so nothing is assumed for them."""
    assert dict(preset(name).assumed) == {}


def test_key_value_heads_follow_each_config_class() -> None:
    """Mistral's class defaults to 8 KV heads (assumed); null means one per head, as in Llama's class (not assumed)."""
    base = {**CONFIGS["mistral"], "num_attention_heads": 32, "hidden_size": 256}
    del base["num_key_value_heads"]
    mistral = from_hf_config(base, origin="c.json")
    assert mistral.num_kv_heads == 8 and mistral.assumed["num_key_value_heads"] == 8  # type: ignore[union-attr]
    assert from_hf_config({**base, "num_key_value_heads": None}, origin="c.json").num_kv_heads == 32  # type: ignore
    llama = from_hf_config({**base, "model_type": "llama"}, origin="c.json")
    assert llama.num_kv_heads == 32 and "num_key_value_heads" not in llama.assumed  # type: ignore[union-attr]


def test_qwen3_head_dim_defaults_to_128() -> None:
    """Qwen3's class fixes head_dim at 128 rather than deriving it from the hidden size."""
    mapping = {k: v for k, v in CONFIGS["qwen3"].items() if k != "head_dim"}
    assert from_hf_config(mapping, origin="c.json").head_dim == 128  # type: ignore[union-attr]


def test_a_clash_with_an_assumed_default_says_it_was_assumed() -> None:
    """When a default the file never wrote breaks a rule, the error says it was assumed and how to fix it."""
    mapping = {k: v for k, v in CONFIGS["mistral"].items() if k != "num_key_value_heads"}  # 4 heads, default 8
    with pytest.raises(EmulatorError, match="num_key_value_heads") as info:
        from_hf_config(mapping, origin="c.json")
    assert "Hugging Face's default for mistral, 8, was assumed" in str(info.value) and "Fix" in str(info.value)


def test_rope_theta_is_read_from_rope_parameters() -> None:
    """transformers 5 writes rope_theta inside rope_parameters; it is read there, not assumed."""
    mapping = {**LLAMA, "rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}}
    config = from_hf_config(mapping, origin="c.json")
    assert config.rope_theta == 5e5 and "rope_theta" not in config.assumed  # type: ignore[union-attr]


@pytest.mark.parametrize("key", ["hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size"])
def test_sizes_stay_required(key: str) -> None:
    """Sizes have no default here: borrowing a reference checkpoint's would plan the wrong model."""
    with pytest.raises(EmulatorError, match="no default") as info:
        from_hf_config({k: v for k, v in LLAMA.items() if k != key}, origin="c.json")
    assert info.value.field == key


def test_models_show_json_reports_what_was_assumed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`emulator models show config.json --json` prints the assumed keys with their values."""
    from emulator.cli import main

    path = _write(tmp_path, {k: v for k, v in FULL_LLAMA.items() if k != "max_position_embeddings"})
    assert main(["models", "show", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["assumed"] == {"max_position_embeddings": 2048}
