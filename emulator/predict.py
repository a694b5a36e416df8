"""Predict any scenario: the thin dispatcher behind `emulator predict`.

Transformer training goes through the cluster model (any plan, one device included); inference through the
serving model, beside the one-device batch view it is built on; recommender training through the single-device
engine (`emulator.engine.predict`). Every path returns a `Prediction`; `to_json()` is `--json`.
"""

from __future__ import annotations

import dataclasses

from emulator.cluster import TrainingPrediction, predict_training
from emulator.cluster.timeline import training_timeline
from emulator.cluster.training import training_setup
from emulator.engine.calibration import efficiency_for
from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.memory import ALLOCATOR_ALLOWANCE
from emulator.engine.predict import predict, predict_batch
from emulator.engine.prediction import Memory, Prediction
from emulator.engine.timeline import Timeline
from emulator.errors import EmulatorError
from emulator.scenario import Scenario
from emulator.serving import ServingPrediction, predict_serving
from emulator.serving.records import RequestLog
from emulator.stacks import stack_of
from emulator.stacks.accuracy import class_of, validated
from emulator.workloads.config import TransformerConfig


def predict_scenario(s: Scenario, table: EfficiencyTable | None = None) -> Prediction:
    """The prediction of any scenario file's content, naming what its device efficiencies rest on (a transfer's
    ratios, a power limit and the clock share it leaves) under `efficiency` and in its notes, after what loading
    decided for the user among its notes, and how far its stack's predictions were from published measurements on
    the device's family (`validated`, `stacks.accuracy`)."""
    table = table or efficiency_for(s.device)
    if s.training is not None:
        p: Prediction = predict_training(s, table) if isinstance(s.model, TransformerConfig) else predict(s, table)
    else:
        p = predict_served(s, table)
    notes = (f"device efficiencies: {table.basis}",) if table.basis else ()
    whose = class_of(s.model.is_moe if isinstance(s.model, TransformerConfig) else None)
    checked = validated(p.stack["name"], s.device.family, "training" if s.training is not None else "inference",
                        whose) if p.stack else {}
    return dataclasses.replace(p, efficiency=table.summary(), notes=s.notes + p.notes + notes, validated=checked)


def predict_served(s: Scenario, table: EfficiencyTable | None = None) -> ServingPrediction:
    """An inference scenario: the request-level serving simulation (throughput, latency percentiles, KV capacity,
    energy) over the batch view of one device (`step_time_s`: one batch of `batch_size` requests end to end)."""
    inf = s.inference
    assert inf is not None and s.serving is not None  # load_scenario parses both from `inference:`
    one_device = dataclasses.replace(s, num_devices=1,
                                     inference=dataclasses.replace(inf, parallel=type(inf.parallel)()))
    engine = stack_of(s.serving, "serving")
    # The batch view times the kernels the engine runs, as the serving model's steps do (eager: the eager program);
    # it checks the request against the model's context first.
    batch = predict_batch(one_device, table, engine)
    serving = predict_serving(s, s.serving, table)
    memory = batch.memory
    if serving.memory_parts is not None:  # a replica's device: weights, the KV pool it allocates, the workspace
        memory = Memory(parts=serving.memory_parts, capacity_bytes=s.device.memory_bytes,
                        error_band=ALLOCATOR_ALLOWANCE)
    fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    fields |= {"num_devices": s.num_devices, "system": s.system.name if s.system else None, "memory": memory,
               "provenance": serving.provenance, "error_band": serving.error_band,
               "notes": batch.notes + serving.notes,
               "stack": engine.as_dict() if serving.engine else {}}
    return ServingPrediction(**fields, serving=serving)


def prediction_timeline(s: Scenario, p: Prediction, table: EfficiencyTable | None = None) -> Timeline:
    """The timeline of a prediction (`emulator predict --trace`): a training step per pipeline stage, or a serving
    run's iterations and requests."""
    about = {"scenario": s.path, "model": p.model, "device": p.device, "system": p.system,
             "num_devices": p.num_devices, "provenance": p.provenance, "error_band": p.error_band}
    if isinstance(p, TrainingPrediction):
        return training_timeline(training_setup(s, table), p.step, **about)
    if isinstance(p, ServingPrediction) and p.serving.log is not None:
        return p.serving.log.timeline(**about)
    raise EmulatorError(f"no timeline for this scenario: {_no_log(p)}. Fix: drop --trace, or use a transformer "
                        "training scenario or an aggregated LLM serving scenario.", file=s.path, field="--trace")


def _no_log(p: Prediction) -> str:
    """Why a prediction has no per-step timeline or request records."""
    if isinstance(p, ServingPrediction):
        if p.serving.prefill_replicas is not None:
            return "disaggregated serving simulates its prefill and decode pools apart, with no shared timeline"
        return "recommender queries are simulated in batches, without per-request records or iterations kept"
    return "a recommender training step is timed on one device, without a cluster schedule"


def request_log(s: Scenario, p: Prediction) -> RequestLog:
    """The per-request records behind a serving prediction (`emulator predict --requests`, `--cdf`)."""
    if isinstance(p, ServingPrediction) and p.serving.log is not None:
        return p.serving.log
    why = _no_log(p) if isinstance(p, ServingPrediction) else "a training scenario serves no requests"
    raise EmulatorError(f"no per-request records for this scenario: {why}. Fix: use an aggregated LLM serving "
                        "scenario (inference: with offline, server, concurrency or a trace).", file=s.path,
                        field="inference")


def predict_json(s: Scenario, table: EfficiencyTable | None = None) -> dict[str, object]:
    """What `emulator predict --json` prints."""
    return predict_scenario(s, table).to_json()


__all__ = ["predict_json", "predict_scenario", "predict_served", "prediction_timeline", "request_log"]
