"""Sizing candidates: a plain device name or {device, system, precision}; each candidate is searched at its own
precision, so fp8 GPUs and an int8 accelerator are compared in one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.cluster import Plan, predict_training
from emulator.errors import EmulatorError
from emulator.sizing import load_sizing, size
from emulator.sizing.search import enumerate_plans, search_serving, training_scenario
from emulator.sizing.spec import precision_of

TINY_LLAMA = ("{model_type: llama, num_hidden_layers: 4, hidden_size: 256, num_attention_heads: 8, "
              "num_key_value_heads: 8, intermediate_size: 512, vocab_size: 1000, max_position_embeddings: 2048}")
TRAIN = f"""goal: train
model: {TINY_LLAMA}
train: {{total_tokens: 1e9, deadline_days: 30, seq_len: 256, global_batch_size: 8, precision: bf16}}
candidates: CANDIDATES
search: {{tp: [1], pp: [1], microbatch_size: [1], recompute: [none], zero: [0]}}
"""
SERVE = f"""goal: serve
model: {TINY_LLAMA}
serve:
  traffic: {{arrival_rate_per_s: 5, input_tokens: 64, output_tokens: 8}}
  slo: {{ttft_p99_s: SLO, tpot_p99_s: 0.1}}
  precision: bf16
  num_requests: 100
candidates: CANDIDATES
"""


def _write(tmp_path: Path, text: str, candidates: str, slo: str = "1.0") -> str:
    path = tmp_path / "sizing.yaml"
    path.write_text(text.replace("CANDIDATES", candidates).replace("SLO", slo))
    return str(path)


def test_plain_names_and_mappings_with_precision_parse(tmp_path: Path) -> None:
    """A device name takes its first shipped system and the target's precision; a mapping may set its own."""
    sz = load_sizing(_write(tmp_path, SERVE, "[h100-sxm, {device: h100-sxm, precision: fp8}, "
                                             "{device: mtia-v2, system: mtia-rack, precision: int8}]"))
    assert [(c.device.name, c.system.name, c.precision) for c in sz.candidates] == [
        ("h100-sxm", "hgx-h100", None), ("h100-sxm", "hgx-h100", "fp8"), ("mtia-v2", "mtia-rack", "int8")]
    assert [precision_of(sz, c) for c in sz.candidates] == ["bf16", "fp8", "int8"]


@pytest.mark.parametrize("candidates,field,words", [
    ("[{device: a100-sxm, precision: fp8}]", "candidates[0].precision", ["'fp8' is not supported by a100-sxm", "Fix"]),
    ("[{device: h100-sxm, precision: int4}]", "candidates[0].precision", ["int4", "Fix"]),
    ("[h100-sxm, {device: h100-sxm, system: hgx-h100}]", "candidates[1]", ["listed twice", "different precision"]),
])
def test_bad_candidates_name_the_field_and_fix(tmp_path: Path, candidates: str, field: str,
                                               words: list[str]) -> None:
    """A precision the device lacks, an unknown precision and a repeat are errors naming the candidate."""
    with pytest.raises(EmulatorError) as e:
        load_sizing(_write(tmp_path, SERVE, candidates))
    assert e.value.field == field and all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize("text", [TRAIN, SERVE], ids=["train", "serve"])
def test_the_precision_fix_is_valid(tmp_path: Path, text: str) -> None:
    """Every precision the a100's fp8 error lists loads for that goal and device."""
    with pytest.raises(EmulatorError) as e:
        load_sizing(_write(tmp_path, text, "[{device: a100-sxm, precision: fp8}]"))
    listed = str(e.value).split("Fix: use one of ")[1].split(" for ")[0].split(", ")
    assert listed and "fp8" not in listed
    for precision in listed:
        sz = load_sizing(_write(tmp_path, text, f"[{{device: a100-sxm, precision: {precision}}}]"))
        assert precision_of(sz, sz.candidates[0]) == precision


def test_training_search_runs_each_candidate_at_its_precision(tmp_path: Path) -> None:
    """Rows carry each candidate's precision, and the fp8 row is the step `emulator predict` gives at fp8."""
    sz = load_sizing(_write(tmp_path, TRAIN, "[h100-sxm, {device: h100-sxm, precision: fp8}]"))
    res = size(sz)
    by_precision = {r["plan"]["precision"]: r for r in res.rows}
    assert set(by_precision) == {"bf16", "fp8"}
    fp8 = sz.candidates[1]
    row = by_precision["fp8"]
    plan = Plan(tp=1, pp=1, dp=row["plan"]["dp"], microbatch_size=1, zero=0, recompute="none",
                global_batch_size=8, seq_len=256)
    scenario = training_scenario(sz, fp8, plan)
    assert scenario.training is not None and scenario.training.precision == "fp8"
    assert predict_training(scenario).step_time_s == pytest.approx(row["step_time_s"], rel=1e-9)
    assert by_precision["fp8"]["mfu"] != by_precision["bf16"]["mfu"]
    _, kept = enumerate_plans(sz, fp8, {}, {})
    assert kept  # the memory cache keys on precision: no bf16 figure reused for fp8


def test_serving_search_runs_each_candidate_at_its_precision(tmp_path: Path) -> None:
    """Serving rows carry the candidate's own precision (int8 on the accelerator, fp8 on the GPU)."""
    sz = load_sizing(_write(tmp_path, SERVE, "[{device: h100-sxm, precision: fp8}, {device: mtia-v2, "
                                             "precision: int8}]"))
    rows, _, _ = search_serving(sz)
    assert {(r["device"], r["plan"]["precision"]) for r in rows} >= {("h100-sxm", "fp8"), ("mtia-v2", "int8")}


def test_an_slo_below_the_floor_names_the_floor(tmp_path: Path) -> None:
    """When even a light load misses the SLO, the rejection gives the latency floor (one request at a time)."""
    sz = load_sizing(_write(tmp_path, SERVE, "[h100-sxm]", slo="0.000001"))
    rows, rejected, _ = search_serving(sz)
    assert not rows and "its floor, one request at a time, is p99 TTFT" in rejected["slo"]["example"]


def test_a_serving_slo_in_milliseconds_warns(tmp_path: Path) -> None:
    """serve.slo.ttft_p99_s: 500 warns that SLOs are in seconds (and still loads)."""
    sz = load_sizing(_write(tmp_path, SERVE, "[h100-sxm]", slo="500"))
    assert len(sz.warnings) == 1 and "serve.slo.ttft_p99_s is 500 s" in sz.warnings[0]
    assert "write ttft_p99_s: 0.5" in sz.warnings[0]
    assert load_sizing(_write(tmp_path, SERVE, "[h100-sxm]", slo="0.5")).warnings == ()
