"""Serving speed: 10,000 simulated requests in under 5 s; a Server capacity search on one 8-GPU system in under 2 s
(issue 13; it took about 30 s before the step table, the SLO watch and run reuse), on a 2-core CPU.

The bounds are the issues', asserted with `EMULATOR_ACCURACY=1`, else 3x looser (conftest).
"""

from __future__ import annotations

import time

from emulator.hardware import load_system
from emulator.scenario import Distribution, Scenario, ServingSpec, Slo
from emulator.serving.replica import StepModel
from emulator.serving.simulator import make_requests, simulate

STEP = StepModel(grid=(1.0, 64.0, 1024.0, 8192.0), dense_s=(0.020, 0.021, 0.045, 0.33),
                 head_s=(1e-4, 1.2e-4, 4e-4, 2.5e-3), kv_s_per_token=2e-8, pair_s=3e-9, overhead_s=1e-3,
                 error_band=0.1)


def test_ten_thousand_requests_under_five_seconds(within) -> None:  # type: ignore[no-untyped-def]
    reqs = make_requests(Distribution(kind="normal", mean=300, std=100, minimum=10, maximum=900),
                         Distribution(kind="normal", mean=250, std=100, minimum=2, maximum=800), 10_000, 30.0, 0)
    t0 = time.perf_counter()
    res = simulate(STEP, 400_000, reqs, max_batch=256, max_batch_tokens=8192, num_replicas=1)
    elapsed = time.perf_counter() - t0
    within(f"10,000 simulated requests, {res.num_steps} iterations", elapsed, 5.0)


def test_server_capacity_search_under_two_seconds(within, versus) -> None:  # type: ignore[no-untyped-def]
    from emulator.serving import predict_serving
    from emulator.workloads.presets import preset

    system = load_system("hgx-h100")
    sc = Scenario(path="bench", model=preset("llama2-70b"), device=system.device, system=system, num_devices=8)
    spec = ServingSpec(precision="fp8", kv_precision="fp8", tp=2, scenario="server",
                       input_tokens=Distribution(kind="normal", mean=294, std=250, minimum=3, maximum=1024),
                       output_tokens=Distribution(kind="normal", mean=290, std=250, minimum=3, maximum=1024),
                       slo=Slo(ttft_p99_s=2.0, tpot_p99_s=0.2))
    predict_serving(sc, spec.__class__(**{**{f: getattr(spec, f) for f in spec.__slots__}, "scenario": "offline"}))
    t0 = time.perf_counter()  # the replica's traces are cached above: this times the search itself
    out = predict_serving(sc, spec)
    elapsed = time.perf_counter() - t0
    versus(f"Server capacity search on 8 H100s, rate {out.arrival_rate_per_s:.1f}/s", elapsed, "s", 0.05,
           "AIConfigurator (one estimate)")
    within(f"Server capacity search, rate {out.arrival_rate_per_s:.1f}/s", elapsed, 2.0)
