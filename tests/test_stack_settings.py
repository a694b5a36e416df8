"""A scenario's `engine_settings` (serving) and `framework_settings` (training): the run's own values of its stack's
items, checked against the item schema, in place of the profile's values in the prediction and its `stack` record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emulator.errors import EmulatorError
from emulator.predict import predict_json
from emulator.scenario import load_scenario, parse_inference
from emulator.serving.replica import Scheduling
from emulator.stacks import load_stack, stack_of

BASE: dict[str, Any] = {"engine": "trtllm", "precision": "fp8", "input_tokens": 1024, "output_tokens": 128,
                        "concurrency": 8}


def test_settings_replace_the_profile_values_and_say_so() -> None:
    spec = parse_inference(BASE | {"engine_settings": {"scheduler.batch_wait_iters": 20,
                                                       "scheduler.batch_wait_tokens_ratio": 0.9,
                                                       "host.overlap": False}}, "s.yaml")
    stack = stack_of(spec, "serving")
    assert stack.get("scheduler.batch_wait_iters") == 20 and stack.get("host.overlap") is False
    assert "engine_settings" in stack.source("host.overlap")
    assert Scheduling.of(stack) == Scheduling(1.0, True, False, 20, 0.9, ingress_s=0.04, prefix_caching=True,
                                              frontend_token_s=float(stack.get("host.frontend_token_s")))
    assert load_stack("trtllm", "serving").get("host.overlap") is True  # the shipped profile is untouched
    assert stack.as_dict()["items"]["scheduler.batch_wait_iters"]["value"] == 20


@pytest.mark.parametrize(("settings", "words"), [
    ({"scheduler.batch_wait_iter": 3}, "is not a stack item"),
    ({"defaults.zero": 1}, "applies to training stacks"),
    ({"scheduler.batch_wait_iters": 2.5}, "whole number of iterations"),
    ({"scheduler.max_prefill_tokens": -1}, "whole number of tokens from 0 (no cap)"),
    ({"host.overlap": "yes"}, "true or false"),
    ({}, "must map stack items"),
])
def test_bad_settings_name_the_field_and_the_fix(settings: dict[str, Any], words: str) -> None:
    with pytest.raises(EmulatorError) as e:
        parse_inference(BASE | {"engine_settings": settings}, "s.yaml")
    assert words in e.value.message and "Fix:" in e.value.message
    assert e.value.field is not None and e.value.field.startswith("inference.engine_settings")


def test_the_prediction_json_names_the_deployment_settings(tmp_path: Path) -> None:
    """`emulator predict --json`: the stack record shows the scenario's settings with their source, and batch
    waiting lengthens the closed loop's TTFT."""
    text = ("model: llama3-8b\nhardware: {device: h100-sxm, num_devices: 1}\ninference: {engine: trtllm, "
            "precision: fp8, input_tokens: 512, output_tokens: {distribution: uniform, min: 32, max: 96}, "
            "concurrency: 4, num_requests: 24SETTINGS}\n")
    out = {}
    for name, settings in (("plain", ""), ("held", ", engine_settings: {scheduler.batch_wait_iters: 20, "
                                                   "scheduler.batch_wait_tokens_ratio: 0.9}")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text.replace("SETTINGS", settings))
        out[name] = predict_json(load_scenario(str(path)))
    item = out["held"]["stack"]["items"]["scheduler.batch_wait_iters"]
    assert item["value"] == 20 and "engine_settings" in item["source"]
    assert out["plain"]["stack"]["items"]["scheduler.batch_wait_iters"]["value"] == 0
    assert out["held"]["ttft_s"]["p50"] > out["plain"]["ttft_s"]["p50"]


TRAIN = ("model: mixtral-8x7b\nhardware: {device: h100-sxm, system: hgx-h100, num_devices: 16}\n"
         "training: {seq_len: 4096, global_batch_size: 64, precision: bf16, parallel: {tp: 2, pp: 1, dp: 8, ep: 8}"
         "SETTINGS}\n")


def test_framework_settings_replace_the_training_stacks_values(tmp_path: Path) -> None:
    """`training.framework_settings`: the run's own values (here its expert-parallel all-to-all overlapped with
    compute, which Megatron-Core leaves off) reach the stack the prediction uses and its record, and change the step
    where they should."""
    out = {}
    for name, settings in (("plain", ""), ("hidden", ", framework_settings: {defaults.ep_overlap: true}")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(TRAIN.replace("SETTINGS", settings))
        scenario = load_scenario(str(path))
        assert scenario.training is not None
        out[name] = predict_json(scenario)
        if settings:
            assert scenario.training.framework_settings == (("defaults.ep_overlap", True),)
            stack = stack_of(scenario.training, "training")
            assert stack.get("defaults.ep_overlap") is True
            assert "framework_settings" in stack.source("defaults.ep_overlap")
    assert out["hidden"]["stack"]["items"]["defaults.ep_overlap"]["value"] is True
    assert out["plain"]["stack"]["items"]["defaults.ep_overlap"]["value"] is False
    assert out["plain"]["breakdown"]["expert_parallel_s"] > out["hidden"]["breakdown"]["expert_parallel_s"] >= 0.0
    assert out["hidden"]["step_time_s"] < out["plain"]["step_time_s"]


def test_the_flex_dispatcher_shortens_the_expert_all_to_all(tmp_path: Path) -> None:
    """`{moe.token_dispatcher: flex}` (DeepEP, HybridEP) sends a token once per target rank: Mixtral's top-2 over
    8 ranks reaches 8 (1 - (7/8)^2) = 1.875 ranks, so the exposed expert-parallel time falls by that over 2."""
    out = {}
    for name, settings in (("alltoall", ""), ("flex", ", framework_settings: {moe.token_dispatcher: flex}")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(TRAIN.replace("SETTINGS", settings))
        out[name] = predict_json(load_scenario(str(path)))
    assert out["flex"]["stack"]["items"]["moe.token_dispatcher"]["value"] == "flex"
    assert out["flex"]["breakdown"]["expert_parallel_s"] == pytest.approx(
        out["alltoall"]["breakdown"]["expert_parallel_s"] * 1.875 / 2, rel=1e-6)


@pytest.mark.parametrize(("settings", "words"), [
    ("{moe.token_dispatcher: deepep}", "must be one of alltoall, flex"),
    ("{recompute.selective: half}", "must be one of attention_core, every_other_mm"),
    ("{recompute.selective: [moe_act, attn]}", "a list of Megatron-Core's recompute modules out of core_attn"),
    ("{recompute.selective: []}", "e.g. [mla_up_proj, moe_act]"),
    ("{overlap.epp: 1.0}", "is not a stack item"),
    ("{host.overlap: true}", "applies to serving stacks"),
    ("{overlap.ep: 2.0}", "Fix:"),
    ("{efficiency.attention_kernel_rate: 0}", "must be a rate above 0"),
    ("{}", "must map stack items"),
])
def test_bad_framework_settings_name_the_field_and_the_fix(tmp_path: Path, settings: str, words: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(TRAIN.replace("SETTINGS", f", framework_settings: {settings}"))
    with pytest.raises(EmulatorError) as e:
        load_scenario(str(path))
    assert words in e.value.message and "Fix:" in e.value.message
    assert e.value.field is not None and e.value.field.startswith("training.framework_settings")


def test_megatron_recompute_modules_are_a_selective_policy(tmp_path: Path) -> None:
    """A list of Megatron-Core's recompute modules is the run's selective policy, in Megatron-Core's order once each;
    under `recompute: selective` their forward kernels rerun and the note names them."""
    path = tmp_path / "m.yaml"
    path.write_text(TRAIN.replace("SETTINGS", ", recompute: selective, framework_settings: "
                                              "{recompute.selective: [moe_act, layernorm, moe_act]}"))
    scenario = load_scenario(str(path))
    assert scenario.training is not None
    assert dict(scenario.training.framework_settings)["recompute.selective"] == ("layernorm", "moe_act")
    out = predict_json(scenario)
    assert out["stack"]["items"]["recompute.selective"]["value"] == ["layernorm", "moe_act"]
    assert out["breakdown"]["recompute_s"] > 0
    assert any("Megatron-Core's modules layernorm, moe_act" in n for n in out["notes"])
