"""PNG plots of `emulator predict`: a concurrency sweep's interactivity-throughput curve and a serving run's
latency CDFs. Drawn as the sizing report's plots are (`sizing.plots`: Agg backend, byte-stable files, a caption
with provenance and error band)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emulator.serving.records import RequestLog
from emulator.serving.sweep import ConcurrencySweep
from emulator.sizing.plots import _plt, _save
from emulator.stats import percentile


def _target(path: str) -> tuple[Path, str]:
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    return file.parent, file.name


def sweep_plot(sweep: ConcurrencySweep, front: np.ndarray, path: str) -> None:
    """tokens/s per device against tokens/s per user, one point per level (labelled with its concurrency), the
    Pareto front joined."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    user = np.array([p.tokens_per_s_per_user for p in sweep.points])
    device = np.array([p.tokens_per_s_per_device for p in sweep.points])
    ax.scatter(user, device, color="#888", zorder=2, label="concurrency level")
    order = np.argsort(user[front])
    ax.plot(user[front][order], device[front][order], "-o", color="#1f77b4", zorder=3, label="Pareto front")
    for p, x, y in zip(sweep.points, user, device, strict=True):
        ax.annotate(str(p.concurrency), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("output tokens/s per user (1 / mean TPOT)")
    ax.set_ylabel("output tokens/s per device")
    layout = f"{sweep.replicas} x tp{sweep.replica.tp}"
    ax.set_title(f"{sweep.model} on {sweep.num_devices} x {sweep.device} ({layout}, {sweep.engine or 'default'})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    fig.subplots_adjust(bottom=0.16)
    folder, name = _target(path)
    _save(plt, fig, folder, name, f"emulator predict --sweep-concurrency: closed-loop serving simulation; provenance "
                                  f"{sweep.provenance}; error band ±{sweep.error_band:.0%}")


def cdf_plot(log: RequestLog, path: str, provenance: str, error_band: float) -> None:
    """Empirical CDFs of TTFT and end-to-end latency over the logged requests, p50 and p99 marked."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, (label, values) in zip(axes, (("TTFT", log.first_token_s - log.arrival_s),
                                          ("end-to-end latency", log.finish_s - log.arrival_s)), strict=True):
        x = np.sort(values)
        ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", color="#1f77b4")
        for q, style in ((50, "--"), (99, ":")):
            v = percentile(x, q)
            ax.axvline(v, linestyle=style, color="#d62728", label=f"p{q} {v:.3g} s")
        ax.set_xlabel(f"{label} (s)")
        ax.set_ylabel("fraction of requests")
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"{len(log)} requests: {log.description}", fontsize=9)
    fig.subplots_adjust(bottom=0.2, wspace=0.3)
    folder, name = _target(path)
    _save(plt, fig, folder, name, f"emulator predict: request-level serving simulation; provenance {provenance}; "
                                  f"error band ±{error_band:.0%}")


__all__ = ["cdf_plot", "sweep_plot"]
