"""Every published comparison in one list (emulator/validation/sources.py): case records and their summaries per
source and stack, split by the class of the cases' models."""

from __future__ import annotations

import pytest

from emulator.validation.sources import CASE_KEYS, by_source, case_records, model_class, render

SECTION = {"cases": [
    {"id": "a", "metric": "tpot_ms", "published": 10.0, "predicted": 11.0, "error": 0.1, "model": "deepseek-v3"},
    {"id": "b", "metric": "tpot_ms", "published": 10.0, "predicted": 7.0, "error": -0.3, "model": "qwen3-235b-a22b",
     "stack": "vllm"},
    {"id": "c", "metric": "tpot_ms", "published": 10.0, "predicted": 10.2, "error": 0.02, "model": "llama3.1-8b"},
    {"id": "d", "unit": "tokens/s", "published": 10.0, "predicted": 12.0, "error": 0.2},
]}


def test_case_records_fill_stack_and_source_and_keep_the_model() -> None:
    out = case_records(SECTION, source="here", stack="trtllm")
    assert all(set(CASE_KEYS) <= set(r) for r in out)
    assert [r.get("model") for r in out] == ["deepseek-v3", "qwen3-235b-a22b", "llama3.1-8b", None]
    assert [r["stack"] for r in out] == ["trtllm", "vllm", "trtllm", "trtllm"]
    assert out[3]["metric"] == "tokens/s" and {r["source"] for r in out} == {"here"}


@pytest.mark.parametrize("name, expected", [("deepseek-v3", "moe"), ("qwen3-30b-a3b", "moe"),
                                            ("llama3-70b", "dense"), ("gpt3-175b", "dense"), (None, None)])
def test_a_models_class_is_whether_it_routes_to_experts(name: str | None, expected: str | None) -> None:
    assert model_class(name) == expected


def test_by_source_summarises_each_model_class_apart() -> None:
    rows = {(r["stack"], r["metric"]): r for r in by_source(case_records(SECTION, source="here", stack="trtllm"))}
    trt = rows[("trtllm", "tpot_ms")]
    assert trt["num_cases"] == 2 and set(trt["by_model_class"]) == {"dense", "moe"}
    assert trt["by_model_class"]["moe"]["mean_error"] == pytest.approx(0.1)
    assert trt["by_model_class"]["dense"]["median_abs_error"] == pytest.approx(0.02)
    assert rows[("trtllm", "tokens/s")]["by_model_class"] == {}  # no model named: only the whole
    text = render(list(rows.values()))
    assert "dense / MoE" in text.splitlines()[1]
    trt_line = next(line for line in text.splitlines() if " tpot_ms " in line and "trtllm" in line)
    assert trt_line.endswith("2.0% / 10.0%")
    vllm_line = next(line for line in text.splitlines() if "vllm" in line)
    assert vllm_line.endswith("- / 30.0%")
    long = render([dict(rows[("trtllm", "tpot_ms")], source="AIConfigurator unseen models, Blackwell (held out)")])
    assert "AIConfigurator unseen models, Blackwell (held out) trtllm" in long  # names are never cut
