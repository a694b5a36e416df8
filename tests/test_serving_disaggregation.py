"""Prefill/decode disaggregation: separate pools, the prompt cache moved over the fabric."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.errors import EmulatorError
from emulator.predict import predict_json
from emulator.scenario import load_scenario

BASE = """model: {model_type: llama, num_hidden_layers: 4, hidden_size: 512, num_attention_heads: 8,
        num_key_value_heads: 2, intermediate_size: 1536, vocab_size: 8000, max_position_embeddings: 4096}
hardware: {device: h100-sxm, system: hgx-h100, num_devices: 4}
inference:
  input_tokens: 512
  output_tokens: 64
  batch_size: 32
  scenario: server
  arrival_rate_per_s: 40
  num_requests: 400
"""


def _predict(tmp_path: Path, extra: str = "") -> dict:
    path = tmp_path / "s.yaml"
    path.write_text(BASE + extra)
    return predict_json(load_scenario(path))


def test_disaggregated_pools_run_and_separate_prefill_from_decode(tmp_path: Path) -> None:
    """Both pools run at the given rate, the prompt-cache transfer over NVLink is reported, TTFT is bounded by
    the whole latency, and at a light load the prefill pool answers no slower than four mixed replicas: a prompt
    there shares its iteration with no decoding sequence (whose rows add host and head time)."""
    aggregated = _predict(tmp_path)
    split = _predict(tmp_path, "  disaggregation: {prefill_replicas: 1, decode_replicas: 3}\n")
    assert split["replicas"] == 4 and split["prefill_replicas"] == 1 and split["decode_replicas"] == 3
    assert 0 < split["kv_transfer_s"] < 1e-3  # 512 tokens of KV over 2x450 GB/s NVLink: microseconds
    assert split["ttft_s"]["p50"] > 0 and split["latency_s"]["p99"] >= split["ttft_s"]["p99"]
    assert split["ttft_s"]["p50"] <= aggregated["ttft_s"]["p50"] * (1 + 1e-9)
    assert split["throughput_samples_per_s"] == pytest.approx(40.0)


def test_pools_larger_than_the_devices_are_a_clear_error(tmp_path: Path) -> None:
    """Asking for more replicas than hardware.num_devices holds names the field and the fix."""
    with pytest.raises(EmulatorError, match="inference.disaggregation"):
        _predict(tmp_path, "  disaggregation: {prefill_replicas: 2, decode_replicas: 3}\n")
