"""Prefill/decode disaggregation: separate prefill and decode pools with the KV cache moved over the fabric.

Not implemented in this version: `predict_serving` refuses a scenario that asks for it, with a clear error.
The intended model: prefill replicas run prefill-only iterations (TTFT = queueing + prefill + KV transfer of
input_tokens x kv_bytes_per_token over the scale-up or scale-out link, `emulator.cluster.network`), decode
replicas run decode-only iterations with the transferred contexts.
"""

from __future__ import annotations

from typing import Any

from emulator.errors import EmulatorError


def predict_disaggregated(scenario: Any, spec: Any, table: Any) -> Any:
    raise EmulatorError("prefill/decode disaggregation is not modelled yet. Fix: remove inference.disaggregation "
                        "to predict aggregated replicas.", file=spec.path or scenario.path,
                        field="inference.disaggregation")


__all__ = ["predict_disaggregated"]
