"""Scenario files: the unit a user saves, shares and re-runs.

    load.py        the file: model, hardware, `training:` or `inference:`; Scenario, Training, Inference, Parallel
    inference.py   the serving keys of `inference:` (ServingSpec: lengths, rates, SLOs, disaggregation)
    closed_loop.py the closed-loop keys (concurrency, measured_requests) against the open-loop ones
    prompt_pool.py the client's prompt pool (prompt_pool): distinct prompts its requests repeat
    plausibility.py warnings for settings that run but are probably not meant (an SLO in milliseconds, a tp past
                   the scale-up domain, idle devices); never fatal
"""

from emulator.scenario.inference import (
    Disaggregation,
    Distribution,
    ServingSpec,
    Slo,
    parse_distribution,
    parse_inference,
    read_trace,
)
from emulator.scenario.load import (
    RECOMPUTE,
    TRAIN_PRECISIONS,
    Inference,
    Parallel,
    Scenario,
    Training,
    global_batch_sequences,
    load_scenario,
    read_yaml,
)

__all__ = ["RECOMPUTE", "TRAIN_PRECISIONS", "Disaggregation", "Distribution", "Inference", "Parallel", "Scenario",
           "ServingSpec", "Slo", "Training", "global_batch_sequences", "load_scenario", "parse_distribution",
           "parse_inference", "read_trace", "read_yaml"]
