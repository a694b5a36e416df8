"""The prediction table says exactly what each figure is: TTFT vs end-to-end latency, per device vs all devices,
the batch and rate a serving run used and where each came from, no SLO offline, and per-phase utilisation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.cli import main
from emulator.cli.render import render_prediction
from emulator.engine.memory import kv_bytes_per_token
from emulator.precision import kv_dtype
from emulator.predict import predict_scenario
from emulator.scenario import load_scenario
from emulator.serving import ServingPrediction

TINY_LLAMA = ("{model_type: llama, num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, "
              "num_key_value_heads: 2, intermediate_size: 128, vocab_size: 1000, max_position_embeddings: 2048}")
OFFLINE = f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm}}\n" \
          "inference: {input_tokens: 128, output_tokens: 16, batch_size: 4, num_requests: 60}\n"
SERVER = (f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm, num_devices: 2}}\n"
          "inference: {input_tokens: 128, output_tokens: 16, scenario: server, num_requests: 200,\n"
          "            slo: {ttft_p99_s: 0.5, tpot_p99_s: 0.05}}\n")


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *flags: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert main(["predict", str(path), *flags]) == 0
    return capsys.readouterr().out


def test_offline_has_no_slo_and_says_its_batch_and_rate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Offline prints 'no SLO (offline)', never 'SLO met: True', and the batch and request rate it ran at."""
    out = _run(tmp_path, capsys, OFFLINE)
    assert "no SLO (offline)" in out and "SLO met" not in out and "True" not in out
    assert "batch 4 per replica (given: batch_size)" in out
    assert "requests/s (what the replicas sustain with every request queued at t=0)" in out


def test_server_labels_ttft_and_end_to_end_latency_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Server run names TTFT and end-to-end latency separately, checks each p99 against its bound and says the
    rate was searched (the batch too, when batch_size is absent)."""
    out = _run(tmp_path, capsys, SERVER)
    assert "TTFT (first token)" in out and "end-to-end latency" in out and "p99 latency" not in out
    assert "SLO                  met: p99 TTFT" in out and "<= 500.00 ms" in out and "<= 50.00 ms" in out
    assert "(searched: the highest Poisson rate meeting the SLO)" in out
    assert "per replica (searched: the highest-throughput batch whose contexts fit)" in out
    assert "for all 2 device(s)" in out and "W per device" in out


def test_inference_shows_phase_utilisation_not_a_deployment_mfu(tmp_path: Path) -> None:
    """Inference reports prefill MFU and decode memory-bandwidth utilisation, each its phase's FLOPs or bytes over
    its time and the device's peak, in the table and in --json."""
    path = tmp_path / "s.yaml"
    path.write_text(OFFLINE)
    scenario = load_scenario(path)
    pred = predict_scenario(scenario)
    util = pred.to_json()["utilisation_by_phase"]
    decode = pred.phases["decode"]
    moved = sum(k.main_memory_bytes for k in decode.kernels)
    assert 0 < moved <= sum(k.cost.bytes for k in decode.kernels)
    assert util["decode"]["memory_bandwidth_utilisation"] == pytest.approx(
        moved / decode.total_s / scenario.device.memory_bandwidth_bytes_per_s)
    prefill = pred.phases["prefill"]
    flops = sum(k.cost.matrix_flops for k in prefill.kernels)
    assert util["prefill"]["mfu"] == pytest.approx(flops / prefill.total_s / pred.peak_flops_per_s)
    assert 0 < util["decode"]["memory_bandwidth_utilisation"] <= 1 and 0 < util["prefill"]["mfu"] <= 1
    text = render_prediction(pred, scenario.serving)
    assert "utilisation          prefill MFU" in text and "decode memory bandwidth" in text
    assert "(MFU 0.0%)" not in text


def test_memory_line_and_kv_note_agree(tmp_path: Path) -> None:
    """The memory line is one device's, and its KV pool is the tokens the serving model says it holds."""
    path = tmp_path / "s.yaml"
    path.write_text(OFFLINE)
    scenario = load_scenario(path)
    pred = predict_scenario(scenario)
    assert isinstance(pred, ServingPrediction)
    text = render_prediction(pred, scenario.serving)
    tokens = pred.serving.kv_cache_tokens_per_replica
    assert tokens and f"{tokens:,} tokens per replica of 1 device(s)" in text
    assert "memory per device (one device of a replica): " in text
    per_token = kv_bytes_per_token(scenario.model, kv_dtype("bf16", scenario.serving.kv))  # type: ignore[arg-type]
    assert pred.memory.parts["kv_cache"] == pytest.approx(tokens * per_token)


def test_a_missed_slo_prints_the_latency_floor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An SLO no load meets says MISSED and prints the floor (one request at a time), which is never above what
    the lightest load tried got; --json carries it as latency_floor."""
    text = SERVER.replace("ttft_p99_s: 0.5", "ttft_p99_s: 0.000001")
    out = _run(tmp_path, capsys, text)
    assert "SLO                  MISSED: p99 TTFT" in out and "> 1.0 µs" in out
    assert "latency floor        p99 TTFT" in out and "(concurrency 1)" in out
    assert "the lightest load the search tried; it misses the SLO" in out
    data = json.loads(_run(tmp_path, capsys, text, "--json"))
    floor = data["latency_floor"]
    assert floor["concurrency"] == 1 and 0 < floor["ttft_p99_s"] <= data["ttft_s"]["p99"] * 1.001
    assert 0 < floor["tpot_p99_s"] <= data["tpot_s"]["p99"] * 1.001
    assert "latency_floor" not in json.loads(_run(tmp_path, capsys, SERVER, "--json"))  # met: no floor


def test_size_prints_ttft_not_p99_latency(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`emulator size` for an LLM names its recommended plan's p99 TTFT, TPOT and end-to-end latency."""
    path = tmp_path / "size.yaml"
    path.write_text(f"goal: serve\nmodel: {TINY_LLAMA}\nserve:\n"
                    "  traffic: {arrival_rate_per_s: 5, input_tokens: 128, output_tokens: 16}\n"
                    "  slo: {ttft_p99_s: 0.5, tpot_p99_s: 0.05}\n  num_requests: 200\n"
                    "candidates: [h100-sxm]\n")
    assert main(["size", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "p99 TTFT" in out and "p99 TPOT" in out and "p99 end-to-end" in out and "p99 latency" not in out


def test_sram_traffic_is_not_counted_against_main_memory(tmp_path: Path) -> None:
    """On a chip with a software-managed SRAM, bytes the SRAM serves are left out of memory-bandwidth utilisation,
    so it stays a fraction of the main memory's bandwidth."""
    path = tmp_path / "s.yaml"
    path.write_text("model: dlrm-v2\nhardware: {device: mtia-v2}\n"
                    "inference: {precision: int8, input_tokens: 1, output_tokens: 1, batch_size: 2048, "
                    "num_requests: 4096}\n")
    pred = predict_scenario(load_scenario(path))
    util = pred.to_json()["utilisation_by_phase"]["prefill"]
    kernels = pred.phases["prefill"].kernels
    assert sum(k.main_memory_bytes for k in kernels) < sum(k.cost.bytes for k in kernels)
    assert 0 < util["memory_bandwidth_utilisation"] <= 1 and 0 < util["mfu"] <= 1
