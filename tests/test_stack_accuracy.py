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
from emulator.stacks.accuracy import METRICS, Accuracy, lines, records, validated
from emulator.validation.accuracy_records import stale

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


@pytest.mark.parametrize("name", ["megatron-core-hopper", "trtllm-hopper", "vllm-hopper", "sglang-hopper"])
def test_a_fitted_family_reports_its_fits_leave_one_model_out_errors(name: str) -> None:
    """Where a stack was fitted on a family, its records are the fit record's held-out errors, metric by metric."""
    fit = json.loads((FITS / f"{name}.json").read_text())
    stack, family = fit["stack"], fit["device_family"]
    mine = {r.metric: r for r in records() if r.stack == stack and r.device_family == family
            and r.method == "leave one model out"}
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
    assert out["validated"]["device_family"] == "hopper"
    assert [r["metric"] for r in out["validated"]["records"]] == ["training_throughput"]
    assert out["validated"]["records"][0]["stack"] == out["stack"]["name"] == "megatron-core"


def test_stale_names_each_record_that_moved_or_went_missing() -> None:
    """`validate --published` lists the shipped records its run no longer gives (its CLI test requires none)."""
    fresh = [r.as_dict() for r in records()]
    assert stale(fresh) == []
    moved = [dict(fresh[0], median_abs_error=fresh[0]["median_abs_error"] + 0.01), *fresh[2:]]
    lines_ = stale(moved)
    assert len(lines_) == 2 and "shipped median" in lines_[0] and lines_[1].endswith("now absent")
