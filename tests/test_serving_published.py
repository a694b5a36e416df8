"""MLPerf Inference v4.1 (8x H100): one set of device parameters for every case, within the issue's bound."""

from __future__ import annotations

from emulator.validation.published_serving import validate_published


def test_mlperf_median_error_within_15_percent_and_server_never_beats_offline() -> None:
    """Median |error| over Offline and Server throughput is at most 15%, and no LLM Server rate exceeds the
    Offline capacity of the same system (a queue is only stable below it)."""
    result = validate_published()
    assert result["summary"]["median_abs_error"] <= 0.15, result["summary"]
    by_id = {c["id"]: c["predicted"] for c in result["cases"]}
    for case_id, predicted in by_id.items():
        if "-server-" in case_id and "dlrm" not in case_id:  # LLM cases; the recommender batches queries itself
            assert predicted <= by_id[case_id.replace("-server-", "-offline-")] * 1.001, case_id
