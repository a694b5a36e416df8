"""The step model tabulated over whole token counts: the simulator's per-iteration cost, looked up instead of
interpolated.

A continuous-batching iteration has a whole number of tokens and of logit rows, so `StepModel.dense` and
`StepModel.head` are evaluated once per count, vectorised (numpy's `interp` gives the same floats over an array as
over one value, and the extrapolation past the grid is the same arithmetic), and the event loop indexes Python
lists. Each entry keeps `StepModel.step_s`'s order of additions, so a looked-up iteration equals the computed one
to the last bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emulator.serving.replica import StepModel

MAX_TABLE_TOKENS = 1 << 17  # larger iterations (a huge batch cap) fall back to `StepModel.step_s`


@dataclass(frozen=True, slots=True)
class StepTable:
    """One replica's iteration time by token count n = 0 .. size - 1."""

    model: StepModel
    base_s: list[float]  # dense(n): the device's work for n tokens but the output head
    head_s: list[float]  # head(n) for n logit rows (0 for none)
    host_s: list[float]  # the host's time with n logit rows: overhead + per-row time x n
    decode_s: list[float]  # a decode-only iteration of n sequences (`StepModel.decode_s`), without its KV term

    @property
    def size(self) -> int:
        return len(self.base_s)

    def core(self, tokens: int, logit_rows: int) -> float:
        """An iteration's host and device time but its attention terms (`StepModel.core`)."""
        return self.model.core(self.base_s[tokens] + self.head_s[logit_rows], self.host_s[logit_rows])

    def step_s(self, tokens: int, pairs: float, logit_rows: int, kv_tokens: float) -> float:
        """`StepModel.step_s`, to the bit."""
        if tokens >= len(self.base_s) or logit_rows >= len(self.head_s):
            return self.model.step_s(tokens, pairs, logit_rows, kv_tokens)
        if tokens <= 0:
            return 0.0
        return self.model.prompted(
            self.core(tokens, logit_rows) + self.model.pair_s * pairs + self.model.kv_s_per_token * kv_tokens, pairs)


def _curve(n: np.ndarray, xs: tuple[float, ...], ys: tuple[float, ...]) -> np.ndarray:
    """`stepmodel.interp` over an array: np.interp inside the grid, the last segment's line past it."""
    out = np.interp(n, xs, ys)
    past = n >= xs[-1]
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    out[past] = ys[-1] + slope * (n[past] - xs[-1])
    return out


_TABLES: dict[tuple[StepModel, int], StepTable] = {}


def step_table(model: StepModel, max_tokens: int) -> StepTable:
    """The table of `model` covering iterations of up to `max_tokens` tokens (capped at MAX_TABLE_TOKENS), built
    once per step model and size."""
    size = min(max(int(max_tokens), 1), MAX_TABLE_TOKENS) + 1
    key = (model, size)
    table = _TABLES.get(key)
    if table is None:
        n = np.arange(size, dtype=float)
        base = _curve(n, model.grid, model.dense_s)
        head = _curve(n, model.grid, model.head_s)
        head[0] = 0.0
        host = model.overhead_s + model.host_per_row_s * n
        if model.draft_tokens:  # speculation: a verify step of several rows per sequence, per token kept
            decode = [model.decode_s(i) for i in range(size)]
        else:  # `StepModel.core` over the array
            decode = (np.maximum(base + head, host) if model.overlap_host else host + (base + head)).tolist()
        table = StepTable(model, base.tolist(), head.tolist(), host.tolist(), decode)
        if len(_TABLES) > 256:
            _TABLES.clear()
        _TABLES[key] = table
    return table


__all__ = ["MAX_TABLE_TOKENS", "StepTable", "step_table"]
