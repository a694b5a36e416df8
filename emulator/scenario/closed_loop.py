"""The closed-loop keys of an `inference:` section (`concurrency`, `measured_requests`, `num_requests`) against the
open-loop ones: one load mode per section, and enough requests for the waves the simulation measures."""

from __future__ import annotations

from typing import Any

from emulator.fields import Fields

# A closed loop simulates a warm-up wave, measured waves and a drain wave of `concurrency` requests each.
MIN_CLOSED_LOOP_WAVES = 3


def check_closed_loop(r: Fields, kw: dict[str, Any]) -> None:
    """`concurrency` (a closed loop) against the open-loop keys: one load mode per section."""
    n = kw.get("concurrency")
    if n is None:
        if "measured_requests" in kw:
            raise r.error("measured_requests", "applies to a closed loop only. Fix: delete measured_requests, or "
                                               "add concurrency: N.")
        if kw["scenario"] == "concurrency":
            raise r.error("concurrency", "is missing for scenario: concurrency. Fix: add e.g. concurrency: 64 "
                                         "(requests in flight), or use scenario: offline or server.")
        return
    if kw["scenario"] != "concurrency":
        raise r.error("scenario", f"is '{kw['scenario']}', but concurrency: {n} runs a closed loop (a new request as "
                                  "each finishes), not an open one. Fix: delete scenario (or write scenario: "
                                  "concurrency), or delete concurrency.")
    why = {"arrival_rate_per_s": "a closed loop sends each request as one finishes, so it has no arrival rate",
           "trace": "a closed loop sends each request as one finishes, not at a trace's arrival times",
           "disaggregation": "the closed loop is modelled for aggregated replicas only (disaggregated pools are "
                             "simulated one after the other, an open loop)"}
    for key, reason in why.items():
        if key in kw:
            raise r.error(key, f"cannot be combined with concurrency: {n}: {reason}. Fix: delete {key}, or delete "
                               "concurrency.")
    requests = kw.get("num_requests")
    if kw.get("measured_requests") == "all":
        if requests is not None and requests < n:
            raise r.error("num_requests", f"is {requests}, fewer than concurrency ({n}): every client sends at "
                                          f"least one request. Fix: raise num_requests to at least {n}.")
        return
    if requests is not None and requests < MIN_CLOSED_LOOP_WAVES * n:
        raise r.error("num_requests", f"is {requests}, fewer than {MIN_CLOSED_LOOP_WAVES} x concurrency "
                                      f"({MIN_CLOSED_LOOP_WAVES * n}): a closed loop needs a warm-up wave, measured "
                                      f"requests and a drain wave of {n} each. Fix: raise num_requests to at least "
                                      f"{MIN_CLOSED_LOOP_WAVES * n}, or delete it.")


__all__ = ["MIN_CLOSED_LOOP_WAVES", "check_closed_loop"]
