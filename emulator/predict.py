"""Predict any scenario: the thin dispatcher behind `emulator predict`.

Transformer training goes through the cluster model (any plan, one device included); inference with serving
keys through the serving model (beside the one-device batch view); everything else through the single-device
engine (`emulator.engine.predict`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from emulator.cluster import predict_training
from emulator.engine.efficiency import EfficiencyTable
from emulator.engine.predict import _check_dtype, figure, figures_of, predict
from emulator.errors import EmulatorError
from emulator.scenario import Scenario
from emulator.serving import predict_serving
from emulator.units import DTYPE_BYTES
from emulator.workloads.config import TransformerConfig


def predict_json(s: Scenario, table: EfficiencyTable | None = None) -> dict[str, Any]:
    """What `emulator predict --json` prints: transformer training through the cluster model (any plan, one
    device included), everything else through the single-device path."""
    if s.training and isinstance(s.model, TransformerConfig):
        _check_dtype(s, s.training.precision)
        out = predict_training(s, table).to_json()
        out["figures"] = figures_of(out)
        return out
    if s.inference is not None and s.serving is not None:
        return _serving_json(s, table)
    return predict(s, table).to_json()


def _serving_json(s: Scenario, table: EfficiencyTable | None) -> dict[str, Any]:
    """Inference: the request-level serving simulation (throughput, latency percentiles, KV capacity, energy)
    over the batch view of one device (`step_time_s`: one batch of `batch_size` requests end to end)."""
    inf = s.inference
    assert inf is not None
    _check_dtype(s, inf.precision)
    serving = predict_serving(s, s.serving, table).to_json()
    one_device = dataclasses.replace(s, num_devices=1, inference=dataclasses.replace(inf, parallel=type(inf.parallel)()))
    try:
        out = predict(one_device, table).to_json()
    except EmulatorError:
        out = {}
    out.update(serving)
    out["num_devices"] = s.num_devices
    spec = s.serving
    shards = spec.tp * spec.pp
    if shards > 1 or s.num_devices > 1:
        # A replica's devices each hold 1/(tp*pp) of the weights and of its KV cache (sized by the serving
        # model to the memory left): the one-device batch view's memory does not apply.
        weights = s.model.num_params() * DTYPE_BYTES[inf.precision] / shards
        kv = float(serving.get("kv_cache_bytes") or 0.0) / max(serving.get("replicas") or 1, 1) / shards
        out["memory_breakdown"] = {"weights": weights, "kv_cache": kv, "total": weights + kv}
        out["memory_per_device_bytes"] = weights + kv
        out["fits"] = True
    out["tokens_per_s"] = serving["throughput_tokens_per_s"] or serving["throughput_samples_per_s"]
    out["tokens_per_s_per_device"] = out["tokens_per_s"] / s.num_devices
    out["figures"] = figures_of(out)
    for key in ("ttft_s", "tpot_s", "latency_s", "throughput_tokens_per_s", "throughput_samples_per_s"):
        if key in serving and serving[key] is not None:
            out["figures"][key] = figure(serving[key], serving["provenance"], serving["error_band"])
    return out
