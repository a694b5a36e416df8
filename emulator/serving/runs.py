"""What a serving simulation takes and gives: the requests, each request's times, and the gaps between tokens.

`Requests` are drawn once per seed (`make_requests`: Poisson gaps first, so the lengths do not depend on the rate);
`SimResult` holds every request's first-token and finish times and the run's totals; `TokenGaps` the inter-token
latencies, kept as runs of iterations until a closed loop asks for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from emulator.scenario import Distribution
from emulator.scenario.prompt_pool import PromptPool
from emulator.serving.iterations import Iterations
from emulator.stats import Percentiles


@dataclass(frozen=True, slots=True)
class Requests:
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    # A client's prompt pool (`make_requests` with a `PromptPool`): each request's prompt, every pool prompt's length
    # and the prompts of the warm-up requests sent before the run, in order; None: every prompt its own.
    prompt_id: np.ndarray | None = None
    pool_tokens: np.ndarray | None = None
    warm_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.arrival_s)

    def share(self, k: int, num_replicas: int) -> Requests:
        """Replica k's requests of `num_replicas` (request i and warm-up request i go to replica i mod R)."""
        idx = np.arange(k, len(self), num_replicas)
        pid = None if self.prompt_id is None else self.prompt_id[idx]
        warm = None if self.warm_ids is None else self.warm_ids[k::num_replicas]
        return Requests(self.arrival_s[idx], self.input_tokens[idx], self.output_tokens[idx], pid, self.pool_tokens,
                        warm)

    def prompt_share(self, tokens: int) -> float:
        """`tokens` as a share of these requests' prompt tokens."""
        return tokens / max(int(self.input_tokens.sum()), 1)

    @property
    def pool(self) -> tuple[list[int], list[int], list[int]] | None:
        """(each request's prompt, the pool's prompt lengths, the warm-up's prompts) as the simulator takes them."""
        if self.prompt_id is None or self.pool_tokens is None:
            return None
        warm = [] if self.warm_ids is None else self.warm_ids.tolist()
        return self.prompt_id.tolist(), self.pool_tokens.tolist(), warm


def make_requests(inputs: Distribution, outputs: Distribution, n: int, rate_per_s: float | None,
                  seed: int, pool: PromptPool | None = None, warmup_requests: int | None = None) -> Requests:
    """n requests: Poisson arrivals at `rate_per_s` (all at t=0 when None, the Offline scenario). With a `pool`, each
    request's prompt is one of `pool.prompts` drawn once from `inputs` (the draws of everything else unchanged), in the
    pool's sampling order after those of its warm-up requests (`warmup_requests` of them, else the pool's own)."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0, n)  # drawn first so the lengths do not depend on the rate
    lin, lout = inputs.sample(rng, n), outputs.sample(rng, n)
    arrival = np.zeros(n) if rate_per_s is None else np.cumsum(gaps) / rate_per_s
    if pool is None:
        return Requests(arrival, lin, lout)
    warm = pool.warmup_requests if warmup_requests is None else warmup_requests
    draw = np.random.default_rng([seed, pool.prompts])  # its own stream: the pool changes no other draw
    tokens = inputs.sample(draw, pool.prompts)
    if pool.sampling == "random":  # with replacement
        ids = draw.integers(0, pool.prompts, warm + n)
    else:  # each prompt once in a shuffled order, then again in another
        rounds = -(-(warm + n) // pool.prompts)
        ids = np.concatenate([draw.permutation(pool.prompts) for _ in range(rounds)])[:warm + n]
    return Requests(arrival, tokens[ids[warm:]], lout, ids[warm:], tokens, ids[:warm])


def repeated_percentiles(values: np.ndarray, counts: np.ndarray) -> Percentiles:
    """`Percentiles.of(np.repeat(values, counts))` (numpy's linear interpolation) without building the repeated
    array: the token gaps of a run are one value per iteration, counted once per token it gave."""
    keep = counts > 0
    v, c = np.asarray(values, dtype=float)[keep], np.asarray(counts)[keep]
    if len(v) == 0:
        return Percentiles(0.0, 0.0, 0.0)
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.cumsum(c[order])
    total = float(cum[-1])
    out = []
    for q in (50.0, 90.0, 99.0):
        pos = q / 100 * (total - 1)
        low = math.floor(pos)
        a, b = (float(v[np.searchsorted(cum, i, side="right")]) for i in (low, min(low + 1, total - 1)))
        out.append(a + (b - a) * (pos - low))
    return Percentiles(*out)


@dataclass(frozen=True, slots=True)
class TokenGaps:
    """Gaps between consecutive tokens of requests (ITL), one entry per iteration (or preemption wait) with the
    number of tokens that came after a gap of that length."""

    end_s: np.ndarray  # when the later token came
    gap_s: np.ndarray
    count: np.ndarray

    def within(self, start_s: float, end_s: float) -> TokenGaps:
        """The gaps whose later token came in (start_s, end_s]."""
        keep = (self.end_s > start_s) & (self.end_s <= end_s)
        return TokenGaps(self.end_s[keep], self.gap_s[keep], self.count[keep])

    @property
    def num_tokens(self) -> int:
        return int(self.count.sum())

    @property
    def mean_s(self) -> float:
        return float(np.dot(self.gap_s, self.count) / self.num_tokens) if self.num_tokens else 0.0

    def percentiles(self) -> Percentiles:
        return repeated_percentiles(self.gap_s, self.count)

    @staticmethod
    def join(parts: list[TokenGaps]) -> TokenGaps:
        return TokenGaps(*(np.concatenate([getattr(g, k) for g in parts]) for k in ("end_s", "gap_s", "count")))


@dataclass(frozen=True, slots=True)
class SimResult:
    """Per-request times and run totals, all replicas together."""

    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    busy_s: float  # sum over replicas of time spent in iterations
    makespan_s: float
    num_replicas: int
    num_steps: int
    num_preemptions: int
    max_concurrency: int
    gaps: TokenGaps | None = None  # every replica's token gaps (None: a result assembled from other runs)
    iterations: tuple[Iterations, ...] = ()  # each simulated replica's iteration log (the serving timeline)
    cached_prompt_share: float = 0.0  # of the run's prompt tokens, those its prefix caches served (a prompt pool)

    @property
    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.arrival_s

    @property
    def latency_s(self) -> np.ndarray:
        return self.finish_s - self.arrival_s

    @property
    def tpot_s(self) -> np.ndarray:
        many = self.output_tokens > 1
        return (self.finish_s[many] - self.first_token_s[many]) / (self.output_tokens[many] - 1)

    @property
    def duration_s(self) -> float:
        return float(self.makespan_s - self.arrival_s.min())

    @property
    def throughput_tokens_per_s(self) -> float:
        return float(self.output_tokens.sum()) / self.duration_s

    @property
    def throughput_samples_per_s(self) -> float:
        return len(self.arrival_s) / self.duration_s

    @property
    def utilisation(self) -> float:
        """Busy fraction of the replicas over the run."""
        return self.busy_s / (self.duration_s * self.num_replicas)

    def steady(self, warmup_fraction: float) -> SimResult:
        """The requests after the first `warmup_fraction` of arrivals (queues start empty)."""
        order = np.argsort(self.arrival_s, kind="stable")
        keep = order[int(len(order) * warmup_fraction):]
        return SimResult(self.arrival_s[keep], self.first_token_s[keep], self.finish_s[keep], self.input_tokens[keep],
                         self.output_tokens[keep], self.busy_s, self.makespan_s, self.num_replicas, self.num_steps,
                         self.num_preemptions, self.max_concurrency, self.gaps, self.iterations,
                         self.cached_prompt_share)


def expand_gaps(iterations: Iterations, waits: list[tuple[float, float, int]], regrouped: tuple[int, ...] = ()
                ) -> TokenGaps:
    """One gap per iteration that advanced decoding sequences (each gains a token), and the `waits` (end, gap,
    tokens): a preempted request's wait across its recompute, and, where an iteration's sequences waited through
    prefill-only iterations before it (an engine that does not mix prefill and decode), its tokens' gaps from each
    one's previous token; the runs listed in `regrouped` (one iteration each) are counted there instead."""
    end, dur, seqs, _ = iterations.expand()
    keep = seqs > 0
    if regrouped:
        keep &= ~np.isin(np.repeat(np.arange(len(iterations.count)), iterations.count), regrouped)
    wait_end, wait_gap, wait_count = (np.array(x, dtype=dtype) for x, dtype in
                                      zip(zip(*waits, strict=True), (float, float, np.int64), strict=True)) \
        if waits else (np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
    return TokenGaps(np.concatenate([end[keep], wait_end]), np.concatenate([dur[keep], wait_gap]),
                     np.concatenate([seqs[keep], wait_count]))


def held_waits(held: list[list[float]], decoding: int, end_s: float) -> list[tuple[float, float, int]]:
    """The token gaps, as (end, gap, tokens), of the decoding sequences that waited through prefill-only iterations
    (an engine that does not mix them) until an iteration ending at `end_s`: `held` has each group's last token time
    and size, `decoding` how many of them still decode (the preempted ones are taken from the earliest groups)."""
    waits, extra = [], sum(c for _, c in held) - decoding
    for last, count in held:
        drop = min(count, max(extra, 0))
        extra -= drop
        if count > drop:
            waits.append((end_s, end_s - last, int(count - drop)))
    return waits


@dataclass(frozen=True, slots=True)
class ReplicaRun:
    """One replica's simulation (`simulator.run_replica`)."""

    arrival_s: np.ndarray
    first_s: np.ndarray
    finish_s: np.ndarray
    busy_s: float
    num_steps: int
    num_preemptions: int
    max_concurrency: int
    gaps: TokenGaps
    iterations: Iterations  # its iteration log (empty when not kept)
    missed: bool = False  # a watched run stopped: its SLO is missed (the arrays are empty)
    cached_tokens: int = 0  # prompt tokens its engine's prefix cache served (`PromptCache`)

    @staticmethod
    def missed_at(max_concurrency: int) -> ReplicaRun:
        empty = np.zeros(0)
        return ReplicaRun(empty, empty, empty, 0.0, 0, 0, max_concurrency, TokenGaps(empty, empty, empty),
                          Iterations.of([]), missed=True)


__all__ = ["ReplicaRun", "Requests", "SimResult", "TokenGaps", "expand_gaps", "held_waits", "make_requests",
           "repeated_percentiles"]
