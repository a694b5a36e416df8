"""The command line: bad input gives one clear paragraph and exit status 2; good input prints a prediction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.cli import main

ROOT = Path(__file__).resolve().parent.parent

GOOD = """model: llama3-8b
hardware: {device: h100-sxm, num_devices: 1}
training: {seq_len: 1024, global_batch_size: 1, precision: bf16}
"""

# (name, scenario text, extra files, words the message must contain)
BAD = [
    ("malformed yaml", "model: llama3-8b\nhardware: {device: h100-sxm\n", {}, ["not valid YAML", "line"]),
    ("unknown device", GOOD.replace("h100-sxm", "h100-sx"), {}, ["hardware.device", "h100-sxm"]),
    ("unknown model", GOOD.replace("llama3-8b", "llama3-8c"), {}, ["llama3-8c", "llama3-8b"]),
    ("misspelled key", GOOD.replace("seq_len", "seq_lenght"), {}, ["training.seq_lenght", "seq_len"]),
    ("misspelled top key", GOOD.replace("training:", "trainig:"), {}, ["trainig", "training"]),
    ("zero size", GOOD.replace("seq_len: 1024", "seq_len: 0"), {}, ["training.seq_len", ">= 1"]),
    ("negative size", GOOD.replace("global_batch_size: 1", "global_batch_size: -4"), {},
     ["training.global_batch_size", ">= 1"]),
    ("config missing field", GOOD.replace("model: llama3-8b", "model: cfg.json"),
     {"cfg.json": {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,
                   "vocab_size": 100}}, ["cfg.json", "num_hidden_layers"]),
    ("heads do not divide hidden", GOOD.replace("model: llama3-8b", "model: cfg.json"),
     {"cfg.json": {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 100, "num_attention_heads": 3,
                   "intermediate_size": 128, "vocab_size": 100, "max_position_embeddings": 2048}},
     ["num_attention_heads", "hidden_size"]),
    ("unsupported precision", GOOD.replace("precision: bf16", "precision: fp4"), {}, ["training.precision", "fp4"]),
    ("system of another device", GOOD.replace("{device: h100-sxm,", "{device: h100-sxm, system: hgx-b200,"), {},
     ["hardware.system", "b200"]),
]


@pytest.mark.parametrize("name,text,files,words", BAD, ids=[b[0] for b in BAD])
def test_bad_scenarios_give_one_clear_paragraph(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                                                text: str, files: dict, words: list[str]) -> None:
    """Each bad input exits with status 2 and a one-paragraph message naming the file, the field and a fix."""
    for fname, content in files.items():
        (tmp_path / fname).write_text(json.dumps(content))
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    code = main(["predict", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ")
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, "one paragraph"
    assert any(w in err for w in ("Fix", "did you mean", "use one of", "Add ", "Use ", "use ", "choose", "give")), "gives a fix"
    assert str(tmp_path) in err, "names the file"
    for word in words:
        assert word in err, (word, err)


def test_subprocess_error_has_no_traceback(tmp_path: Path) -> None:
    """Run as a program, a bad file prints the message only and exits 2."""
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace("h100-sxm", "nope"))
    proc = subprocess.run([sys.executable, "-m", "emulator", "predict", str(path)], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "error:" in proc.stderr


def test_predict_json_has_the_contract_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`predict --json` prints one object with the fields users' scripts rely on."""
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    assert main(["predict", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("step_time_s", "tokens_per_s", "tokens_per_s_per_device", "flops_per_step",
                "model_flops_per_s_per_device", "mfu", "memory_per_device_bytes", "fits", "provenance",
                "unknown_ops", "kernels", "error_band"):
        assert key in out, key
    assert out["step_time_s"] > 0 and 0 < out["mfu"] < 1
    for fam in out["kernels"].values():
        assert set(fam) >= {"time_s", "flops", "bytes", "bound"}


def test_profiles_and_models_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """`profiles list|show` and `models list|show` print tables and JSON."""
    assert main(["profiles", "list"]) == 0
    assert "mtia-v2" in capsys.readouterr().out
    assert main(["profiles", "show", "mtia-v2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "mtia-v2" and shown["sources"]
    assert main(["models", "list"]) == 0
    assert "llama3.1-405b" in capsys.readouterr().out
    assert main(["models", "show", "deepseek-v3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_params"] > 6e11
    assert main(["profiles", "show", "h100"]) == 2
    assert "h100-sxm" in capsys.readouterr().err


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")
                                            if not p.name.startswith("sizing-")))
def test_every_shipped_example_predicts(example: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every example under examples/ predicts without error."""
    assert main(["predict", str(ROOT / "examples" / example), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step_time_s"] > 0
