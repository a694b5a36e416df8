"""Predict any scenario: the thin dispatcher behind `emulator predict`.

Transformer training goes through the cluster model (any plan, one device included); inference through the
serving model, beside the one-device batch view it is built on; recommender training through the single-device
engine (`emulator.engine.predict`). Every path returns a `Prediction`; `to_json()` is `--json`.
"""

from __future__ import annotations

import dataclasses

from emulator.cluster import predict_training
from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.memory import ALLOCATOR_ALLOWANCE
from emulator.engine.predict import predict, predict_batch
from emulator.engine.prediction import Memory, Prediction
from emulator.scenario import Scenario
from emulator.serving import ServingPrediction, predict_serving
from emulator.stacks import load_stack
from emulator.workloads.config import TransformerConfig


def predict_scenario(s: Scenario, table: EfficiencyTable | None = None) -> Prediction:
    """The prediction of any scenario file's content (what loading decided for the user among its notes)."""
    if s.training is not None:
        pred = predict_training(s, table) if isinstance(s.model, TransformerConfig) else predict(s, table)
    else:
        pred = predict_served(s, table)
    return dataclasses.replace(pred, notes=s.notes + pred.notes) if s.notes else pred


def predict_served(s: Scenario, table: EfficiencyTable | None = None) -> ServingPrediction:
    """An inference scenario: the request-level serving simulation (throughput, latency percentiles, KV capacity,
    energy) over the batch view of one device (`step_time_s`: one batch of `batch_size` requests end to end)."""
    inf = s.inference
    assert inf is not None and s.serving is not None  # load_scenario parses both from `inference:`
    one_device = dataclasses.replace(s, num_devices=1,
                                     inference=dataclasses.replace(inf, parallel=type(inf.parallel)()))
    batch = predict_batch(one_device, table)
    serving = predict_serving(s, s.serving, table)
    memory = batch.memory
    if serving.memory_parts is not None:  # a replica's device: weights, the KV pool it allocates, the workspace
        memory = Memory(parts=serving.memory_parts, capacity_bytes=s.device.memory_bytes,
                        error_band=ALLOCATOR_ALLOWANCE)
    fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
    fields |= {"num_devices": s.num_devices, "system": s.system.name if s.system else None, "memory": memory,
               "provenance": serving.provenance, "error_band": serving.error_band,
               "notes": batch.notes + serving.notes,
               "stack": load_stack(serving.engine, "serving").as_dict() if serving.engine else {}}
    return ServingPrediction(**fields, serving=serving)


def predict_json(s: Scenario, table: EfficiencyTable | None = None) -> dict[str, object]:
    """What `emulator predict --json` prints."""
    return predict_scenario(s, table).to_json()


__all__ = ["predict_json", "predict_scenario", "predict_served"]
