"""Per-request records of a simulated serving run: the CSV export and the timeline of its iterations and requests.

A `RequestLog` holds the requests the reported latency percentiles come from, with the iteration log of every
replica it simulated: Offline, replica 0's share (replicas are identical and share requests round-robin);
Server, replica 0's requests after the warm-up quarter; a closed loop, the measured waves of the first replica's
load; a `trace:` file, every request on every replica. Times are seconds from the start of the simulated run.

Timeline (`emulator predict --trace` on a serving scenario): per replica, a process of iterations (one span per
continuous-batching iteration: its decoding sequences and prefill tokens) and a process of requests, each request a
span from arrival to its last token holding "queue + prefill" (to the first token) and "decode"; requests are put on
numbered lanes so that the spans of one lane never overlap.
"""

from __future__ import annotations

import csv
import heapq
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from emulator.engine.timeline import Timeline, TimelineBuilder
from emulator.serving.iterations import Iterations

CSV_COLUMNS = ("request", "replica", "arrival_s", "first_token_s", "finish_s", "ttft_s", "latency_s", "tpot_s",
               "input_tokens", "output_tokens")
# A viewer slows down past a few hundred thousand events; a longer run is cut at these (said in the trace).
MAX_ITERATION_SPANS = 200_000
MAX_REQUEST_SPANS = 20_000
SOURCE = "request-level simulation of continuous batching (emulator/serving/simulator.py)"


class Simulated(Protocol):
    """What a log reads of a simulation's result (`simulator.SimResult`, which imports this module's callers)."""

    @property
    def arrival_s(self) -> np.ndarray: ...
    @property
    def first_token_s(self) -> np.ndarray: ...
    @property
    def finish_s(self) -> np.ndarray: ...
    @property
    def input_tokens(self) -> np.ndarray: ...
    @property
    def output_tokens(self) -> np.ndarray: ...
    @property
    def num_replicas(self) -> int: ...
    @property
    def iterations(self) -> tuple[Iterations, ...]: ...


@dataclass(frozen=True, slots=True, eq=False)  # arrays: a log equals only itself
class RequestLog:
    """The requests behind a serving prediction's percentiles, in arrival (send) order, and the iterations of the
    replicas simulated (module docstring)."""

    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    replica_of: np.ndarray  # each request's replica
    iterations: tuple[Iterations, ...]  # one log per simulated replica
    description: str  # which run and which of its requests

    @classmethod
    def of(cls, result: Simulated, description: str) -> RequestLog:
        """`result` of `simulate` (request i on replica i mod R) or of one replica."""
        replica = np.arange(len(result.arrival_s)) % max(result.num_replicas, 1)
        order = np.argsort(result.arrival_s, kind="stable")
        return cls(arrival_s=result.arrival_s[order], first_token_s=result.first_token_s[order],
                   finish_s=result.finish_s[order], input_tokens=result.input_tokens[order],
                   output_tokens=result.output_tokens[order], replica_of=replica[order],
                   iterations=result.iterations, description=description)

    def __len__(self) -> int:
        return len(self.arrival_s)

    def rows(self) -> list[dict[str, Any]]:
        """One record per request (`CSV_COLUMNS`); `tpot_s` is None for a request of one output token."""
        r = self
        out = []
        for i in range(len(self)):
            arrival, first, finish = float(r.arrival_s[i]), float(r.first_token_s[i]), float(r.finish_s[i])
            tokens = int(r.output_tokens[i])
            out.append({"request": i, "replica": int(self.replica_of[i]), "arrival_s": arrival,
                        "first_token_s": first, "finish_s": finish, "ttft_s": first - arrival,
                        "latency_s": finish - arrival,
                        "tpot_s": (finish - first) / (tokens - 1) if tokens > 1 else None,
                        "input_tokens": int(r.input_tokens[i]), "output_tokens": tokens})
        return out

    def write_csv(self, path: str) -> None:
        """The records as CSV, a header of `CSV_COLUMNS` (seconds, SI) and one row per request."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for row in self.rows():
                writer.writerow({k: "" if v is None else (f"{v:.9g}" if isinstance(v, float) else v)
                                 for k, v in row.items()})

    def timeline(self, **metadata: Any) -> Timeline:
        """The run as a timeline (module docstring); `metadata` joins what the trace says about itself."""
        b = TimelineBuilder()
        notes = []
        left = MAX_ITERATION_SPANS
        for k, log in enumerate(self.iterations):
            process = f"replica {k}: iterations"
            b.thread(process, "batch")
            end, dur, seqs, prefill = (a[:left] for a in log.expand())
            if len(end) < log.num_iterations:
                notes.append(f"replica {k}: the first {len(end)} of {log.num_iterations} iterations drawn")
            start = end - dur
            start[1:] = np.maximum(start[1:], end[:-1])  # closed-form runs may end a rounding error late
            left -= len(end)
            for s, e, d, p in zip(start.tolist(), end.tolist(), seqs.tolist(), prefill.tolist(), strict=True):
                name = " + ".join(part for part, n in (("decode", d), ("prefill", p)) if n) or "idle"
                b.span(process, "batch", name, s, e - s, "iteration", decode_sequences=d, prefill_tokens=p)
        self._requests(b, notes)
        return b.build(source=SOURCE, requests=self.description, notes=notes, **metadata)

    def _requests(self, b: TimelineBuilder, notes: list[str]) -> None:
        r = self
        shown = min(len(self), MAX_REQUEST_SPANS)
        if shown < len(self):
            notes.append(f"the first {shown} of {len(self)} requests drawn")
        lanes: dict[int, list[tuple[float, int]]] = {}  # replica -> heap of (free from, lane), one entry per lane
        for i in range(shown):
            arrival, first, finish = float(r.arrival_s[i]), float(r.first_token_s[i]), float(r.finish_s[i])
            replica = int(self.replica_of[i])
            heap = lanes.setdefault(replica, [])
            lane = heapq.heappop(heap)[1] if heap and heap[0][0] <= arrival else len(heap)
            heapq.heappush(heap, (finish, lane))  # a reused lane goes back; a new one is numbered len(heap)
            process, thread = f"replica {replica}: requests", f"lane {lane}"
            tokens = int(r.output_tokens[i])
            b.span(process, thread, f"request {i}", arrival, finish - arrival, "request",
                   input_tokens=int(r.input_tokens[i]), output_tokens=tokens, ttft_s=first - arrival,
                   latency_s=finish - arrival, tpot_s=(finish - first) / (tokens - 1) if tokens > 1 else None)
            b.span(process, thread, "queue + prefill", arrival, first - arrival, "request")
            if finish > first:
                b.span(process, thread, "decode", first, finish - first, "request")


__all__ = ["CSV_COLUMNS", "RequestLog"]
