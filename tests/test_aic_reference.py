"""NVIDIA AIConfigurator's own predictions beside the emulator's (emulator/validation/aic_reference.py): the shipped
file, how cases pair with its rows, and which errors each side reports. The errors themselves belong to the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.validation import aic_reference as ref
from emulator.validation.published_aic import BLACKWELL_CSV, CSV, rows
from emulator.validation.sources import AIC_BLACKWELL_SOURCE, AIC_HOPPER_SOURCE


def test_the_shipped_predictions_name_silicon_rows_and_say_why_a_row_has_none() -> None:
    shipped = ref.predictions()
    ids = {r["id"] for r in rows(CSV)} | {r["id"] for r in rows(BLACKWELL_CSV)}
    assert len(shipped) >= 300 and set(shipped) <= ids
    for r in shipped.values():
        assert r["aiconfigurator_version"] and r["status"]
        assert (r["status"] == "ok") == bool(r["aic_ttft_ms"] and r["aic_tpot_ms"])


def _case(row: str, metric: str, published: float, error: float, source: str) -> dict:  # type: ignore[type-arg]
    return {"id": f"{row}:{metric.split('_')[0]}", "metric": metric, "published": published,
            "predicted": published * (1 + error), "error": error, "stack": "trtllm", "source": source}


def test_cases_pair_with_their_rows_and_a_refused_row_is_counted(tmp_path: Path) -> None:
    """Two Blackwell rows, one AIConfigurator refused: the group compares the other, AIConfigurator's error from its
    prediction over the measurement, the emulator's from the case; the refused row is counted, not compared."""
    csv = tmp_path / "ref.csv"
    csv.write_text("id,aic_model_path,aic_ttft_ms,aic_tpot_ms,aiconfigurator_version,status\n"
                   "a,m,100.0,12.0,0.12.0,ok\n"
                   "b,m,,,0.12.0,PerfDataNotAvailableError: no MoE data\n")
    records = [_case("a", "tpot_ms", 10.0, 0.05, AIC_BLACKWELL_SOURCE),
               _case("b", "tpot_ms", 10.0, -0.5, AIC_BLACKWELL_SOURCE),
               _case("a", "ttft_ms", 200.0, -0.1, AIC_BLACKWELL_SOURCE)]
    ref.predictions.cache_clear()
    try:
        result = ref.compare(records, csv)
    finally:
        ref.predictions.cache_clear()
    by_metric = {g["metric"]: g for g in result["groups"]}
    tpot = by_metric["tpot_ms"]
    assert (tpot["num_rows"], tpot["aic_refused"], tpot["method"]) == (2, 1, "held out")
    assert tpot["aiconfigurator"]["num_cases"] == 1 and tpot["aiconfigurator"]["mean_error"] == pytest.approx(0.2)
    assert tpot["emulator"]["mean_error"] == pytest.approx(0.05)
    assert by_metric["ttft_ms"]["aiconfigurator"]["mean_error"] == pytest.approx(-0.5)
    assert result["aiconfigurator_versions"] == ["0.12.0"]
    assert "AIConfigurator 0.12.0" in ref.render(result)


def test_hopper_cases_report_the_fits_leave_one_model_out_errors() -> None:
    """A Hopper sample case of a fitted engine reports its fit record's held-out error, not this run's."""
    lomo = ref.held_out_errors(["trtllm"])
    case_id = next(i for i in lomo if i.rsplit(":", 1)[0] in ref.predictions()
                   and ref.predictions()[i.rsplit(":", 1)[0]]["status"] == "ok")
    row, metric = case_id.rsplit(":", 1)
    case = _case(row, f"{metric}_ms", 10.0, 0.9, AIC_HOPPER_SOURCE)
    group = ref.compare([case])["groups"][0]
    assert group["method"] == "leave one model out"
    assert group["emulator"]["mean_error"] == pytest.approx(lomo[case_id])
    assert group["emulator_in_sample"]["mean_error"] == pytest.approx(0.9)
