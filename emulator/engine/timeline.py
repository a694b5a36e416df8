"""A timeline of predicted events, and its rendering as a Chrome / Perfetto trace (the Trace Event Format's JSON).

A `Timeline` is processes holding threads holding spans (start and duration in seconds). `to_chrome` writes
`{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}`: one `process_name` and `thread_name`
metadata event ("ph": "M") per declared process and thread, sort-index events that keep the declared order, and
one complete event ("ph": "X", `ts` and `dur` in microseconds, `pid`, `tid`, `name`, `cat`, `args`) per span.
Spans on one thread either follow each other or nest (a viewer stacks a span inside the one that contains it), so
a thread reads as one stream of work. Opens in https://ui.perfetto.dev and chrome://tracing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

US_PER_S = 1e6  # the Trace Event Format counts microseconds


@dataclass(frozen=True, slots=True)
class Span:
    """One event: `name` on thread `thread` of process `process`, from `start_s` for `duration_s`."""

    process: str
    thread: str
    name: str
    start_s: float
    duration_s: float
    category: str = ""
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Timeline:
    """Declared processes (each with its threads, in display order), their spans, and what the trace shows."""

    threads: tuple[tuple[str, tuple[str, ...]], ...]  # (process, its threads), in display order
    spans: tuple[Span, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def end_s(self) -> float:
        return max((s.start_s + s.duration_s for s in self.spans), default=0.0)

    def to_chrome(self) -> dict[str, Any]:
        """The Trace Event Format JSON object (see the module docstring)."""
        ids: dict[tuple[str, str], tuple[int, int]] = {}
        events: list[dict[str, Any]] = []
        for pid, (process, threads) in enumerate(self.threads):
            events += [{"ph": "M", "pid": pid, "tid": 0, "name": "process_name", "args": {"name": process}},
                       {"ph": "M", "pid": pid, "tid": 0, "name": "process_sort_index", "args": {"sort_index": pid}}]
            for tid, thread in enumerate(threads):
                ids[(process, thread)] = (pid, tid)
                events += [{"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": thread}},
                           {"ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index",
                            "args": {"sort_index": tid}}]
        keyed = []
        for s in self.spans:
            pid, tid = ids[(s.process, s.thread)]  # an undeclared thread is a bug of the builder: KeyError
            ts, dur = s.start_s * US_PER_S, max(s.duration_s, 0.0) * US_PER_S
            # Per thread in time order, an enclosing span before the spans it contains.
            keyed.append(((pid, tid, ts, -dur), {"ph": "X", "pid": pid, "tid": tid, "name": s.name,
                                                  "cat": s.category or "event", "ts": ts, "dur": dur,
                                                  "args": dict(s.args)}))
        keyed.sort(key=lambda k: k[0])
        return {"traceEvents": events + [e for _, e in keyed], "displayTimeUnit": "ms",
                "otherData": dict(self.metadata)}


class TimelineBuilder:
    """Collects threads in the order they are first declared, and spans on them."""

    def __init__(self) -> None:
        self._threads: dict[str, list[str]] = {}
        self._spans: list[Span] = []

    def thread(self, process: str, thread: str) -> None:
        threads = self._threads.setdefault(process, [])
        if thread not in threads:
            threads.append(thread)

    def span(self, process: str, thread: str, name: str, start_s: float, duration_s: float, category: str = "",
             **args: Any) -> float:
        """Add a span (declaring its thread); returns its end."""
        self.thread(process, thread)
        self._spans.append(Span(process, thread, name, float(start_s), float(duration_s), category, args))
        return float(start_s) + float(duration_s)

    @property
    def num_spans(self) -> int:
        return len(self._spans)

    def build(self, **metadata: Any) -> Timeline:
        return Timeline(tuple((p, tuple(t)) for p, t in self._threads.items()), tuple(self._spans), metadata)


__all__ = ["US_PER_S", "Span", "Timeline", "TimelineBuilder"]
