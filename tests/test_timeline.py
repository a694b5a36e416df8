"""Timelines as Chrome / Perfetto traces (`engine/timeline.py`, `cluster/timeline.py`, `serving/records.py`): the
Trace Event Format's schema, spans on declared threads that follow or nest, a training step that ends at the predicted
step time on every stage, the 1F1B schedule's length, and a serving run's iterations and request lanes."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import emulator.cluster.timeline as cluster_timeline
from emulator.cluster.timeline import one_f_one_b, training_timeline
from emulator.cluster.training import predict_training, training_setup
from emulator.engine.timeline import TimelineBuilder
from emulator.predict import predict_scenario, prediction_timeline
from emulator.scenario import load_scenario

TINY = ("{model_type: llama, num_hidden_layers: 4, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, "
        "intermediate_size: 128, vocab_size: 1000, max_position_embeddings: 2048}")
US = 1e-3  # microseconds of slack for the float sums of a schedule


def check_trace(trace: dict[str, Any]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Assert the Trace Event Format's schema; return the complete events per (pid, tid), in file order."""
    assert set(trace) >= {"traceEvents", "displayTimeUnit", "otherData"}
    json.dumps(trace, allow_nan=False)  # strict JSON: a browser's parser refuses NaN
    names: dict[tuple[int, int], str] = {}
    processes: dict[int, str] = {}
    spans: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for e in trace["traceEvents"]:
        assert e["ph"] in ("M", "X")
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int) and isinstance(e["name"], str)
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name", "process_sort_index", "thread_sort_index")
            if e["name"] == "process_name":
                processes[e["pid"]] = e["args"]["name"]
            if e["name"] == "thread_name":
                names[(e["pid"], e["tid"])] = e["args"]["name"]
            continue
        assert isinstance(e["ts"], float) and isinstance(e["dur"], float) and isinstance(e["args"], dict)
        assert e["ts"] >= 0 and e["dur"] >= 0 and isinstance(e["cat"], str)
        assert (e["pid"], e["tid"]) in names, "a span on an undeclared thread"
        spans[(e["pid"], e["tid"])].append(e)
    assert set(processes) == {pid for pid, _ in names}
    for events in spans.values():
        assert [e["ts"] for e in events] == sorted(e["ts"] for e in events), "per thread in time order"
        open_ends: list[float] = []  # ends of the spans enclosing the current one
        for e in events:
            while open_ends and e["ts"] >= open_ends[-1] - US:
                open_ends.pop()
            assert not open_ends or e["ts"] + e["dur"] <= open_ends[-1] + US, "spans of a thread overlap"
            open_ends.append(e["ts"] + e["dur"])
    return spans


def _scenario(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(f"model: {TINY}\n{body}")
    return path


def test_a_timeline_renders_processes_threads_and_spans() -> None:
    """Declared processes and threads get name and sort-index metadata in order; spans become complete events in
    microseconds, per thread in time order with an enclosing span before the spans inside it."""
    b = TimelineBuilder()
    b.thread("stage 0", "compute")
    b.span("stage 0", "comm", "all_reduce", 0.5e-3, 1e-3, "collective", calls=2)
    b.span("stage 0", "compute", "gemm", 1e-3, 2e-3, "kernel")
    end = b.span("stage 0", "compute", "forward", 1e-3, 3e-3, "micro-batch")
    assert end == pytest.approx(4e-3)
    trace = b.build(source="test").to_chrome()
    spans = check_trace(trace)
    meta = [e for e in trace["traceEvents"] if e["ph"] == "M"]
    assert [e["args"]["name"] for e in meta if e["name"] == "thread_name"] == ["compute", "comm"]
    assert [e["name"] for e in spans[(0, 0)]] == ["forward", "gemm"]
    assert spans[(0, 0)][0]["dur"] == pytest.approx(3000.0)
    assert spans[(0, 1)][0]["args"] == {"calls": 2} and trace["otherData"] == {"source": "test"}


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 24), st.floats(0.1, 5.0), st.floats(0.1, 5.0))
def test_one_f_one_b_takes_m_plus_pp_minus_one_slots(pp: int, m: int, f: float, b: float) -> None:
    """1F1B with equal stages ends after (m + pp - 1)(f + b) (Narayanan et al. 2021); every forward starts after the
    previous stage's, every backward after the next stage's, and no stage runs two slots at once."""
    schedule = one_f_one_b(pp, m, f, b)
    ends = {(kind, s, i): start + (f if kind == "F" else b) for s, slots in enumerate(schedule)
            for kind, i, start in slots}
    assert len(ends) == 2 * pp * m
    assert max(ends.values()) == pytest.approx((m + pp - 1) * (f + b))
    for s, slots in enumerate(schedule):
        for (kind, _, start), (_, _, following) in zip(slots, slots[1:], strict=False):
            assert following >= start + (f if kind == "F" else b) - 1e-9
        for kind, i, start in slots:
            other = s - 1 if kind == "F" else s + 1
            if 0 <= other < pp:
                assert start >= ends[(kind, other, i)] - 1e-9


@pytest.mark.parametrize("parallel", [
    "{tp: 2, pp: 2, dp: 2}",
    "{tp: 2, pp: 2, dp: 2, virtual_stages: 2}",
    "{tp: 2, dp: 2, cp: 2, zero: 3}",
    "{pp: 4, dp: 2}",
])
def test_a_training_trace_ends_at_the_predicted_step_on_every_stage(tmp_path: Path, parallel: str) -> None:
    """Every pipeline stage is a process whose compute stream ends at the predicted step time; kernels, micro-batch
    slots and collectives sit on declared streams; one stream per communicator in use."""
    path = _scenario(tmp_path, "hardware: {device: h100-sxm, system: hgx-h100, num_devices: 8}\ntraining: "
                               f"{{seq_len: 256, global_batch_size: 8, recompute: full, parallel: {parallel}}}\n")
    s = load_scenario(path)
    prediction = predict_training(s)
    trace = prediction_timeline(s, prediction).to_chrome()
    spans = check_trace(trace)
    plan = prediction.plan
    processes = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"}
    assert len(processes) == plan.pp
    for pid in processes:
        compute = spans[(pid, 0)]
        assert max(e["ts"] + e["dur"] for e in compute) == pytest.approx(prediction.step_time_s * 1e6, rel=1e-9)
        slots = [e for e in compute if e["cat"] == "micro-batch"]
        assert len(slots) == 2 * plan.num_microbatches
        assert any(e["name"].startswith("recompute: ") for e in compute)
        assert any(e["cat"] == "kernel" and e["name"].startswith("optimizer") for e in compute)
    collectives = {e["args"]["group"] for events in spans.values() for e in events if e["cat"] == "collective"}
    expected = {"tp" if plan.tp > 1 else "", "pp" if plan.pp > 1 else "", "dp", "cp" if plan.cp > 1 else ""} - {""}
    assert collectives == expected
    assert trace["otherData"]["step_time_s"] == prediction.step_time_s


def test_a_training_trace_caps_its_kernel_spans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the span budget, later micro-batches are drawn without their kernels, and the trace says so."""
    monkeypatch.setattr(cluster_timeline, "MAX_KERNEL_SPANS", 10)
    s = load_scenario(_scenario(tmp_path, "hardware: {device: h100-sxm}\ntraining: {seq_len: 128, "
                                          "global_batch_size: 4}\n"))
    trace = training_timeline(training_setup(s)).to_chrome()
    check_trace(trace)
    assert trace["otherData"]["notes"]


@pytest.mark.parametrize("inference", [
    "{input_tokens: 128, output_tokens: 16, batch_size: 4, num_requests: 24}",
    "{input_tokens: 128, output_tokens: 16, concurrency: 6}",
    "{input_tokens: 128, output_tokens: 16, scenario: server, arrival_rate_per_s: 50, num_requests: 100}",
])
def test_a_serving_trace_holds_iterations_and_request_lanes(tmp_path: Path, inference: str) -> None:
    """A serving run becomes a process of iterations (decode sequences and prefill tokens in args) and a process of
    requests, each a span from arrival to its last token holding its queue + prefill and decode parts, on lanes
    that never overlap."""
    s = load_scenario(_scenario(tmp_path, f"hardware: {{device: h100-sxm}}\ninference: {inference}\n"))
    prediction = predict_scenario(s)
    trace = prediction_timeline(s, prediction).to_chrome()
    spans = check_trace(trace)
    log = prediction.serving.log  # type: ignore[attr-defined]
    processes = {e["args"]["name"]: e["pid"] for e in trace["traceEvents"] if e["name"] == "process_name"}
    assert set(processes) == {"replica 0: iterations", "replica 0: requests"}
    iterations = spans[(processes["replica 0: iterations"], 0)]
    assert len(iterations) == sum(it.num_iterations for it in log.iterations)
    assert all(e["args"]["decode_sequences"] + e["args"]["prefill_tokens"] > 0 for e in iterations)
    requests = [e for (pid, _), events in spans.items() if pid == processes["replica 0: requests"] for e in events
                if e["name"].startswith("request ")]
    assert len(requests) == len(log)
    assert trace["otherData"]["requests"] == log.description
