"""The step-time model of one serving replica (`StepModel`: what the simulator calls each iteration) and
speculative decoding as a deployment runs it (`Speculation`); `replica.step_model` builds it from traces."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class StepModel:
    """Coefficients of the step time; `step_s` is all the simulator calls."""

    grid: tuple[float, ...]
    dense_s: tuple[float, ...]  # at each grid token count
    head_s: tuple[float, ...]  # at each grid row count
    kv_s_per_token: float
    pair_s: float
    overhead_s: float
    error_band: float  # time-weighted over every kernel the step model was built from (`roofline.error_band`)
    host_per_row_s: float = 0.0  # host time per logit row (`host.per_token_s`)
    prompt_host_s: float = 0.0  # host time to launch an iteration with prompt tokens kernel by kernel
    prompt_add_s: float = 0.0  # host time such an iteration adds beside the device's (`host.prompt_*layer_s`)
    overlap_host: bool = False  # the host's time hides behind the device's (`host.overlap`)
    # Speculative decoding (`Speculation`): a decode step verifies `draft_tokens` drafts per sequence, keeps
    # `tokens_per_step` tokens; a draft costs `draft_share` of the dense work plus the head.
    draft_tokens: int = 0
    tokens_per_step: float = 1.0
    draft_share: float = 0.0

    def dense(self, n: float) -> float:
        return interp(n, self.grid, self.dense_s)

    def head(self, n: float) -> float:
        return interp(n, self.grid, self.head_s) if n > 0 else 0.0

    def step_s(self, tokens: float, pairs: float, logit_rows: float, kv_tokens: float) -> float:
        """Seconds of one iteration with `tokens` in the batch (prefill + decode)."""
        if tokens <= 0:
            return 0.0
        core = self.core(self.dense(tokens) + self.head(logit_rows), self.overhead_s + self.host_per_row_s * logit_rows)
        return self.prompted(core + self.pair_s * pairs + self.kv_s_per_token * kv_tokens, pairs)

    def prompted(self, step_s: float, pairs: float) -> float:
        """An iteration's time once its launches are counted: one with prompt tokens (attention pairs) that the
        engine launches kernel by kernel takes at least the host's time to launch them (the device runs each as it
        comes), plus the host work before them that the device waits for (`prompt_add_s`)."""
        if pairs <= 0:
            return step_s
        return (self.prompt_host_s if step_s < self.prompt_host_s else step_s) + self.prompt_add_s

    def core(self, device_s: float, host_s: float) -> float:
        """An iteration's device and host time together: the longer when the host's work overlaps, else the sum."""
        return (device_s if device_s > host_s else host_s) if self.overlap_host else host_s + device_s

    def decode_s(self, n: int) -> float:
        """A decode-only iteration of n sequences but its KV term, per token each sequence gains: with speculation,
        one verify step of n x (1 + draft) tokens and the drafts, over the tokens a step keeps."""
        if not self.draft_tokens:
            return self.step_s(n, 0.0, n, 0.0)
        k, kept, rows = self.draft_tokens, self.tokens_per_step, n * (1 + self.draft_tokens)
        device = self.dense(rows) + self.head(rows) + k * (self.draft_share * self.dense(n) + self.head(n))
        return self.core(device, self.overhead_s + self.host_per_row_s * n * kept) / kept

    @property
    def kv_decode_s_per_token(self) -> float:
        """A decode-only iteration's KV time per context token, per token each sequence gains (a verify step reads
        each sequence's cache once)."""
        return self.kv_s_per_token / self.tokens_per_step


@dataclass(frozen=True, slots=True)
class Speculation:
    """Speculative decoding as a deployment runs it: `draft_tokens` drafted per sequence and step by a one-layer
    drafter (DeepSeek's MTP module, an EAGLE head), each accepted with probability `acceptance_rate` given the one
    before it (a verify step keeps the accepted run and one token of its own). The rate is one number for every
    drafted token or one per position: a drafter run again on its own drafts (TensorRT-LLM's MTP Eagle, vLLM's and
    SGLang's MTP with more than one token) was trained for the first position and is kept less often after it."""

    draft_tokens: int
    acceptance_rate: float | tuple[float, ...]

    @property
    def rates(self) -> tuple[float, ...]:
        """The acceptance rate of each drafted position, given the one before."""
        a = self.acceptance_rate
        return a if isinstance(a, tuple) else (float(a),) * self.draft_tokens

    @property
    def tokens_per_step(self) -> float:
        kept, run = 1.0, 1.0
        for rate in self.rates:
            run *= rate
            kept += run
        return kept

    def applied(self, step: StepModel, draft_share: float) -> StepModel:
        """`step` with this speculation, each draft costing `draft_share` of its dense work and the head."""
        return dataclasses.replace(step, draft_tokens=self.draft_tokens, tokens_per_step=self.tokens_per_step,
                                   draft_share=draft_share)


def interp(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    if x >= xs[-1]:  # extrapolate with the last segment's slope (compute bound: linear in tokens)
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return ys[-1] + slope * (x - xs[-1])
    return float(np.interp(x, xs, ys))


__all__ = ["Speculation", "StepModel", "interp"]
