"""Plan to launch: the configuration a user runs for a predicted or recommended plan.

`launch_files(scenario, prediction)` writes, for training, Megatron-LM arguments under torchrun (`megatron-core`)
or a torchtitan TOML and its torchrun command (`torchtitan`); for serving, a `vllm serve`, `trtllm-serve` or
SGLang `launch_server` command (`inference.engine`). `sizing_launch_files` does the same for the plan an
`emulator size` search recommends. `emulator predict X.yaml --launch DIR` and `emulator size` (into `launch/`
of the report folder) write them with `write_launch`. Every flag is one the tool documents (`launch.flags`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from emulator.cluster.plan import Plan, plan_from
from emulator.engine.calibration import efficiency_for
from emulator.errors import EmulatorError
from emulator.launch.files import LaunchFile, write_launch
from emulator.launch.serving import ENGINES, replica_of
from emulator.launch.training import megatron_files, torchtitan_files
from emulator.scenario import Inference, Parallel, Scenario
from emulator.serving import predict_serving
from emulator.sizing.search import SearchResult, plan_of, training_scenario
from emulator.sizing.spec import Sizing
from emulator.stacks import StackProfile, stack_for, stack_of
from emulator.units import fmt_seconds
from emulator.workloads.config import DLRMConfig

TRAINERS: dict[str, Callable[[Scenario, Plan, StackProfile, list[str]], tuple[LaunchFile, ...]]] = {
    "megatron-core": megatron_files, "torchtitan": torchtitan_files}


def _predicted(d: Mapping[str, Any], source: str, training: bool) -> list[str]:
    """The header line with the figures a launch file carries, and where they came from."""
    band = f"{d.get('provenance', '?')}, ±{float(d.get('error_band') or 0):.0%}"
    if training:
        days = d.get("effective_time_to_train_s") or d.get("time_to_train_s")
        to_train = f", {days / 86400:.1f} days to train" if days else ""
        fits = [] if d.get("fits", True) else ["Warning: the prediction says this plan does not fit device memory."]
        return [f"Predicted ({source}; {band}): step {fmt_seconds(d['step_time_s'])}, MFU {d['mfu']:.1%}{to_train}.",
                *fits]
    ttft, tpot = d.get("ttft_s") or {}, d.get("tpot_s") or {}
    rate = f", {d['throughput_tokens_per_s']:,.0f} output tokens/s" if d.get("throughput_tokens_per_s") else ""
    return [f"Predicted ({source}; {band}): TTFT p99 {fmt_seconds(ttft.get('p99', float('nan')))}, TPOT p99 "
            f"{fmt_seconds(tpot.get('p99', float('nan')))}{rate}, at most {d.get('max_batch', '?')} running sequences "
            "per replica."]


def _no_launcher(s: Scenario, stack: StackProfile, known: list[str], key: str) -> EmulatorError:
    return EmulatorError(f"is '{stack.name}', which has no launcher to configure (it is what `emulator run` "
                         f"executes). Fix: set {key} to one of {', '.join(known)} for --launch.", file=s.path,
                         field=key)


def launch_files(s: Scenario, prediction: Any = None, *, source: str = "emulator predict") -> tuple[LaunchFile, ...]:
    """The launch files of a scenario's plan; `prediction` (its `to_json()` figures) goes into each header."""
    figures = prediction.to_json() if prediction is not None and hasattr(prediction, "to_json") else (prediction or {})
    predicted = _predicted(figures, source, s.training is not None) if figures else []
    if s.training is not None:
        stack = stack_of(s.training, "training")
        if stack.name not in TRAINERS:
            raise _no_launcher(s, stack, sorted(TRAINERS), "training.framework")
        return TRAINERS[stack.name](s, plan_from(s, stack), stack, predicted)
    spec = s.serving
    assert spec is not None
    stack = stack_of(spec, "serving")
    if stack.name not in ENGINES:
        raise _no_launcher(s, stack, sorted(ENGINES), "inference.engine")
    # The running-sequence cap: the scenario's batch_size, else what the simulation ran (it stays within the
    # engine's own cap, `Replica.max_sequences`), else that cap.
    cap = stack.count_for("defaults.max_batch_size", s.device.family, s.device.memory_bytes)
    simulated = int(figures.get("max_batch") or 0)
    max_batch = spec.batch_size or (min(simulated, cap) if simulated else cap)
    replicas = int(figures.get("replicas") or max(s.num_devices // (spec.tp * spec.pp), 1))
    return ENGINES[stack.name](s, replica_of(s, stack, max_batch, replicas), stack, predicted)


def sizing_launch_files(sz: Sizing, result: SearchResult) -> tuple[LaunchFile, ...]:
    """The launch files of the plan a sizing recommends (its objective's best row); none for a recommender, which
    no LLM serving engine runs."""
    if isinstance(sz.model, DLRMConfig):
        return ()
    row = result.rows[result.best[sz.objective]]
    cand = next(c for c in sz.candidates if c.device.name == row["device"] and c.system.name == row["system"])
    source = f"emulator size, the recommended plan ({sz.objective})"
    if sz.goal == "train":
        return launch_files(training_scenario(sz, cand, plan_of(sz, row)), row, source=source)
    assert sz.serve is not None
    tp, spec = row["plan"]["tp"], sz.serve.spec
    served = dataclasses.replace(spec, tp=tp, engine=stack_for(spec.engine, "serving", cand.device.vendor,
                                                               file=sz.path))
    inference = Inference(input_tokens=int(spec.input_tokens.expected), output_tokens=int(spec.output_tokens.expected),
                          precision=spec.precision, kv_precision=spec.kv_precision, parallel=Parallel(tp=tp))
    scenario = Scenario(path=sz.path, model=sz.model, device=cand.device, system=cand.system, num_devices=tp,
                        serving=served, inference=inference)
    # The search keeps rates, not the engine's running-sequence cap: one more simulation of the chosen layout gives it.
    pred = predict_serving(scenario, served, efficiency_for(cand.device))
    figures = {**row, "max_batch": pred.max_batch, "replicas": row["plan"]["replicas"]}
    return launch_files(scenario, figures, source=source)


__all__ = ["LaunchFile", "launch_files", "sizing_launch_files", "write_launch"]
