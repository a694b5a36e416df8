"""Goodput at scale: failures, checkpoints and restarts turn an ideal time-to-train into an expected one.

Defaults (each an assumption with its source; override them through `Reliability`):
- failure rate: Llama 3 (Dubey et al. 2024, Sec. 3.3.4) saw 419 unexpected interruptions in a 54-day
  snapshot on 16,384 H100 GPUs: 419 / (54 * 24 * 16,384) = 1.97e-5 per device-hour.
- checkpoint write: weights and optimizer states (2 + 12 bytes per parameter) written at an aggregate storage
  bandwidth of 2 TB/s (Llama 3's Tectonic storage sustained 2 TB/s, peaking at 7 TB/s; an assumption for
  other sites).
- restart: 10 minutes to detect the failure, reschedule and reload the checkpoint (assumption; Llama 3 reports
  restarts in tens of minutes with automation).
- checkpoint interval: Young (1974) / Daly (2006) first-order optimum tau = sqrt(2 * delta * M), delta the
  checkpoint time and M the job's mean time between failures, 1 / (rate * devices).
Expected overhead per unit of useful time (Daly's first-order model): delta / tau for writing checkpoints, plus
(tau / 2 + restart) / M for the work lost since the last checkpoint and the restart itself:
    goodput = 1 / (1 + delta/tau + (tau/2 + restart)/M),   effective time = ideal time / goodput.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from emulator.units import HOUR_S


@dataclass(frozen=True, slots=True, kw_only=True)
class Reliability:
    failures_per_device_hour: float = 419 / (54 * 24 * 16384)  # Llama 3, Sec. 3.3.4
    storage_bytes_per_s: float = 2e12  # aggregate checkpoint write bandwidth (Llama 3's Tectonic, sustained)
    restart_s: float = 600.0  # detection, rescheduling and checkpoint reload (assumption)
    checkpoint_bytes_per_param: float = 14.0  # bf16 weights + fp32 master weights and two moments
    checkpoint_interval_s: float | None = None  # None: Young/Daly optimum


@dataclass(frozen=True, slots=True, kw_only=True)
class Goodput:
    """Expected goodput of a run and every input it came from."""

    fraction: float  # useful time / total time
    job_mtbf_s: float
    checkpoint_time_s: float
    checkpoint_interval_s: float
    restart_time_s: float
    failures_per_device_hour: float
    ideal_time_s: float | None

    ASSUMPTIONS: ClassVar[str] = ("failure rate: Llama 3 (419 interruptions / 54 days / 16,384 GPUs); checkpoint: "
                                  "14 B/param at "
                   "2 TB/s aggregate storage; restart 600 s; interval: Young/Daly sqrt(2*delta*MTBF)")

    @property
    def effective_time_s(self) -> float | None:
        """The ideal time to train divided by the goodput: failures, checkpoints and restarts included."""
        return self.ideal_time_s / self.fraction if self.ideal_time_s else None

    @property
    def expected_failures(self) -> float | None:
        effective = self.effective_time_s
        return effective / self.job_mtbf_s if effective else None

    def as_dict(self) -> dict[str, Any]:
        return {"goodput": self.fraction, "job_mtbf_s": self.job_mtbf_s, "checkpoint_time_s": self.checkpoint_time_s,
                "checkpoint_interval_s": self.checkpoint_interval_s, "restart_time_s": self.restart_time_s,
                "failures_per_device_hour": self.failures_per_device_hour,
                "expected_failures": self.expected_failures, "effective_time_to_train_s": self.effective_time_s,
                "assumptions": self.ASSUMPTIONS}


def goodput(num_params: float, num_devices: int, ideal_time_s: float | None,
            reliability: Reliability = Reliability()) -> Goodput:
    """Expected goodput and effective time-to-train of a run of `ideal_time_s` on `num_devices` devices."""
    r = reliability
    mtbf_s = HOUR_S / (r.failures_per_device_hour * num_devices)
    checkpoint_s = num_params * r.checkpoint_bytes_per_param / r.storage_bytes_per_s
    interval_s = r.checkpoint_interval_s or math.sqrt(2 * checkpoint_s * mtbf_s)
    overhead = checkpoint_s / interval_s + (interval_s / 2 + r.restart_s) / mtbf_s
    return Goodput(fraction=1 / (1 + overhead), job_mtbf_s=mtbf_s, checkpoint_time_s=checkpoint_s,
                   checkpoint_interval_s=interval_s, restart_time_s=r.restart_s,
                   failures_per_device_hour=r.failures_per_device_hour, ideal_time_s=ideal_time_s)
