"""The load a benchmark client sent for a row of AIConfigurator's silicon sample (`load`, as `published_aic` states it
in the row's scenario), and what a closed-loop row's measurements imply about the prompts its iterations took
(`prompts_per_iteration`). Which client measured a row: `aic_deployments.client`."""

from __future__ import annotations

from typing import Any

from emulator.validation.aic_deployments import attention_ranks, client, count

RANGE_RATIO = 0.8  # InferenceMAX's --random-range-ratio: lengths uniform in [0.8 L, L]
INFERENCEX_PROMPTS_PER_CLIENT = 10  # InferenceMAX's --num-prompts $((CONC * 10))
# AIConfigurator's benchmark script (generator/config/backend_templates/benchmark/bench_run.sh.j2: aiperf profile
# --concurrency C --num-requests C x BENCH_MULTI_ROUND, default 20, --warmup-request-count 2 C). aiperf runs its
# warm-up phase to completion before the profiling phase starts (ai-dynamo/aiperf
# aiperf/timing/credit_issuing_strategy.py _execute_phases: each phase waits for its credits to return), so the
# profiling phase opens with all C requests sent at once and every one of its requests is measured.
AIPERF_ROUNDS = 20


def load(row: dict[str, str]) -> dict[str, Any]:
    isl, osl, n = count(row["isl"]), count(row["osl"]), count(row["batch_size"]) * attention_ranks(row)
    if client(row) == "aiperf":  # the profiling phase: C x AIPERF_ROUNDS requests from a burst, all measured
        return {"input_tokens": isl, "output_tokens": osl, "num_requests": AIPERF_ROUNDS * n,
                "measured_requests": "all"}
    return {"input_tokens": {"distribution": "uniform", "min": int(isl * RANGE_RATIO), "max": isl},
            "output_tokens": {"distribution": "uniform", "min": int(osl * RANGE_RATIO), "max": osl},
            "num_requests": INFERENCEX_PROMPTS_PER_CLIENT * n, "measured_requests": "all"}


def prompts_per_iteration(row: dict[str, str]) -> float:
    """The prompts a closed-loop row's iterations took on average, as its measurements imply: by Little's law its
    clients complete clients / (TTFT + (OSL - 1) x TPOT) requests a second, and an iteration that mixes prompts into
    decodes takes about a TPOT. A deployment whose admission rule cannot take that many cannot have been the one
    that ran (why `aic_deployments.deployment` does not state AIConfigurator's SGLang --max-prefill-tokens)."""
    clients = count(row["batch_size"]) * attention_ranks(row)
    ttft_s, tpot_s = float(row["silicon_ttft_ms"]) * 1e-3, float(row["silicon_tpot_ms"]) * 1e-3
    return clients / (ttft_s + (count(row["osl"]) - 1) * tpot_s) * tpot_s


__all__ = ["AIPERF_ROUNDS", "INFERENCEX_PROMPTS_PER_CLIENT", "RANGE_RATIO", "load", "prompts_per_iteration"]
