"""Serving scenario keys: distributions, SLOs and clear errors naming file, field and fix."""

from __future__ import annotations

import numpy as np
import pytest

from emulator.errors import EmulatorError
from emulator.scenario import parse_distribution, parse_inference


def test_parses_every_key() -> None:
    """A full serving section becomes a ServingSpec with its values."""
    spec = parse_inference({"precision": "fp8", "kv_precision": "fp8", "parallel": {"tp": 2},
                            "input_tokens": {"distribution": "normal", "mean": 512, "std": 100, "min": 1, "max": 2048},
                            "output_tokens": 128, "scenario": "server", "slo": {"ttft_p99_s": 2, "tpot_p99_s": 0.2},
                            "seed": 7, "max_batch_tokens": 4096, "scheduler_overhead_s": 0.002}, "s.yaml")
    assert (spec.tp, spec.precision, spec.kv, spec.seed, spec.max_batch_tokens) == (2, "fp8", "fp8", 7, 4096)
    assert spec.input_tokens.kind == "normal" and spec.output_tokens.mean == 128
    assert spec.slo.tpot_p99_s == 0.2 and spec.scheduler_overhead_s == 0.002
    mtp = parse_inference({"input_tokens": 10, "speculative": {"draft_tokens": 3, "acceptance_rate": 0.85}}, "s.yaml")
    assert mtp.speculative == (3, 0.85)
    chained = parse_inference({"input_tokens": 10, "speculative": {"draft_tokens": 3,
                                                                   "acceptance_rate": [0.85, 0.6, 0.6]}}, "s.yaml")
    assert chained.speculative == (3, (0.85, 0.6, 0.6))


@pytest.mark.parametrize(("data", "field"), [
    ({"input_tokens": 10, "output_tokens": 5, "scenarioo": "server"}, "inference.scenarioo"),
    ({"input_tokens": 10, "scenario": "online"}, "inference.scenario"),
    ({"input_tokens": {"distribution": "normal", "mean": 10}}, "inference.input_tokens.std"),
    ({"input_tokens": 10, "scenario": "server"}, "inference.slo"),
    ({"input_tokens": 10, "parallel": {"dp": 2}}, "inference.parallel.dp"),
    ({"input_tokens": -3}, "inference.input_tokens"),
    ({"input_tokens": 10, "speculative": {"draft_tokens": 3}}, "inference.speculative.acceptance_rate"),
    ({"input_tokens": 10, "speculative": {"draft_tokens": 40, "acceptance_rate": 0.8}},
     "inference.speculative.draft_tokens"),
    ({"input_tokens": 10, "speculative": {"draft_tokens": 3, "acceptance_rate": 1.2}},
     "inference.speculative.acceptance_rate"),
    ({"input_tokens": 10, "speculative": {"draft_tokens": 3, "acceptance_rate": [0.9, 0.6]}},
     "inference.speculative.acceptance_rate"),
    ({"input_tokens": 10, "speculative": {"draft_tokens": 2, "acceptance_rate": [0.9, "high"]}},
     "inference.speculative.acceptance_rate[1]"),
])
def test_bad_sections_name_file_field_and_fix(data: dict, field: str) -> None:
    """Each mistake is an EmulatorError naming the file and the field, with a fix."""
    with pytest.raises(EmulatorError) as e:
        parse_inference(data, "s.yaml")
    assert e.value.file == "s.yaml" and e.value.field == field and "Fix" in str(e.value)


def test_distributions_are_seeded_and_clipped() -> None:
    """Draws respect min/max and repeat under one seed."""
    d = parse_distribution({"distribution": "lognormal", "mean": 300, "std": 200, "min": 5, "max": 1000}, "s", "x")
    a = d.sample(np.random.default_rng(1), 5000)
    assert a.min() >= 5 and a.max() <= 1000 and abs(a.mean() - 300) < 30
    assert np.array_equal(a, d.sample(np.random.default_rng(1), 5000))


def test_trace_file_is_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A CSV trace of (arrival, input, output) is accepted; a bad line is an error naming the line."""
    good = tmp_path / "t.csv"
    good.write_text("arrival_s,input_tokens,output_tokens\n0.0,100,20\n0.5,200,30\n")
    spec = parse_inference({"trace": "t.csv", "scenario": "server"}, str(tmp_path / "s.yaml"))
    assert spec.trace == "t.csv"
    (tmp_path / "b.csv").write_text("0.0,100,20\n0.5,x,30\n")
    with pytest.raises(EmulatorError, match="line 2"):
        parse_inference({"trace": "b.csv"}, str(tmp_path / "s.yaml"))


def test_speculative_decoding_shortens_tpot_and_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A scenario with speculative decoding predicts a shorter TPOT than without, the same TTFT at one client, and
    notes its assumptions; the launch files say to configure the drafter."""
    from emulator.launch import launch_files
    from emulator.predict import predict_json, predict_scenario
    from emulator.scenario import load_scenario

    text = ("model: llama3-8b\nhardware: {device: h100-sxm, num_devices: 1}\ninference: {engine: trtllm, "
            "precision: fp8, input_tokens: 512, output_tokens: 128, concurrency: 1, num_requests: 4SPEC}\n")
    out = {}
    for name, extra in (("plain", ""), ("mtp", ", speculative: {draft_tokens: 3, acceptance_rate: 0.8}")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text.replace("SPEC", extra))
        out[name] = predict_json(load_scenario(str(path)))
    assert out["mtp"]["tpot_s"]["p50"] < 0.7 * out["plain"]["tpot_s"]["p50"]
    assert out["mtp"]["ttft_s"]["p50"] == pytest.approx(out["plain"]["ttft_s"]["p50"], rel=1e-9)
    assert any("speculative decoding" in n for n in out["mtp"]["notes"])
    s = load_scenario(str(tmp_path / "mtp.yaml"))
    assert "speculative decoding" in launch_files(s, predict_scenario(s))[0].text


def test_recommenders_refuse_speculation() -> None:
    """A recommender scenario with speculative decoding is an error naming the key and the fix."""
    from emulator.hardware import load_device
    from emulator.scenario import Scenario
    from emulator.serving import predict_serving
    from emulator.workloads.presets import preset

    spec = parse_inference({"input_tokens": 1, "output_tokens": 1, "batch_size": 64,
                            "speculative": {"draft_tokens": 2, "acceptance_rate": 0.7}}, "s.yaml")
    scenario = Scenario(path="s.yaml", model=preset("dlrm-v2"), device=load_device("h100-sxm"), system=None,
                        num_devices=1)
    with pytest.raises(EmulatorError) as e:
        predict_serving(scenario, spec)
    assert e.value.field == "inference.speculative" and "Fix" in e.value.message


def test_the_drafter_takes_one_more_layer_of_memory() -> None:
    """With speculative decoding the replica holds one more layer's weights and KV cache per token."""
    from emulator.engine.calibration import efficiency_for
    from emulator.hardware import load_device
    from emulator.serving.replica import build_replica
    from emulator.workloads.presets import preset

    model, device = preset("llama3-8b"), load_device("h100-sxm")
    plain = build_replica(model, device, None, efficiency_for(device), precision="bf16", kv_precision="bf16")
    mtp = build_replica(model, device, None, efficiency_for(device), precision="bf16", kv_precision="bf16",
                        speculative=(3, 0.8))
    grow = 1 + 1 / model.num_layers
    assert mtp.weight_bytes == pytest.approx(plain.weight_bytes * grow)
    assert mtp.kv_bytes_per_token == pytest.approx(plain.kv_bytes_per_token * grow)
    assert mtp.kv_capacity_tokens < plain.kv_capacity_tokens
