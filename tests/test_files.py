"""Specs for the strict file layer: YAML 1.2 numbers, refused duplicates, tags and alias bombs, one-paragraph errors
for broken files, and `Fields`, the strict accessor every reader uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.errors import EmulatorError
from emulator.fields import Fields
from emulator.files import MAX_ALIAS_NODES, read_json, read_json_text, read_yaml, read_yaml_text
from emulator.predict import predict_json
from emulator.scenario import load_scenario
from emulator.sizing import load_sizing

NUMBERS = {"a": "1.5e12", "b": "15e12", "c": "1e-3", "d": "-2.5E+3"}
EXPECTED = {"a": 1.5e12, "b": 15e12, "c": 1e-3, "d": -2.5e3}
# Nine laughs, then eight levels of nine aliases each: 9**9 (387 million) values once expanded.
LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True))
SCENARIO = """model: llama3-8b
hardware: {device: h100-sxm}
training: {seq_len: 1024, global_batch_size: 8, total_tokens: 1.5e12}
"""
SIZING = """goal: train
model: llama3-8b
train: {total_tokens: 1.5e12, deadline_days: 30, seq_len: 4096, global_batch_size: 512}
candidates: [{device: h100-sxm, system: hgx-h100}]
"""


def _error(read, *args: object) -> EmulatorError:  # type: ignore[no-untyped-def]
    with pytest.raises(EmulatorError) as info:
        read(*args)
    assert "\n" not in str(info.value), "one paragraph"
    return info.value


def test_exponent_numbers_are_floats_in_every_reader(tmp_path: Path) -> None:
    """`1.5e12`, `15e12`, `1e-3` and `-2.5E+3` are floats in YAML files, YAML text and JSON files alike."""
    text = "".join(f"{k}: {v}\n" for k, v in NUMBERS.items())
    (tmp_path / "n.yaml").write_text(text)
    (tmp_path / "n.json").write_text("{" + ", ".join(f'"{k}": {v}' for k, v in NUMBERS.items()) + "}")
    for data in (read_yaml_text(text), read_yaml(tmp_path / "n.yaml"), read_json(tmp_path / "n.json")):
        assert data == EXPECTED and all(isinstance(v, float) for v in data.values())


def test_yaml_1_2_scalars() -> None:
    """Only true/false are booleans; yes/no/on/off, 0x10, dates and 1_000 stay text; 010 is ten; 7 is an int."""
    data = read_yaml_text("a: yes\nb: no\nc: on\nd: off\ne: true\nf: False\ng: 0x10\nh: 010\ni: 2024-01-01\n"
                          "j: 1_000\nk: 7\nl: ~\nm: '1.5e12'\n")
    assert data == {"a": "yes", "b": "no", "c": "on", "d": "off", "e": True, "f": False, "g": "0x10", "h": 10,
                    "i": "2024-01-01", "j": "1_000", "k": 7, "l": None, "m": "1.5e12"}
    assert isinstance(data["k"], int)


def test_yaml_duplicate_keys_name_both_lines() -> None:
    """A key written twice is refused, naming the key's dotted field and both lines."""
    error = _error(read_yaml_text, "model: a\nhardware:\n  device: x\n  device: y\nmodel: b\n", "s.yaml")
    assert (error.file, error.field) == ("s.yaml", "hardware.device")
    assert "lines 3 and 4" in str(error) and "Fix" in str(error)


def test_json_duplicate_keys_name_both_lines() -> None:
    """A JSON object with a key twice is refused, naming the key and both lines."""
    error = _error(read_json_text, '{\n "a": {"x": 1,\n   "y": 2,\n   "x": 3}\n}', "c.json")
    assert (error.file, error.field) == ("c.json", "x")
    assert "lines 2 and 4" in str(error) and "Fix" in str(error)


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['echo pwned']", "!foo 1", "!!binary aGk=",
                                 "!!set {a, b}"])
def test_tags_outside_the_core_schema_are_refused(tag: str) -> None:
    """`!!python/...`, local tags and YAML 1.1 types are refused at their field, with the fix."""
    error = _error(read_yaml_text, f"x: 1\nmodel: {tag}\n", "s.yaml")
    assert error.field == "model" and "line 2" in str(error) and "Fix: remove the tag" in str(error)
    assert tag.split()[0] in str(error)


def test_core_schema_tags_are_read() -> None:
    """Explicit core tags keep working: `!!str 12` is text, `!!float 1` a float."""
    assert read_yaml_text("a: !!str 12\nb: !!float 1\n") == {"a": "12", "b": 1.0}


def test_a_billion_laughs_is_refused() -> None:
    """Aliases that expand past MAX_ALIAS_NODES values are refused before they are expanded."""
    error = _error(read_yaml_text, LAUGHS, "bomb.yaml")
    assert error.file == "bomb.yaml" and str(MAX_ALIAS_NODES) in str(error) and "Fix" in str(error)


def test_small_aliases_are_expanded_and_self_references_refused() -> None:
    """A reused block is copied; an alias to itself is an error, not an endless loop."""
    assert read_yaml_text("a: &p {tp: 2}\nb: *p\n") == {"a": {"tp": 2}, "b": {"tp": 2}}
    assert "itself" in str(_error(read_yaml_text, "a: &r [*r]\n"))


def test_binary_junk_is_one_paragraph_naming_the_line(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 name the file and the line of the first bad byte; control characters likewise."""
    junk = bytes(range(256)) * 4
    path = tmp_path / "junk.yaml"
    path.write_bytes(junk)
    error = _error(read_yaml, path)
    line = junk.count(b"\n", 0, 0x80) + 1  # 0x80, the first byte that cannot start a UTF-8 character
    assert error.file == str(path) and f"line {line}" in str(error)
    assert "UTF-8" in str(error) and "Fix" in str(error)
    path.write_bytes(b"model: llama3-8b\nhardware: \x00\x01\n")
    assert "control character" in str(_error(read_yaml, path)) and "line 2" in str(_error(read_yaml, path))


def test_truncated_files_are_one_paragraph_naming_the_line(tmp_path: Path) -> None:
    """A YAML or JSON file cut short names the file, the line and a fix."""
    path = tmp_path / "cut.yaml"
    path.write_text(SCENARIO[: SCENARIO.index("h100")])
    error = _error(read_yaml, path)
    assert error.file == str(path) and "not valid YAML at line 2" in str(error) and "Fix" in str(error)
    path = tmp_path / "cut.json"
    path.write_text(json.dumps({"a": [1, 2, 3], "b": {"c": 4}}, indent=1)[:25])
    error = _error(read_json, path)
    assert error.file == str(path) and "not valid JSON at line" in str(error) and "truncated" in str(error)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    """A path that does not exist is one paragraph naming it."""
    assert "no such file" in str(_error(read_yaml, tmp_path / "nope.yaml"))


def test_unknown_keys_name_the_nearest_valid_one() -> None:
    """Fields refuses an unknown key at its dotted field, suggesting the closest allowed key."""
    fields = Fields({"parallel": {"tp": 2, "ppp": 1}}, file="s.yaml", allowed=("parallel",), prefix="training")
    error = _error(fields.section, "parallel", ("tp", "pp", "dp"))
    assert error.field == "training.parallel.ppp" and "did you mean 'pp'" in str(error) and "Fix" in str(error)


def test_fields_check_types_and_name_the_field() -> None:
    """Numbers, whole numbers, choices and booleans are checked; a missing key says how to add it."""
    r = Fields({"n": 1e3, "x": "15e12", "b": "yes", "c": "fp9", "neg": -1}, file="s.yaml", allowed=("n", "x", "b", "c",
                                                                                                       "neg", "need"))
    assert r.integer("n") == 1000 and r.number("missing", 2.0) == 2.0
    assert _error(r.number, "x").field == "x"  # text is never a number, quoted or not
    assert "true or false" in str(_error(r.boolean, "b", False))
    assert "did you mean 'fp8'" in str(_error(r.choice, "c", ("fp8", "bf16"), "bf16"))
    assert ">= 1" in str(_error(r.integer, "neg"))
    assert "add it, e.g. need: 1" in str(_error(r.integer, "need"))


def test_a_scenario_with_model_twice_names_both_lines(tmp_path: Path) -> None:
    """`model:` written twice in a scenario is an error naming both lines, never the last one silently winning."""
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + "model: llama3-70b\n")
    error = _error(load_scenario, path)
    assert (error.file, error.field) == (str(path), "model") and "lines 1 and 4" in str(error)


def test_exponent_numbers_work_in_scenario_and_sizing_files(tmp_path: Path) -> None:
    """`total_tokens: 1.5e12` is a number in a scenario and in a sizing file."""
    (tmp_path / "s.yaml").write_text(SCENARIO)
    (tmp_path / "z.yaml").write_text(SIZING)
    training = load_scenario(tmp_path / "s.yaml").training
    sizing = load_sizing(tmp_path / "z.yaml").train
    assert training is not None and sizing is not None
    assert training.total_tokens == 1.5e12 and sizing.total_tokens == 1.5e12


def test_an_inline_model_without_context_length_predicts(tmp_path: Path) -> None:
    """An inline llama without max_position_embeddings takes Hugging Face's 2048, says so, and predicts."""
    model = ("{model_type: llama, num_hidden_layers: 2, hidden_size: 256, num_attention_heads: 4, intermediate_size: "
             "512, vocab_size: 1000, rms_norm_eps: 1e-5, rope_theta: 5e5, tie_word_embeddings: false}")
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("llama3-8b", model))
    scenario = load_scenario(path)
    assert scenario.model.summary()["assumed"] == {"max_position_embeddings": 2048}
    assert scenario.model.max_seq_len == 2048  # type: ignore[union-attr]
    assert float(predict_json(scenario)["step_time_s"]) > 0  # type: ignore[arg-type]
