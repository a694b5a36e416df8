"""The one error type's 'did you mean': a suggestion only for a likely typo, otherwise the supported names."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.errors import EmulatorError, nearest
from emulator.scenario import load_scenario
from emulator.workloads.presets import PRESETS


@pytest.mark.parametrize("typo,meant", [("bf61", "bf16"), ("fp9", "fp8"), ("h100", "h100-sxm"),
                                        ("llama3-8", "llama3-8b"), ("lama", "llama")])
def test_a_likely_typo_gets_its_name(typo: str, meant: str) -> None:
    """A misspelt or shortened name is answered with the name it most likely meant."""
    hint = nearest(typo, ["bf16", "fp8", "h100-sxm", "llama3-8b", "llama", "mi300x"])
    assert hint.startswith("did you mean") and f"'{meant}'" in hint


def test_a_distant_name_lists_every_supported_name() -> None:
    """'gemma2' shares a digit with 'gpt2' but is not a typo of it: no guess, the whole list instead."""
    hint = nearest("gemma2", ["gpt2", "llama", "mistral", "qwen2"])
    assert "did you mean" not in hint
    assert all(name in hint for name in ("gpt2", "llama", "mistral", "qwen2"))


def test_an_unknown_model_lists_the_presets_and_a_fix(tmp_path: Path) -> None:
    """A scenario naming a model that ships nowhere gets every preset and a fix, and each listed name loads."""
    path = tmp_path / "s.yaml"
    path.write_text("model: gemma2\nhardware: {device: h100-sxm}\ntraining: {seq_len: 1024}\n")
    with pytest.raises(EmulatorError) as e:
        load_scenario(path)
    text = str(e.value)
    assert "did you mean" not in text and "Fix:" in text and "model" == e.value.field
    assert all(name in text for name in PRESETS)
    path.write_text(path.read_text().replace("gemma2", "llama3-8b"))  # a name from the list is valid
    assert load_scenario(path).model.name == "llama3-8b"
