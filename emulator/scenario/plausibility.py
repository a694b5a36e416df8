"""Plausibility warnings: settings that load and run but are probably not what the user meant.

Each warning is one sentence with the value, why it looks wrong and what to write instead. They are never fatal
(a 10-minute TTFT bound may be deliberate) and never silent: `emulator predict` and `emulator size` print them on
stderr and list them under `warnings` in `--json`.
- SLOs that read as milliseconds: a p99 TTFT or end-to-end latency bound over `MAX_PLAUSIBLE_TTFT_S`, a TPOT bound
  over `MAX_PLAUSIBLE_TPOT_S` (SLOs are in seconds: `ttft_p99_s: 500` means 8.3 minutes, not 500 ms).
- Parallel groups that cross the scale-up domain (the system's NVLink or xGMI domain): tensor parallelism, and a
  training plan's expert-parallel all-to-all (ep x etp consecutive ranks), then run over the scale-out network.
- Layouts that leave devices idle: disaggregated pools smaller than the hardware, fewer closed-loop clients than
  replicas, an SLO on an Offline run (which has none to meet).
"""

from __future__ import annotations

from emulator.hardware import DeviceProfile, SystemProfile, default_system
from emulator.scenario.closed_loop import MIN_CLOSED_LOOP_WAVES
from emulator.scenario.inference import ServingSpec, Slo
from emulator.units import fmt_seconds

# MLPerf Inference's interactive bounds are 0.45-6 s TTFT and 25-200 ms TPOT (emulator/data/
# mlperf_inference_rules.yaml); a bound ten times the loosest, a minute, is far more likely milliseconds typed as
# seconds than a real target. A TPOT of 10 s is one token every 10 seconds: slower than anyone reads.
MAX_PLAUSIBLE_TTFT_S = 60.0
MAX_PLAUSIBLE_TPOT_S = 10.0
MAX_PLAUSIBLE_LATENCY_S = 60.0


def slo_warnings(slo: Slo, prefix: str) -> list[str]:
    """A warning for each SLO bound that reads as milliseconds written where seconds go."""
    out = []
    for key, bound, limit in (("ttft_p99_s", slo.ttft_p99_s, MAX_PLAUSIBLE_TTFT_S),
                              ("tpot_p99_s", slo.tpot_p99_s, MAX_PLAUSIBLE_TPOT_S),
                              ("latency_p99_s", slo.latency_p99_s, MAX_PLAUSIBLE_LATENCY_S)):
        if bound is not None and bound > limit:
            spelled = f" ({fmt_seconds(bound)})" if fmt_seconds(bound) != f"{bound:.2f} s" else ""
            out.append(f"{prefix}.slo.{key} is {bound:g} s{spelled}, past any interactive target "
                       f"(over {limit:g} s); SLOs are in seconds, so if you meant {bound:g} ms write {key}: "
                       f"{bound / 1e3:g}")
    return out


def domain_of(device: DeviceProfile, system: SystemProfile | None) -> tuple[int, str] | None:
    """The scale-up domain size and a phrase naming it (the scenario's system, else the first shipped system of
    the device); None when no system holds the device."""
    chosen = system or default_system(device)
    if chosen is None:
        return None
    origin = "" if system is not None else ", the first shipped system of this device"
    return chosen.scale_up.domain_size, f"{chosen.scale_up.domain_size} devices each in {chosen.name}{origin}"


def group_warnings(groups: dict[str, int], domain: tuple[int, str] | None, prefix: str) -> list[str]:
    """A warning for each parallel group (name -> ranks) wider than the scale-up domain."""
    if domain is None:
        return []
    size, name = domain
    out = []
    for label, ranks in groups.items():
        if ranks > size:
            out.append(f"{prefix} {label} {ranks} spans {-(-ranks // size)} scale-up domains ({name}): its "
                       "collectives cross the scale-out network, several times slower than the domain's links; keep "
                       f"it within {size} (use pipeline or data parallelism for the rest) unless that is the point")
    return out


def serving_warnings(spec: ServingSpec, num_devices: int, domain: tuple[int, str] | None) -> list[str]:
    """The plausibility warnings of an `inference:` section on `num_devices` devices."""
    out = slo_warnings(spec.slo, "inference")
    out += group_warnings({"tp": spec.tp}, domain, "inference.parallel:")
    slo = spec.slo
    if spec.scenario == "offline" and any(b is not None for b in (slo.ttft_p99_s, slo.tpot_p99_s, slo.latency_p99_s)):
        out.append("inference.slo is set, but scenario is offline (every request queued at t=0), which has no SLO to "
                   "meet; the bounds are ignored. Use scenario: server to find the highest rate within them")
    per_replica = spec.tp * spec.pp
    d = spec.disaggregation
    if d is not None:
        used = (d.prefill_replicas + d.decode_replicas) * per_replica
        if used < num_devices:
            out.append(f"inference.disaggregation: {d.prefill_replicas} prefill and {d.decode_replicas} decode "
                       f"replica(s) of {per_replica} device(s) use {used} of the {num_devices} devices; "
                       f"{num_devices - used} stay idle (power and cost still count them). Add replicas or set "
                       f"hardware.num_devices: {used}")
    replicas = num_devices // per_replica if num_devices % per_replica == 0 else 0
    if spec.concurrency is not None and replicas > spec.concurrency:
        # A closed loop needs num_requests >= MIN_CLOSED_LOOP_WAVES x concurrency, so a raised concurrency may need it.
        requests = MIN_CLOSED_LOOP_WAVES * replicas
        more = f" (and num_requests to at least {requests})" if (spec.num_requests or requests) < requests else ""
        out.append(f"inference.concurrency {spec.concurrency} is below the {replicas} replicas: "
                   f"{replicas - spec.concurrency} replica(s) get no client and stay idle. Raise concurrency to at "
                   f"least {replicas}{more} or set hardware.num_devices: {spec.concurrency * per_replica}")
    return out


__all__ = ["MAX_PLAUSIBLE_TPOT_S", "MAX_PLAUSIBLE_TTFT_S", "domain_of", "group_warnings", "serving_warnings",
           "slo_warnings"]
