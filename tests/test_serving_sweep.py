"""The concurrency sweep (`serving/sweep.py`, `cli/sweep.py`): level lists, each level equal to a scenario with that
`concurrency:`, throughput per device rising and per-user speed falling with the load, the Pareto front, and the
scenarios a sweep cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.cli.sweep import pareto_front, parse_levels
from emulator.errors import EmulatorError
from emulator.predict import predict_scenario
from emulator.scenario import load_scenario
from emulator.serving.sweep import sweep_concurrency

TINY = ("{model_type: llama, num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, "
        "intermediate_size: 128, vocab_size: 1000, max_position_embeddings: 2048}")


def _scenario(tmp_path: Path, inference: str, hardware: str = "{device: h100-sxm, num_devices: 2}") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"model: {TINY}\nhardware: {hardware}\ninference: {inference}\n")
    return path


@pytest.mark.parametrize("text,levels", [
    ("1,2,4,...,64", (1, 2, 4, 8, 16, 32, 64)),
    ("1,...,8", (1, 2, 4, 8)),
    ("3,...,20", (3, 6, 12, 20)),
    ("16, 4 ,1,4", (1, 4, 16)),
])
def test_levels_parse_with_doubling(text: str, levels: tuple[int, ...]) -> None:
    """Whole numbers separated by commas, sorted and without repeats; '...' doubles up to the next value."""
    assert parse_levels(text) == levels


@pytest.mark.parametrize("text", ["", "0,1", "1,x", "...,4", "1,...", "2.5", "1,...,...,8"])
def test_bad_levels_say_how_to_write_them(text: str) -> None:
    with pytest.raises(EmulatorError, match="Fix: give whole numbers"):
        parse_levels(text)


def test_each_level_is_the_scenario_at_that_concurrency(tmp_path: Path) -> None:
    """A level's point equals `emulator predict` of the scenario with `concurrency: N`; tokens/s per device rises and
    tokens/s per user falls as more requests share the replicas; the least loaded and the most productive levels
    are on the Pareto front."""
    offline = load_scenario(_scenario(tmp_path, "{input_tokens: 256, output_tokens: 32, engine: vllm}"))
    sweep = sweep_concurrency(offline, (1, 2, 8, 32))
    single = predict_scenario(load_scenario(_scenario(
        tmp_path, "{input_tokens: 256, output_tokens: 32, engine: vllm, concurrency: 8}")))
    point = sweep.points[2]
    assert point.concurrency == 8
    assert point.ttft_s == single.serving.ttft_s  # type: ignore[attr-defined]
    assert point.tokens_per_s_per_device == single.serving.closed_loop.tokens_per_s_per_device  # type: ignore[attr-defined]
    device = [p.tokens_per_s_per_device for p in sweep.points]
    user = [p.tokens_per_s_per_user for p in sweep.points]
    assert device == sorted(device) and device[-1] > 4 * device[0]
    assert user == sorted(user, reverse=True)
    front = pareto_front(sweep)
    assert front[-1] and front[1] and not front[0]  # 1 client on 2 replicas leaves one idle: 2 clients beat it
    assert sweep.as_dict()["points"][0].keys() >= {"concurrency", "ttft_s", "tpot_s", "tokens_per_s_per_user",
                                                    "tokens_per_s_per_device"}


@pytest.mark.parametrize("inference,hardware,words", [
    ("{input_tokens: 64, output_tokens: 8, scenario: server, arrival_rate_per_s: 5}", None, "open loop"),
    ("{input_tokens: 64, output_tokens: 8, scenario: server, slo: {ttft_p99_s: 1}, "
     "disaggregation: {prefill_replicas: 1, decode_replicas: 1}}", "{device: h100-sxm, system: hgx-h100, "
     "num_devices: 2}", "aggregated replicas only"),
    ("{input_tokens: 64, output_tokens: 8, num_requests: 12}", None, "num_requests 12"),
])
def test_scenarios_a_sweep_cannot_run_are_clear_errors(tmp_path: Path, inference: str, hardware: str | None,
                                                       words: str) -> None:
    s = load_scenario(_scenario(tmp_path, inference, hardware or "{device: h100-sxm, num_devices: 2}"))
    with pytest.raises(EmulatorError, match=words) as e:
        sweep_concurrency(s, (1, 8))
    assert "Fix:" in str(e.value)
