"""Plausibility warnings (never fatal, never silent) and the data-parallel size inferred from the device count;
every fix a device-count error suggests is applied here and must load and pass the plan check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from emulator.cli import main
from emulator.cluster import check_plan
from emulator.cluster.plan import plan_from
from emulator.errors import EmulatorError
from emulator.scenario import load_scenario
from emulator.serving.prediction import num_replicas

TINY_LLAMA = ("{model_type: llama, num_hidden_layers: 4, hidden_size: 256, num_attention_heads: 16, "
              "num_key_value_heads: 16, intermediate_size: 512, vocab_size: 1000, max_position_embeddings: 2048}")
TINY_MOE = ("{model_type: mixtral, num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, "
            "num_key_value_heads: 4, intermediate_size: 128, vocab_size: 1000, num_local_experts: 32, "
            "num_experts_per_tok: 2, max_position_embeddings: 2048}")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def _serve(slo: str, extra: str = "", devices: int = 1) -> str:
    return (f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm, system: hgx-h100, num_devices: {devices}}}\n"
            f"inference: {{input_tokens: 64, output_tokens: 8, num_requests: 100, scenario: server, "
            f"slo: {{{slo}}}{extra}}}\n")


@pytest.mark.parametrize("key,value", [("ttft_p99_s", 500), ("tpot_p99_s", 50), ("latency_p99_s", 200)])
def test_an_slo_in_milliseconds_warns_with_the_seconds_it_meant(tmp_path: Path, key: str, value: float) -> None:
    """An SLO bound past any interactive target warns and says what to write; the suggestion warns no more."""
    warnings = load_scenario(_write(tmp_path, _serve(f"{key}: {value}"))).warnings
    assert len(warnings) == 1 and f"inference.slo.{key} is {value} s" in warnings[0]
    fix = re.search(rf"write {key}: ([0-9.e-]+)", warnings[0])
    assert fix is not None and float(fix.group(1)) == value / 1e3
    assert load_scenario(_write(tmp_path, _serve(f"{key}: {fix.group(1)}"))).warnings == ()


def test_warnings_go_to_stderr_and_json_and_never_stop_a_prediction(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A plausibility warning is printed on stderr and listed under `warnings` in --json; the prediction runs."""
    path = _write(tmp_path, _serve("ttft_p99_s: 500, tpot_p99_s: 0.2"))
    assert main(["predict", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert len(data["warnings"]) == 1 and data["warnings"][0] in captured.err and "warning: " in captured.err
    assert main(["predict", str(_write(tmp_path, _serve("ttft_p99_s: 0.5"))), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []


def test_tensor_parallelism_past_the_nvlink_domain_warns(tmp_path: Path) -> None:
    """tp 16 on 8-GPU HGX nodes (training or serving) warns that it crosses the scale-up domain; tp 8 does not."""
    train = (f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm, system: hgx-h100, num_devices: 16}}\n"
             "training: {seq_len: 256, global_batch_size: 1, parallel: {tp: 16}}\n")
    warnings = load_scenario(_write(tmp_path, train)).warnings
    assert len(warnings) == 1 and "tp 16 spans 2 scale-up domains" in warnings[0] and "hgx-h100" in warnings[0]
    assert load_scenario(_write(tmp_path, train.replace("tp: 16", "tp: 8").replace("16}", "8}"))).warnings == ()
    serve = _serve("ttft_p99_s: 1", ", parallel: {tp: 16}", devices=16)
    assert any("inference.parallel: tp 16 spans" in w for w in load_scenario(_write(tmp_path, serve)).warnings)


def test_expert_parallelism_past_the_domain_warns(tmp_path: Path) -> None:
    """A training plan whose expert all-to-all (ep x etp ranks) leaves the scale-up domain warns."""
    text = (f"model: {TINY_MOE}\nhardware: {{device: h100-sxm, system: hgx-h100, num_devices: 16}}\n"
            "training: {seq_len: 256, global_batch_size: 16, parallel: {dp: 16, ep: 16}}\n")
    warnings = load_scenario(_write(tmp_path, text)).warnings
    assert len(warnings) == 1 and "ep 16 spans 2 scale-up domains" in warnings[0]


def test_layouts_that_leave_devices_idle_warn(tmp_path: Path) -> None:
    """Disaggregated pools smaller than the hardware, fewer clients than replicas and an SLO on an Offline run each
    warn with the count that would use every device."""
    pools = (f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm, system: hgx-h100, num_devices: 8}}\n"
             "inference: {input_tokens: 64, output_tokens: 8, scenario: server, arrival_rate_per_s: 1,\n"
             "            disaggregation: {prefill_replicas: 1, decode_replicas: 2}}\n")
    (warning,) = load_scenario(_write(tmp_path, pools)).warnings
    assert "use 3 of the 8 devices; 5 stay idle" in warning and "hardware.num_devices: 3" in warning
    assert load_scenario(_write(tmp_path, pools.replace("num_devices: 8", "num_devices: 3"))).warnings == ()
    loop = (f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm, num_devices: 4}}\n"
            "inference: {input_tokens: 64, output_tokens: 8, concurrency: 2, num_requests: 6}\n")
    (warning,) = load_scenario(_write(tmp_path, loop)).warnings
    assert "concurrency 2 is below the 4 replicas" in warning and "hardware.num_devices: 2" in warning
    assert "concurrency to at least 4 (and num_requests to at least 12)" in warning
    assert load_scenario(_write(tmp_path, loop.replace("num_devices: 4", "num_devices: 2"))).warnings == ()
    raised = loop.replace("concurrency: 2", "concurrency: 4").replace("num_requests: 6", "num_requests: 12")
    assert load_scenario(_write(tmp_path, raised)).warnings == ()  # the other fix loads and warns no more
    offline = (f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm}}\n"
               "inference: {input_tokens: 64, output_tokens: 8, slo: {ttft_p99_s: 1}}\n")
    (warning,) = load_scenario(_write(tmp_path, offline)).warnings
    assert "scenario is offline" in warning and "scenario: server" in warning
    assert load_scenario(_write(tmp_path, offline.replace("8, slo", "8, scenario: server, slo"))).warnings == ()


def test_dp_is_inferred_from_num_devices_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plan without dp takes num_devices / (tp x pp x cp) and says so among the notes; a given dp is kept."""
    text = (f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm, system: hgx-h100, num_devices: 16}}\n"
            "training: {seq_len: 256, global_batch_size: 32, parallel: {tp: 2, pp: 2}}\n")
    scenario = load_scenario(_write(tmp_path, text))
    assert scenario.training is not None and scenario.training.parallel.dp == 4
    assert scenario.notes == ("dp 4 inferred from hardware.num_devices 16 / (tp 2 x pp 2 x cp 1) (training.parallel "
                              "gives no dp)",)
    assert main(["predict", str(_write(tmp_path, text)), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["plan"]["dp"] == 4 and scenario.notes[0] in data["notes"]
    given = load_scenario(_write(tmp_path, text.replace("pp: 2}", "pp: 2, dp: 2}")))
    assert given.training is not None and given.training.parallel.dp == 2 and given.notes == ()


def _apply(text: str, fix: str) -> str:
    """The scenario text with one suggested change made."""
    if m := re.fullmatch(r"set hardware.num_devices: (\d+).*", fix):
        return re.sub(r"num_devices: \d+", f"num_devices: {m.group(1)}", text)
    m = re.fullmatch(r"set training.parallel.dp: (\d+).*", fix)
    assert m is not None, fix
    if "dp: " in text:
        return re.sub(r"dp: \d+", f"dp: {m.group(1)}", text)
    return text.replace("parallel: {", f"parallel: {{dp: {m.group(1)}, ")


@pytest.mark.parametrize("devices,batch,parallel", [(1004, 1000, "tp: 8"), (1004, 1004, "tp: 4, dp: 250"),
                                                    (12, 8, "tp: 4, dp: 2")])
def test_every_device_count_fix_is_valid(tmp_path: Path, devices: int, batch: int, parallel: str) -> None:
    """A plan that does not match the device count suggests only changes that load and pass the plan check
    (1,004 devices at tp 8 with 1,000 sequences: 1,000 devices at dp 125, never a dp of 125.5 or one that does not
    divide the batch)."""
    text = (f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm, system: hgx-h100, num_devices: {devices}}}\n"
            f"training: {{seq_len: 256, global_batch_size: {batch}, parallel: {{{parallel}}}}}\n")
    scenario = load_scenario(_write(tmp_path, text))
    with pytest.raises(EmulatorError) as e:
        check_plan(scenario.model, plan_from(scenario), scenario.num_devices, scenario.path)
    fixes = str(e.value).split("Fix: ", 1)[1].rstrip(".").split(" or ")
    assert fixes and all(f.startswith("set ") for f in fixes), fixes
    for fix in fixes:
        fixed = load_scenario(_write(tmp_path, _apply(text, fix)))
        check_plan(fixed.model, plan_from(fixed), fixed.num_devices, fixed.path)  # raises if the fix is not valid


def test_every_replica_count_fix_is_valid(tmp_path: Path) -> None:
    """1,004 devices in replicas of tp 8 suggest 1,000 and 1,008 devices, and each gives whole replicas."""
    text = (f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm, system: hgx-h100, num_devices: 1004}}\n"
            "inference: {input_tokens: 64, output_tokens: 8, parallel: {tp: 8}}\n")
    scenario = load_scenario(_write(tmp_path, text))
    with pytest.raises(EmulatorError) as e:
        num_replicas(scenario, 8, scenario.path)
    counts = [int(n) for n in re.findall(r"(\d+) \(\d+ replica", str(e.value))]
    assert counts == [1000, 1008]
    for n in counts:
        fixed = load_scenario(_write(tmp_path, text.replace("1004", str(n))))
        assert num_replicas(fixed, 8, fixed.path) == n // 8
