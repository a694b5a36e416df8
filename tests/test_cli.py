"""The command line: bad input gives one clear paragraph and exit status 2; good input prints a prediction."""

from __future__ import annotations

import importlib.metadata
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import emulator
from emulator.cli import main
from emulator.stacks import STACK_KINDS, list_stacks, load_stack

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
    assert "Fix" in err or "did you mean" in err, "gives a fix"
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
    assert out["tokens_per_s"] == pytest.approx(out["tokens_per_step"] / out["step_time_s"], rel=1e-12)
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


def test_stacks_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    """`stacks list` names every shipped stack of each kind; `stacks show` prints every item with its value and
    source, and its validated end-to-end errors; its JSON is the profile's own `as_dict` and `validated`."""
    assert main(["stacks", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["kind"], s["name"]) for s in listed] == [(k, n) for k in STACK_KINDS for n in list_stacks(k)]
    assert main(["stacks", "list", "--kind", "serving"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in list_stacks("serving")) and "megatron-core" not in out
    assert main(["stacks", "show", "megatron-core", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    validated = shown.pop("validated")  # the stack's end-to-end errors per device family (stacks.accuracy)
    assert shown == load_stack("megatron-core", "training").as_dict()
    assert {r["device_family"] for r in validated} >= {"hopper", "blackwell"}
    assert all(r["stack"] == "megatron-core" for r in validated)
    assert main(["stacks", "show", "vllm"]) == 0
    out = capsys.readouterr().out
    vllm = load_stack("vllm", "serving")
    assert out.startswith(vllm.label)
    for key, item in vllm.as_dict()["items"].items():
        origin = "fit" if "fit" in item else "source"  # a fitted item cites its fit record
        assert f"  {key}: {json.dumps(item['value'])}\n      {origin}: {item[origin]}\n" in out, key
    assert "\nvalidated:\n  on " in out and "\n  on blackwell devices, TTFT: median |error|" in out


@pytest.mark.parametrize(("argv", "words"), [
    (["stacks", "show", "eager"], ["--kind training", "--kind serving"]),
    (["stacks", "show", "vllm", "--kind", "training"], ["serving stack", "--kind serving"]),
    (["stacks", "show", "vlm"], ["'vllm'", "emulator stacks list"]),
    (["stacks", "show"], ["NAME"]),
])
def test_stacks_mistakes_say_how_to_fix_them(argv: list[str], words: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """An ambiguous, misplaced, misspelled or missing stack name exits 2 with one paragraph saying the fix."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Fix:" in err and err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)


def test_stack_kinds_offered_are_the_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    """`--kind` accepts each stack kind the schema knows, and refuses another."""
    for kind in STACK_KINDS:
        assert main(["stacks", "list", "--kind", kind]) == 0
    assert main(["stacks", "list", "--kind", "inference"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_version_names_the_emulator_and_torch(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` prints one line: the installed emulator's version and the installed torch's."""
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out == f"emulator {emulator.__version__} (torch {torch.__version__})\n"


def test_version_without_torch_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Where torch is not installed, `--version` says so rather than failing."""
    installed = importlib.metadata.version

    def version(dist: str) -> str:
        if dist == "torch":
            raise importlib.metadata.PackageNotFoundError(dist)
        return installed(dist)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"emulator {emulator.__version__} (torch not installed)\n"


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")
                                            if not p.name.startswith("sizing-")))
def test_every_shipped_example_predicts(example: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every example under examples/ predicts without error."""
    assert main(["predict", str(ROOT / "examples" / example), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 < out["step_time_s"] < math.inf and not out["unknown_ops"]
    assert out["memory_per_device_bytes"] == pytest.approx(out["memory_breakdown"]["total"], rel=1e-12)


# --- every rendering path, as a table and as --json --------------------------------------------------------------

# Tiny inline models (config.json keys): two layers trace in milliseconds, and `predict` times every one of them.
TINY_LLAMA = ("{model_type: llama, num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, "
              "num_key_value_heads: 2, intermediate_size: 128, vocab_size: 1000, max_position_embeddings: 2048}")
TINY_DLRM = ("{model_type: dlrm, num_dense_features: 13, embedding_rows: [1000, 2000, 500], embedding_dim: 16, "
             "bottom_mlp: [32, 16], top_mlp: [32, 1]}")
# Llama-3-8B-wide layers, few of them: big enough to miss an H100's memory, still one traced block per kind.
WIDE_LLAMA = ("{{model_type: llama, num_hidden_layers: {layers}, hidden_size: {hidden}, num_attention_heads: 64, "
              "num_key_value_heads: 8, intermediate_size: {ffn}, vocab_size: 32000, max_position_embeddings: 8192}}")

# (name, scenario text, lines the table must hold, {JSON field: expected value, or None for "present"})
RENDERED = [
    ("training fits", f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm}}\n"
     "training: {seq_len: 128, global_batch_size: 2}\n",
     ["scenario on h100-sxm (training, 1 device(s)", ": fits",
      "plan                 one device; 2 micro-batch(es) of 1", "step breakdown"],
     {"mode": "training", "fits": True, "num_devices": 1, "plan": None, "breakdown": None, "fit_advice": "absent"}),
    ("training over memory with fixes",
     f"model: {WIDE_LLAMA.format(layers=8, hidden=4096, ffn=14336)}\n"
     "hardware: {device: h100-sxm, system: hgx-h100, num_devices: 8}\n"
     "training: {seq_len: 8192, global_batch_size: 64, parallel: {dp: 8, microbatch_size: 8}}\n",
     ["DOES NOT FIT", "over memory by", "would fit with       recompute: full",
      "would fit with       microbatch_size: 1"],
     {"fits": False, "fit_advice": None}),
    ("training over memory without a single fix",
     f"model: {WIDE_LLAMA.format(layers=32, hidden=8192, ffn=28672)}\nhardware: {{device: h100-sxm}}\n"
     "training: {seq_len: 512, global_batch_size: 1}\n",
     ["DOES NOT FIT", "over memory by", "would fit with       no single change fits"],
     {"fits": False, "fit_advice": None}),
    ("recommender training", f"model: {TINY_DLRM}\nhardware: {{device: h100-sxm}}\n"
     "training: {seq_len: 1, global_batch_size: 64}\n",
     ["(training, 1 device(s))", ": fits", "embedding", "accumulate gradients"],
     {"mode": "training", "fits": True, "plan": "absent"}),
    ("llm serving offline", f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm}}\n"
     "inference: {input_tokens: 128, output_tokens: 16, batch_size: 4}\n",
     ["(inference, 1 device(s)", "one batch            prefill", "serving (offline)", "TTFT", "TPOT",
      "J per token"],
     {"mode": "inference", "serving_scenario": "offline", "prefill_s": None, "decode_step_s": None,
      "ttft_s": None, "tpot_s": None, "energy_per_token_j": None, "max_batch": 4}),
    ("llm serving server with an slo", f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm, num_devices: 2}}\n"
     "inference: {input_tokens: 128, output_tokens: 16, scenario: server, num_requests: 200,\n"
     "            slo: {ttft_p99_s: 0.5, tpot_p99_s: 0.05}}\n",
     ["serving (server)", "2 replica(s) of tp=1", "SLO                  met: p99 TTFT",
      "searched: the highest Poisson rate meeting the SLO"],
     {"serving_scenario": "server", "meets_slo": True, "replicas": 2, "arrival_rate_per_s": None}),
    ("recommender serving", f"model: {TINY_DLRM}\nhardware: {{device: h100-sxm}}\n"
     "inference: {input_tokens: 1, output_tokens: 1, batch_size: 256, num_requests: 1000}\n",
     ["serving (offline)", "samples/s", "J per query", "embedding tables by tier"],
     {"serving_scenario": "offline", "energy_per_query_j": None, "throughput_tokens_per_s": 0.0,
      "prefill_s": "absent"}),
    ("disaggregated serving",
     f"model: {TINY_LLAMA}\nhardware: {{device: h100-sxm, system: hgx-h100, num_devices: 4}}\n"
     "inference: {input_tokens: 128, output_tokens: 16, scenario: server, num_requests: 200,\n"
     "            slo: {ttft_p99_s: 0.5, tpot_p99_s: 0.05},\n"
     "            disaggregation: {prefill_replicas: 1, decode_replicas: 3}}\n",
     ["serving (server)", "note: disaggregated: 1 prefill and 3 decode replica(s)"],
     {"prefill_replicas": 1, "decode_replicas": 3, "kv_transfer_s": None}),
    ("cluster training plan", f"model: {TINY_LLAMA.replace('num_hidden_layers: 2', 'num_hidden_layers: 4')}\n"
     "hardware: {device: h100-sxm, system: hgx-h100, num_devices: 8}\n"
     "training: {seq_len: 128, global_batch_size: 8, total_tokens: 1e9, parallel: {tp: 2, pp: 2, dp: 2}}\n",
     ["(training, 8 device(s), hgx-h100)", "plan                 tp 2, pp 2, dp 2; 4 micro-batch(es)",
      "pipeline bubble", "time to train", "collective"],
     {"num_devices": 8, "time_to_train_s": None, "goodput": None}),
]


def _predict(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *flags: str) -> tuple[int, str, str]:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    code = main(["predict", str(path), *flags])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name,text,lines,fields", RENDERED, ids=[r[0] for r in RENDERED])
def test_every_prediction_renders_as_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                                             text: str, lines: list[str], fields: dict) -> None:
    """Each kind of prediction prints its table, with the lines that belong to its kind, and exit status 0."""
    code, out, err = _predict(tmp_path, capsys, text)
    assert code == 0, err
    assert "Traceback" not in out + err
    for line in ["step time", "memory per device", "family", *lines]:
        assert line in out, (line, out)


@pytest.mark.parametrize("name,text,lines,fields", RENDERED, ids=[r[0] for r in RENDERED])
def test_every_prediction_renders_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str,
                                          lines: list[str], fields: dict) -> None:
    """Each kind of prediction prints one JSON object with the common fields and those of its kind."""
    code, out, err = _predict(tmp_path, capsys, text, "--json")
    assert code == 0, err
    assert "Traceback" not in err
    got = json.loads(out)
    for key in ("step_time_s", "tokens_per_s", "mfu", "memory_per_device_bytes", "memory_breakdown", "fits",
                "provenance", "error_band", "kernels", "figures"):
        assert key in got, key
    assert got["step_time_s"] > 0
    for key, expected in fields.items():
        if expected == "absent":
            assert key not in got, key
        else:
            assert key in got, key
            if expected is not None:
                assert got[key] == expected, (key, got[key])
    if got.get("fit_advice"):
        advice = got["fit_advice"]
        assert advice["over_by_bytes"] == got["memory_per_device_bytes"] - got["memory_capacity_bytes"] > 0
        assert advice["fixes"] or advice["advice"]
        assert all(fix["memory_per_device_bytes"] <= got["memory_capacity_bytes"] for fix in advice["fixes"])


@pytest.mark.parametrize("flags", [(), ("--json",)], ids=["table", "json"])
def test_a_request_longer_than_the_context_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            flags: tuple[str, ...]) -> None:
    """A prompt plus output beyond max_position_embeddings exits 2 naming inference.input_tokens, no traceback."""
    text = (f"model: {TINY_LLAMA.replace('2048}', '256}')}\nhardware: {{device: h100-sxm}}\n"
            "inference: {input_tokens: 300, output_tokens: 16, batch_size: 2}\n")
    code, out, err = _predict(tmp_path, capsys, text, *flags)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.strip().count("\n") == 0
    assert "Traceback" not in err
    assert str(tmp_path / "scenario.yaml") in err and "inference.input_tokens" in err and "Fix:" in err
