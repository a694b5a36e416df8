"""The planners' views on the command line: `emulator compare`, and `emulator predict` with `--trace`, `--requests`,
`--cdf`, `--sweep-concurrency` and `--plot`, with the files they write and the errors they give."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from emulator.cli.main import main

TINY = ("{model_type: llama, num_hidden_layers: 4, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, "
        "intermediate_size: 128, vocab_size: 1000, max_position_embeddings: 2048}")
TRAIN = f"model: {TINY}\nhardware: {{device: h100-sxm, system: hgx-h100, num_devices: 8}}\n" \
        "training: {seq_len: 128, global_batch_size: 8, parallel: {tp: 2, pp: 2, dp: 2}}\n"
SERVE = f"model: {TINY}\nhardware: {{device: h100-sxm, num_devices: 2}}\n" \
        "inference: {input_tokens: 128, output_tokens: 16, batch_size: 4, num_requests: 40}\n"
PNG = b"\x89PNG\r\n\x1a\n"


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compare_prints_scenarios_side_by_side_with_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two serving scenarios: one column each, every serving figure, changes against the first in parentheses, and
    where power and cost come from; --json holds the same figures and relative changes."""
    a = _file(tmp_path, "a.yaml", SERVE)
    b = _file(tmp_path, "b.yaml", SERVE.replace("batch_size: 4", "batch_size: 8"))
    code, out, err = _run(capsys, "compare", a, b)
    assert code == 0, err
    for words in ("[0] " + a, "[1] " + b, "TTFT p99", "tokens/s per device", "power at the meter", "cost $/hour",
                  "sizing/economics.py", "%)"):
        assert words in out, words
    code, out, err = _run(capsys, "compare", a, b, "--json")
    got = json.loads(out)
    assert got["baseline"] == a and got["kinds"] == ["serving"] and got["left_out"] == []
    assert [s["scenario"] for s in got["scenarios"]] == [a, b]
    assert got["relative_to_baseline"][0]["tokens_per_s"] == 0.0
    second = got["scenarios"][1]
    assert got["relative_to_baseline"][1]["tokens_per_s"] == pytest.approx(
        second["tokens_per_s"] / got["scenarios"][0]["tokens_per_s"] - 1)


def test_compare_of_training_and_serving_keeps_common_figures(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A training and a serving scenario are compared on what both have; the output lists what it left out."""
    a, b = _file(tmp_path, "t.yaml", TRAIN), _file(tmp_path, "s.yaml", SERVE)
    code, out, err = _run(capsys, "compare", a, b, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["kinds"] == ["serving", "training"]
    assert "step_time_s" in got["left_out"] and "ttft_p99_s" in got["left_out"]
    assert "tokens_per_s_per_device" in got["compared"] and "mfu" in got["compared"]
    code, out, _ = _run(capsys, "compare", a, b)
    assert "left out: step time" in out and "TTFT" not in out.split("left out")[0]


def test_compare_needs_two_scenarios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "compare", _file(tmp_path, "a.yaml", SERVE))
    assert code == 2 and "at least two scenarios" in err and "Traceback" not in err


def test_predict_writes_a_trace_requests_and_a_cdf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A serving prediction writes its trace (JSON with traceEvents), per-request CSV and CDF PNG, says so after the
    table (on stderr with --json, whose stdout stays one JSON object)."""
    scenario = _file(tmp_path, "s.yaml", SERVE)
    trace, requests, cdf = tmp_path / "out" / "t.json", tmp_path / "out" / "r.csv", tmp_path / "c.png"
    code, out, err = _run(capsys, "predict", scenario, "--json", "--trace", str(trace), "--requests", str(requests),
                          "--cdf", str(cdf))
    assert code == 0, err
    assert json.loads(out)["mode"] == "inference"
    assert f"wrote {trace}" in err and f"wrote {requests}" in err and f"wrote {cdf}" in err
    assert json.loads(trace.read_text())["traceEvents"]
    with requests.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20 and rows[0]["request"] == "0"  # replica 0's share of 40 requests on 2 replicas
    assert cdf.read_bytes().startswith(PNG)


def test_predict_traces_a_training_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A cluster training prediction writes a per-stage trace and prints the plan's layout and collective times."""
    trace = tmp_path / "t.json"
    code, out, err = _run(capsys, "predict", _file(tmp_path, "t.yaml", TRAIN), "--trace", str(trace))
    assert code == 0, err
    for words in ("layout               8 ranks on 1 node(s) of 8 devices", "rank order", "tp   tensor parallel",
                  "collectives          per step of one rank", f"wrote {trace}: a trace of"):
        assert words in out, words
    processes = [e["args"]["name"] for e in json.loads(trace.read_text())["traceEvents"]
                 if e["name"] == "process_name"]
    assert processes == ["pipeline stage 0 (ranks 0-3)", "pipeline stage 1 (ranks 4-7)"]


@pytest.mark.parametrize("scenario,flags,words", [
    (TRAIN, ["--requests", "r.csv"], "a training scenario serves no requests"),
    (TRAIN, ["--plot", "p.png"], "--plot draws a concurrency sweep"),
    (SERVE, ["--sweep-concurrency", "1,2", "--trace", "t.json"], "describe one prediction, not a sweep"),
    (SERVE, ["--sweep-concurrency", "1,two"], "'two' is not a whole number"),
    (SERVE, ["--requests", "/proc/no/such/folder/r.csv"], "cannot write /proc/no/such/folder/r.csv"),
    (SERVE.replace("batch_size: 4", "disaggregation: {prefill_replicas: 1, decode_replicas: 1}")
     .replace("num_devices: 2", "system: hgx-h100, num_devices: 2"), ["--trace", "t.json"], "disaggregated"),
])
def test_view_mistakes_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], scenario: str,
                                        flags: list[str], words: str) -> None:
    code, out, err = _run(capsys, "predict", _file(tmp_path, "s.yaml", scenario),
                          *[str(tmp_path / f) if f.endswith((".csv", ".json", ".png")) and not f.startswith("/")
                            else f for f in flags])
    assert code == 2 and words in err and "Fix:" in err and "Traceback" not in err
    assert out == ""


def test_predict_sweeps_concurrency_with_a_table_json_and_plot(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--sweep-concurrency prints one row per level (TTFT p50/p99, TPOT p50, tokens/s per user and per device) and
    marks the Pareto front; --json lists the points; --plot writes the PNG."""
    scenario = _file(tmp_path, "s.yaml", SERVE.replace(", batch_size: 4, num_requests: 40", ""))
    plot = tmp_path / "sweep.png"
    code, out, err = _run(capsys, "predict", scenario, "--sweep-concurrency", "1,2,...,8", "--plot", str(plot))
    assert code == 0, err
    for words in ("concurrency  TTFT p50  TTFT p99  TPOT p50  tokens/s/user  tokens/s/device", "Pareto",
                  "provenance:", f"wrote {plot}"):
        assert words in out, words
    assert plot.read_bytes().startswith(PNG)
    code, out, err = _run(capsys, "predict", scenario, "--sweep-concurrency", "1,2,...,8", "--json")
    got = json.loads(out)
    assert [p["concurrency"] for p in got["points"]] == [1, 2, 4, 8]
    assert any(p["on_pareto_front"] for p in got["points"]) and got["provenance"]
