"""Serving: replica cost model -> request simulation -> Offline/Server scenarios -> throughput, latency, energy.

```
prediction.py     ServingPrediction: what serving adds to `emulator predict`
llm.py            aggregated LLM serving (Offline, Server, closed loop at a concurrency, trace)
replica.py        step time of a continuous-batching iteration + KV capacity, from traced kernels
scheduling.py     the engine's scheduling policy (scheduler.* items, request ingress) the simulator follows
simulator.py      discrete-event: arrivals (or a closed loop), continuous batching, chunked prefill, preemption
prompt_cache.py   the engine's prefix cache serving a client's repeated prompts (entries, LRU eviction)
search.py         Offline batch choice, Server highest rate within the SLO, closed-loop steady state
disaggregation.py separate prefill and decode pools, KV moved over the fabric
recommender.py    DLRM queries under a p99 bound, embedding tables placed by tier
energy.py         power from utilisation, joules per token and per query
```
`predict_serving(scenario, spec)` is the entry point (a `ServingResult`); `emulator.predict` puts it beside the
one-device batch view in a `ServingPrediction`; `serving_replica(scenario, spec)` is the replica it runs.
"""

from __future__ import annotations

import dataclasses

from emulator.engine.calibration import efficiency_for
from emulator.engine.efficiency import EfficiencyTable
from emulator.errors import EmulatorError
from emulator.scenario import Scenario, ServingSpec
from emulator.serving.disaggregation import predict_disaggregated
from emulator.serving.llm import llm_replica, predict_llm
from emulator.serving.prediction import ClosedLoopStats, ServingPrediction, ServingResult
from emulator.serving.recommender import predict_recommender
from emulator.serving.replica import Replica
from emulator.stacks import stack_for
from emulator.workloads.config import DLRMConfig


def _resolved(scenario: Scenario, spec: ServingSpec) -> ServingSpec:
    """`spec` with its precision checked on the device and its engine named (the default where it names none)."""
    scenario.device.check_precision(spec.precision, file=spec.path or scenario.path, field="inference.precision")
    return dataclasses.replace(spec, engine=stack_for(spec.engine, "serving", scenario.device.vendor,
                                                      file=spec.path or scenario.path or None))


def serving_replica(scenario: Scenario, spec: ServingSpec, table: EfficiencyTable | None = None) -> Replica:
    """The replica an aggregated LLM spec runs, as `predict_serving` builds it (its step model, KV capacity and
    limits), for what a prediction's requests do not show: a step at a given load."""
    return llm_replica(scenario, _resolved(scenario, spec), table or efficiency_for(scenario.device))


def predict_serving(scenario: Scenario, spec: ServingSpec, table: EfficiencyTable | None = None) -> ServingResult:
    """Predict a serving scenario: Offline or Server, LLM or recommender, aggregated or disaggregated."""
    spec = _resolved(scenario, spec)
    table = table or efficiency_for(scenario.device)
    if isinstance(scenario.model, DLRMConfig):
        if spec.concurrency is not None:
            raise EmulatorError(f"concurrency: {spec.concurrency} sets a closed loop of LLM requests; recommender "
                                "queries are served Offline or Server. Fix: delete concurrency (and use scenario: "
                                "offline or server).", file=spec.path or scenario.path, field="inference.concurrency")
        if spec.speculative is not None:
            raise EmulatorError("speculative decoding drafts an LLM's next tokens; a recommender scores each query "
                                "in one pass. Fix: delete speculative.", file=spec.path or scenario.path,
                                field="inference.speculative")
        for key in ("shared_prefix_tokens", "prompt_pool"):
            if getattr(spec, key):
                raise EmulatorError(f"{key} describes prompts an LLM engine can cache; a recommender's queries have "
                                    f"none. Fix: delete {key}.", file=spec.path or scenario.path,
                                    field=f"inference.{key}")
        return predict_recommender(scenario, spec, table)
    if spec.disaggregation is not None:
        return predict_disaggregated(scenario, spec, table)
    return predict_llm(scenario, spec, table)


__all__ = ["ClosedLoopStats", "ServingPrediction", "ServingResult", "predict_serving", "serving_replica"]
