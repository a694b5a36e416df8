"""Validated accuracy: each stack's end-to-end errors per device family (stack_profiles/fits/validated.json), as
predictions and sizing reports state them beside their kernel-level error band."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from emulator.errors import EmulatorError
from emulator.files import shipped
from emulator.hardware import list_devices, load_device
from emulator.predict import predict_scenario
from emulator.scenario import load_scenario
from emulator.stacks import list_stacks
from emulator.stacks.accuracy import METRICS, MODEL_CLASSES, Accuracy, class_of, lines, records, validated
from emulator.validation.accuracy_records import FITTED, FITTED_ON, gather, stale

FITS = shipped("stack_profiles") / "fits"
RECORD = {"stack": "trtllm", "device_family": "hopper", "metric": "ttft", "num_cases": 3, "median_abs_error": 0.2,
          "mean_error": -0.1, "max_abs_error": 0.5, "method": "held out", "source": "somewhere"}


def _write(tmp_path: Path, items: object, name: str = "validated.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"about": "test", "records": items}))
    return str(path)


def test_the_shipped_records_name_shipped_stacks_families_and_metrics() -> None:
    """Every record names a shipped stack, a device family of a shipped profile and a known metric."""
    stacks = set(list_stacks("training")) | set(list_stacks("serving"))
    families = {load_device(d).family for d in list_devices()}
    shipped_records = records()
    assert shipped_records
    for r in shipped_records:
        assert r.stack in stacks and r.device_family in families and r.metric in METRICS
        assert 0 <= r.median_abs_error <= r.max_abs_error and r.num_cases >= 1


@pytest.mark.parametrize("name", ["megatron-core-hopper", "trtllm-hopper", "vllm-hopper", "sglang-hopper",
                                  "vllm-hopper-moe-host"])
def test_a_fitted_family_reports_its_fits_leave_one_model_out_errors(name: str) -> None:
    """Where a stack was fitted on a family, its records are the fit record's held-out errors, metric by metric,
    under the source its cases came from (an item fitted on a section of its own, `FITTED_ON`, under that one's)."""
    fit = json.loads((FITS / f"{name}.json").read_text())
    stack, family = fit["stack"], fit["device_family"]
    source = next((s for (st, s), (n, _) in FITTED_ON.items() if n == name), None) or FITTED[stack][0]
    mine = {r.metric: r for r in records() if r.stack == stack and r.device_family == family
            and r.method == "leave one model out" and r.source == source}
    by_metric: dict[str, list[float]] = {}
    for case in fit["cases"]:
        metric = {"tpot_ms": "tpot", "ttft_ms": "ttft"}.get(case["metric"], "training_throughput")
        by_metric.setdefault(metric, []).append(case["error_held_out"])
    assert set(mine) == set(by_metric)
    for metric, errors in by_metric.items():
        assert mine[metric].num_cases == len(errors)
        assert mine[metric].median_abs_error == pytest.approx(statistics.median(abs(e) for e in errors), abs=1e-4)
        assert mine[metric].mean_error == pytest.approx(statistics.fmean(errors), abs=1e-4)


def test_a_prediction_gets_its_family_records_for_its_modes_metrics() -> None:
    """Serving on Hopper: TTFT, TPOT and throughput records of the engine, no other family's; training the
    framework's throughput; a family without records gets the others', marked so; an unknown stack nothing."""
    serving = validated("trtllm", "hopper", "inference")
    metrics = [r["metric"] for r in serving["records"]]
    assert {"ttft", "tpot"} <= set(metrics) and serving["other_families"] == []
    assert metrics.index("ttft") < metrics.index("tpot")  # in the order the mode lists its metrics
    training = validated("megatron-core", "blackwell", "training")
    assert [r["metric"] for r in training["records"]] == ["training_throughput"]
    assert training["records"][0]["method"] == "held out"
    none_here = validated("trtllm", "ada", "inference")
    assert none_here["records"] == [] and none_here["other_families"]
    assert lines(none_here)[0].startswith("no published measurements on ada devices")
    assert validated("not-a-stack", "hopper", "training") == {}


def test_a_record_reads_with_its_sign() -> None:
    text = Accuracy(**RECORD).describe()  # type: ignore[arg-type]
    assert text.startswith("TTFT: median |error| 20.0%, signed mean -10.0% (predicted below measured)")
    assert "3 published cases (somewhere; none of them used in any fit)" in text


CLASSES = {"dense": {"num_cases": 2, "median_abs_error": 0.1, "mean_error": 0.05, "max_abs_error": 0.2},
           "moe": {"num_cases": 1, "median_abs_error": 0.5, "mean_error": -0.5, "max_abs_error": 0.5}}


def test_a_model_class_reads_its_own_errors_first(tmp_path: Path) -> None:
    """A prediction of an MoE model leads with the MoE cases' errors, the record's all-model ones beside them; a
    class the record has no case of, or none named, reads the whole record."""
    (r,) = records(_write(tmp_path, [RECORD | {"by_model_class": CLASSES}]))
    assert r.by_model_class["moe"].num_cases == 1 and Accuracy.from_dict(r.as_dict()) == r
    moe = r.describe("moe")
    assert moe.startswith("TTFT of MoE models: median |error| 50.0%, signed mean -50.0% (predicted below measured)")
    assert "1 of 3 published cases (somewhere;" in moe and moe.endswith("all models: median |error| 20.0%, signed "
                                                                       "mean -10.0%")
    assert r.describe("dense").startswith("TTFT of dense models: median |error| 10.0%, signed mean +5.0% "
                                          "(predicted above measured)")
    assert r.describe(None) == r.describe("other") == Accuracy(**RECORD).describe()  # type: ignore[arg-type]


@pytest.mark.parametrize("classes, field", [
    ({"huge": CLASSES["moe"]}, "records[0].by_model_class.huge"),
    ({"moe": CLASSES["moe"] | {"num_cases": 0}}, "records[0].by_model_class.moe.num_cases"),
    ({"moe": CLASSES["moe"] | {"median_abs_error": 0.9}}, "records[0].by_model_class.moe.median_abs_error"),
    ({"moe": {"num_cases": 1}}, "records[0].by_model_class.moe.median_abs_error"),
])
def test_a_bad_model_class_is_an_error_naming_its_field(tmp_path: Path, classes: object, field: str) -> None:
    path = _write(tmp_path, [RECORD | {"by_model_class": classes}])
    with pytest.raises(EmulatorError) as err:
        records(path)
    assert err.value.file == path and err.value.field == field and "Fix:" in err.value.message


def test_gather_splits_each_record_by_the_class_of_its_cases_models() -> None:
    """A fit record's cases take their model from `validate`'s cases (by id) when they name none; held-out cases
    name theirs; cases without a model count only in the whole."""
    fit = json.loads((FITS / "megatron-core-hopper.json").read_text())
    ids = [c["id"] for c in fit["cases"]]
    held = {"stack": "megatron-core", "metric": "tokens_per_sec_per_gpu", "published": 1.0,
            "source": "Megatron-Bridge B200/GB200 (held out)"}
    fitted = held | {"source": "NeMo/Megatron-Bridge H100 tables", "predicted": 1.0, "error": 0.0}
    validate = {"all_cases": [fitted | {"id": ids[0], "model": "qwen3-30b-a3b"},
                              fitted | {"id": ids[1], "model": "llama3-8b"},
                              held | {"id": "a", "predicted": 1.2, "error": 0.2, "model": "deepseek-v3"},
                              held | {"id": "b", "predicted": 0.9, "error": -0.1, "model": "llama3-70b"},
                              held | {"id": "c", "predicted": 0.5, "error": -0.5}]}
    out = {(r["stack"], r["device_family"]): r for r in gather(validate)}
    hopper = out[("megatron-core", "hopper")]
    assert hopper["num_cases"] == len(ids)
    assert {k: v["num_cases"] for k, v in hopper["by_model_class"].items()} == {"dense": 1, "moe": 1}
    assert hopper["by_model_class"]["moe"]["mean_error"] == pytest.approx(fit["cases"][0]["error_held_out"], abs=1e-4)
    blackwell = out[("megatron-core", "blackwell")]
    assert blackwell["num_cases"] == 3 and blackwell["by_model_class"] == {
        "dense": {"num_cases": 1, "median_abs_error": 0.1, "mean_error": -0.1, "max_abs_error": 0.1},
        "moe": {"num_cases": 1, "median_abs_error": 0.2, "mean_error": 0.2, "max_abs_error": 0.2}}


def test_an_item_fitted_on_a_held_out_section_takes_that_sections_cases_out_of_its_held_out_record() -> None:
    """vLLM's host time per MoE layer was fitted on the 4-bit checkpoints' rows: that section's vLLM record is the
    fit's leave-one-model-out one, validate's in-sample cases of it are not also reported as held out, and the
    section's other stacks stay held out."""
    (stack, source), _ = next(iter(FITTED_ON.items()))
    case = {"id": "x", "metric": "ttft_ms", "published": 1.0, "predicted": 0.5, "error": -0.5, "source": source}
    out = gather({"all_cases": [case | {"stack": stack}, case | {"id": "y", "stack": "trtllm"}]})
    mine = [r for r in out if r["source"] == source and r["metric"] == "ttft"]
    assert {(r["stack"], r["method"]) for r in mine} == {(stack, "leave one model out"), ("trtllm", "held out")}
    assert next(r for r in mine if r["stack"] == "trtllm")["num_cases"] == 1


def test_the_shipped_records_split_training_by_model_class() -> None:
    """Megatron-Core on Hopper: every fit case has a model, split into dense and MoE runs."""
    (r,) = [r for r in records() if (r.stack, r.device_family, r.metric) == ("megatron-core", "hopper",
                                                                               "training_throughput")]
    assert set(r.by_model_class) == {"dense", "moe"}
    assert sum(c.num_cases for c in r.by_model_class.values()) == r.num_cases


@pytest.mark.parametrize("change, field", [
    ({"surprise": 1}, "records[0].surprise"),
    ({"metric": "latency"}, "records[0].metric"),
    ({"method": "guessed"}, "records[0].method"),
    ({"median_abs_error": 0.9}, "records[0].median_abs_error"),
    ({"num_cases": 0}, "records[0].num_cases"),
])
def test_a_bad_record_is_an_error_naming_its_field(tmp_path: Path, change: dict[str, object], field: str) -> None:
    path = _write(tmp_path, [RECORD | change])
    with pytest.raises(EmulatorError) as err:
        records(path)
    assert err.value.file == path and err.value.field == field and "Fix:" in err.value.message


def test_a_missing_value_or_a_repeated_record_is_an_error(tmp_path: Path) -> None:
    partial = {k: v for k, v in RECORD.items() if k != "mean_error"}
    with pytest.raises(EmulatorError) as err:
        records(_write(tmp_path, [partial], "partial.json"))
    assert err.value.field == "records[0].mean_error" and "missing" in err.value.message
    with pytest.raises(EmulatorError) as err:
        records(_write(tmp_path, [RECORD, RECORD], "twice.json"))
    assert err.value.field == "records[1]" and "repeats" in err.value.message


def test_predict_states_the_stacks_validated_errors(tmp_path: Path) -> None:
    """`predict` carries `validated` for the device's family in its JSON and prints it."""
    path = tmp_path / "train.yaml"
    path.write_text("model: llama3-8b\nhardware: {device: h100-sxm, system: hgx-h100, num_devices: 8}\n"
                    "training: {global_batch_size: 8, seq_len: 2048, precision: bf16,\n"
                    "           parallel: {tp: 1, pp: 1, dp: 8, microbatch_size: 1}}\n")
    p = predict_scenario(load_scenario(path))
    out = p.to_json()
    assert out["validated"]["device_family"] == "hopper" and out["validated"]["model_class"] == "dense"
    assert [r["metric"] for r in out["validated"]["records"]] == ["training_throughput"]
    assert out["validated"]["records"][0]["stack"] == out["stack"]["name"] == "megatron-core"
    assert "of dense models" in lines(out["validated"])[0]


def test_a_model_class_is_a_transformers_routing_and_none_for_other_models() -> None:
    assert (class_of(True), class_of(False), class_of(None)) == ("moe", "dense", None)
    assert {class_of(True), class_of(False)} == set(MODEL_CLASSES)


def test_an_moe_prediction_leads_with_the_moe_cases_errors(tmp_path: Path) -> None:
    path = tmp_path / "moe.yaml"
    path.write_text("model: qwen3-30b-a3b\nhardware: {device: h100-sxm, system: hgx-h100, num_devices: 8}\n"
                    "training: {global_batch_size: 8, seq_len: 2048, precision: bf16,\n"
                    "           parallel: {tp: 1, pp: 1, dp: 8, ep: 8, microbatch_size: 1}}\n")
    validated_ = predict_scenario(load_scenario(path)).to_json()["validated"]
    assert validated_["model_class"] == "moe"
    assert lines(validated_)[0].startswith("on hopper devices, training throughput of MoE models: median |error|")


def test_stale_names_each_record_that_moved_or_went_missing() -> None:
    """`validate --published` lists the shipped records its run no longer gives (its CLI test requires none)."""
    fresh = [r.as_dict() for r in records()]
    assert stale(fresh) == []
    moved = [dict(fresh[0], median_abs_error=fresh[0]["median_abs_error"] + 0.01), *fresh[2:]]
    lines_ = stale(moved)
    assert len(lines_) == 2 and "shipped median" in lines_[0] and lines_[1].endswith("now absent")
    (split,) = [i for i, r in enumerate(fresh) if r["by_model_class"]][:1]
    reclassed = [dict(r, by_model_class={}) if i == split else r for i, r in enumerate(fresh)]
    assert [line.endswith("(and the errors by model class differ)") for line in stale(reclassed)] == [True]
