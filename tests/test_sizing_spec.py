"""Sizing files: strict parsing, and errors that name the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.errors import EmulatorError
from emulator.sizing import load_sizing, size

TRAIN = """goal: train
model: llama3-8b
train: {{total_tokens: 1e12, {target}, seq_len: 4096, global_batch_size: 512}}
candidates: [{{device: {device}, system: hgx-h100}}]
{extra}
search: {{tp: [8], pp: [1], microbatch_size: [1], recompute: [none], zero: [1]}}
"""


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sizing.yaml"
    path.write_text(text)
    return str(path)


def _train(tmp_path: Path, target: str = "deadline_days: 30", device: str = "h100-sxm", extra: str = "") -> str:
    return _write(tmp_path, TRAIN.format(target=target, device=device, extra=extra))


def test_valid_file_parses(tmp_path: Path) -> None:
    """A training sizing file parses into its target, candidates and default objective."""
    sz = load_sizing(_train(tmp_path))
    assert sz.goal == "train" and sz.objective == "cost" and sz.train is not None
    assert sz.train.deadline_days == 30 and sz.candidates[0].system.name == "hgx-h100"


def test_unknown_device_names_nearest(tmp_path: Path) -> None:
    """An unknown device names the file, the field and the nearest known devices."""
    path = _train(tmp_path, device="h100-sx")
    with pytest.raises(EmulatorError) as e:
        load_sizing(path)
    text = str(e.value)
    assert path in text and "candidates[0].device" in text and "h100-sxm" in text


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    """A misspelled key is refused with the nearest known key."""
    with pytest.raises(EmulatorError, match="objective"):
        load_sizing(_train(tmp_path, extra="objectve: cost"))


def test_contradictory_device_caps(tmp_path: Path) -> None:
    """A device budget given twice with different values is a contradiction."""
    with pytest.raises(EmulatorError, match="contradict"):
        load_sizing(_train(tmp_path, target="max_devices: 1024", extra="constraints: {max_devices: 2048}"))


def test_deadline_or_device_budget_required(tmp_path: Path) -> None:
    """A training target needs a deadline or a device budget, and says so."""
    with pytest.raises(EmulatorError, match="deadline_days"):
        load_sizing(_train(tmp_path, target="precision: bf16"))


def test_wrong_section_for_goal(tmp_path: Path) -> None:
    """goal: serve with a train section is refused with the fix."""
    text = TRAIN.format(target="deadline_days: 30", device="h100-sxm", extra="").replace("goal: train", "goal: serve")
    with pytest.raises(EmulatorError, match="goal is serve"):
        load_sizing(_write(tmp_path, text))


def test_impossible_deadline_names_binding_constraint(tmp_path: Path) -> None:
    """An unreachable deadline says that the deadline binds and what deadline or device count would do."""
    sz = load_sizing(_train(tmp_path, target="deadline_days: 0.01", extra="constraints: {max_devices: 64}"))
    with pytest.raises(EmulatorError) as e:
        size(sz)
    text = str(e.value)
    assert "deadline_days binds" in text and "Fix: set train.deadline_days >=" in text and "devices" in text


def test_impossible_power_cap_names_binding_constraint(tmp_path: Path) -> None:
    """A power cap below every plan's draw names the cap and the megawatts needed."""
    sz = load_sizing(_train(tmp_path, extra="constraints: {power_cap_mw: 0.0001}"))
    with pytest.raises(EmulatorError, match=r"power_cap_mw binds.*constraints.power_cap_mw >="):
        size(sz)


def test_serve_needs_slo(tmp_path: Path) -> None:
    """A serving target without an SLO is refused with an example."""
    text = """goal: serve
model: llama3-8b
serve: {traffic: {arrival_rate_per_s: 10, input_tokens: 128, output_tokens: 16}}
candidates: [{device: h100-sxm}]
"""
    with pytest.raises(EmulatorError, match="slo"):
        load_sizing(_write(tmp_path, text))


def test_serve_errors_name_the_serve_fields(tmp_path: Path) -> None:
    """A bad value in the serve section is reported at its serve.* field, with the file."""
    text = """goal: serve
model: llama3-8b
serve: {traffic: {arrival_rate_per_s: 10, input_tokens: 128, output_tokens: 16}, slo: {ttft_p99_s: -2},
        precision: fp9}
candidates: [{device: h100-sxm}]
"""
    path = _write(tmp_path, text)
    with pytest.raises(EmulatorError) as info:
        load_sizing(path)
    assert (info.value.file, info.value.field) == (path, "serve.precision") and "'fp8'" in str(info.value)


def test_exponent_numbers_and_duplicate_keys(tmp_path: Path) -> None:
    """`total_tokens: 1e12` is a number; a key written twice is refused naming both lines."""
    sz = load_sizing(_train(tmp_path))
    assert sz.train is not None and sz.train.total_tokens == 1e12
    path = _write(tmp_path, TRAIN.format(target="deadline_days: 30", device="h100-sxm", extra="goal: serve"))
    with pytest.raises(EmulatorError, match="lines 1 and 5") as info:
        load_sizing(path)
    assert info.value.field == "goal"


def test_serve_targets_take_speculation_and_engine_settings(tmp_path: Path) -> None:
    """A serving sizing file states its deployment as a scenario does: speculative decoding and engine settings
    reach the target's serving spec, checked the same way."""
    text = ("goal: serve\nmodel: llama3-8b\nserve: {traffic: {arrival_rate_per_s: 10, input_tokens: 512, "
            "output_tokens: 64}, slo: {ttft_p99_s: 2.0}, speculative: {draft_tokens: 2, acceptance_rate: 0.7}, "
            "engine_settings: {host.overlap: false}}\ncandidates: [h100-sxm]\n")
    sz = load_sizing(_write(tmp_path, text))
    assert sz.serve is not None and sz.serve.spec.speculative == (2, 0.7)
    assert sz.serve.spec.engine_settings == (("host.overlap", False),)
    with pytest.raises(EmulatorError) as e:
        load_sizing(_write(tmp_path, text.replace("acceptance_rate: 0.7", "acceptance_rate: 7")))
    assert e.value.field == "serve.speculative.acceptance_rate"


def test_train_targets_take_framework_settings(tmp_path: Path) -> None:
    """A training sizing file states its run's own stack values as a scenario does (`train.framework_settings`),
    checked the same way."""
    text = ("goal: train\nmodel: llama3-8b\ntrain: {total_tokens: 1e12, max_devices: 64, seq_len: 4096, "
            "global_batch_size: 512, framework_settings: {overlap.tp: 0.5}}\ncandidates: [h100-sxm]\n")
    sz = load_sizing(_write(tmp_path, text))
    assert sz.train is not None and sz.train.framework_settings == (("overlap.tp", 0.5),)
    with pytest.raises(EmulatorError) as e:
        load_sizing(_write(tmp_path, text.replace("overlap.tp: 0.5", "host.overlap: true")))
    assert e.value.field is not None and e.value.field.startswith("train.framework_settings")
