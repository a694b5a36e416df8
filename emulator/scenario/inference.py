"""The serving keys of a scenario's `inference:` section, parsed into a frozen `ServingSpec`.

```yaml
inference:
  engine: trtllm                 # serving stack of stack_profiles/serving (default: trtllm; eager matches `run`)
  precision: fp8                 # weights/GEMMs: bf16 | fp16 | fp8 | fp4 | int8 | w4a16 (4-bit weights, 16-bit math)
  kv_precision: fp8              # KV cache: bf16 | fp16 | fp8 | int8 (default: the engine's defaults.kv_precision)
  parallel: {tp: 2, pp: 1, ep: 1} # attention_dp: true: the tp ranks run attention data parallel (serving.attention_dp)
  input_tokens: {distribution: normal, mean: 1024, std: 300, min: 16, max: 2048}   # or a number
  shared_prefix_tokens: 0        # every prompt starts with the same this many of its tokens (a system prompt); an
                                 #   engine with defaults.prefix_caching computes them once
  prompt_pool: 100               # the client draws prompts from this many distinct ones (scenario.prompt_pool)
  output_tokens: 256
  batch_size: 64                 # max concurrent sequences per replica (Offline: searched when absent)
  max_batch_tokens: 8192         # token budget of one iteration (default: the engine's defaults.max_batch_tokens;
                                 #   with attention_dp, of one attention rank)
  scenario: server               # offline | server | concurrency (implied by concurrency:)
  arrival_rate_per_s: 20         # Server: a fixed rate; absent: search the highest rate meeting the SLO
  concurrency: 64                # or a closed loop: 64 requests in flight per deployment, a new one sent as each
                                 #   finishes (aiperf, genai-perf, `vllm bench serve --max-concurrency`)
  measured_requests: steady      # closed loop: steady (warm-up and drain waves left out) | all (every request)
  trace: requests.csv            # or a trace file: arrival_s,input_tokens,output_tokens per line
  slo: {ttft_p99_s: 2.0, tpot_p99_s: 0.2}          # recommenders: latency_p99_s
  seed: 0
  num_requests: 2000
  scheduler_overhead_s: 0.001    # per-iteration host overhead (default: the engine's host.scheduler_overhead_s)
  engine_settings: {scheduler.batch_wait_iters: 20, host.overlap: true}   # the deployment's own values of the
                                 #   engine's stack items (stack_profiles/README.md), in place of its defaults
  speculative: {draft_tokens: 3, acceptance_rate: 0.8}   # speculative decoding (MTP, EAGLE): tokens drafted per
                                 #   step by a one-layer drafter, each kept with this probability given the last
                                 #   (or one per drafted position: acceptance_rate: [0.85, 0.63, 0.63])
  disaggregation: {prefill_replicas: 2, decode_replicas: 6}
```
Every key is checked through `emulator.fields.Fields`; errors name the file, the field and the fix.

Load modes. `offline` (all requests at t=0) and `server` (Poisson arrivals) are MLPerf's open loops. `concurrency:
N` is a closed loop: N clients each send a request, wait for its last token and send the next at once (no think
time), so N requests are in flight across the deployment's replicas (client i on replica i mod R). It sets
`scenario: concurrency` (writing that is optional) and excludes `offline`/`server`, an arrival rate, a trace and
disaggregation (whose pools are simulated one after the other, an open loop). `batch_size` stays the engine's
cap on running sequences per replica (default: the replica's share of N); requests past it queue in the engine.
`num_requests`, when given, counts the whole run: at least 3 x N (a warm-up wave, measured waves, a drain wave).
`measured_requests: all` counts every request of the run in the latencies and the throughput, the first burst of
N and the drain included, as benchmark clients that report over all their requests do (`vllm bench serve`,
InferenceMAX's benchmark_serving, aiperf's profiling phase once its warm-up has drained); `num_requests` is then at
least N.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emulator.errors import EmulatorError
from emulator.fields import Fields, check_number
from emulator.precision import KV_PRECISIONS, SERVE_PRECISIONS, kv_dtype
from emulator.scenario.closed_loop import check_closed_loop
from emulator.scenario.prompt_pool import PromptPool, parse_prompt_pool
from emulator.stacks import list_stacks, load_stack, parse_settings, stack_of

DISTRIBUTIONS = ("fixed", "normal", "uniform", "lognormal")
SCENARIOS = ("offline", "server", "concurrency")
KEYS = ("precision", "kv_precision", "parallel", "input_tokens", "output_tokens", "batch_size", "max_batch_tokens",
        "scenario", "arrival_rate_per_s", "trace", "slo", "seed", "num_requests", "scheduler_overhead_s",
        "disaggregation", "num_beams", "samples_per_query", "engine", "concurrency", "measured_requests",
        "engine_settings", "speculative", "shared_prefix_tokens", "prompt_pool")
MEASURED = ("steady", "all")
MAX_DRAFT_TOKENS = 16
SLO_KEYS = ("ttft_p99_s", "tpot_p99_s", "latency_p99_s")
# Upper bounds on what the request simulation allocates or loops over; each far past any real deployment, so only a
# typo (1e300) meets them. Lengths: more tokens than any model's context (Llama 4 Scout's is 10M).
MAX_TOKENS = 2**31
MAX_DEVICES = 2**20  # more devices than any cluster built or planned (hardware.num_devices, every parallel size)
MAX_BATCH = 2**20  # concurrent sequences of one replica
MAX_BATCH_TOKENS = 2**30  # tokens of one continuous-batching iteration
MAX_REQUESTS = 2**24  # simulated requests (the default is a few thousand)
MAX_BEAMS = 1024
MAX_CONCURRENCY = 2**20  # requests in flight in one deployment (a closed loop's clients)
MAX_RATE_PER_S = 1e12  # requests (queries) per second past any service
MAX_OVERHEAD_S = 1.0  # a host overhead per iteration past any serving engine's (about a millisecond)


@dataclass(frozen=True, slots=True, kw_only=True)
class Distribution:
    """A length distribution in tokens (or samples per query), clipped to [minimum, maximum] and rounded."""

    kind: str = "fixed"
    mean: float = 1.0
    std: float = 0.0
    minimum: float = 1.0
    maximum: float = math.inf

    def __post_init__(self) -> None:
        if self.kind not in DISTRIBUTIONS:
            raise EmulatorError(f"unknown distribution '{self.kind}'; use one of {', '.join(DISTRIBUTIONS)}.")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n integer draws >= 1 (deterministic for a seeded generator)."""
        lo = max(self.minimum, 1.0)
        hi = self.maximum if math.isfinite(self.maximum) else max(self.mean * 100, lo)
        if self.kind == "fixed":
            x = np.full(n, self.mean)
        elif self.kind == "normal":
            x = rng.normal(self.mean, self.std, n)
        elif self.kind == "uniform":
            x = rng.uniform(lo, hi, n)
        else:  # lognormal with the given mean and std of the variable itself
            sigma2 = math.log(1 + (self.std / self.mean) ** 2)
            x = rng.lognormal(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2), n)
        return np.clip(np.rint(x), lo, hi).astype(np.int64)

    @property
    def expected(self) -> float:
        """Mean before clipping (uniform: the midpoint of its range)."""
        if self.kind == "uniform":
            return (max(self.minimum, 1.0) + self.maximum) / 2
        return self.mean

    @property
    def upper(self) -> int:
        """The largest value a draw can take (for capacity checks)."""
        if math.isfinite(self.maximum):
            return int(self.maximum)
        return int(self.mean if self.kind == "fixed" else self.mean + 4 * self.std)


@dataclass(frozen=True, slots=True, kw_only=True)
class Slo:
    ttft_p99_s: float | None = None
    tpot_p99_s: float | None = None
    latency_p99_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Disaggregation:
    """Separate prefill and decode pools (replica counts); KV moves over the system's fabric."""

    prefill_replicas: int
    decode_replicas: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ServingSpec:
    """Everything the serving model reads from `inference:`."""

    precision: str = "bf16"
    kv_precision: str | None = None
    tp: int = 1
    pp: int = 1
    ep: int = 1
    attention_dp: bool = False  # the tp ranks run attention data parallel (`serving.attention_dp`)
    input_tokens: Distribution = field(default_factory=lambda: Distribution(mean=1024))
    output_tokens: Distribution = field(default_factory=lambda: Distribution(mean=128))
    batch_size: int | None = None
    max_batch_tokens: int | None = None
    scenario: str = "offline"
    arrival_rate_per_s: float | None = None
    trace: str | None = None
    slo: Slo = field(default_factory=Slo)
    seed: int = 0
    num_requests: int | None = None
    scheduler_overhead_s: float | None = None
    engine_settings: tuple[tuple[str, Any], ...] = ()  # (stack item, value): the deployment's, over the engine's
    speculative: tuple[int, float | tuple[float, ...]] | None = None  # (draft tokens per step, acceptance rate or
    #   one per drafted position); None: none
    disaggregation: Disaggregation | None = None
    num_beams: int = 1
    samples_per_query: Distribution = field(default_factory=Distribution)
    engine: str | None = None  # a serving stack of stack_profiles/ (None: stacks.DEFAULT_STACK)
    concurrency: int | None = None  # closed loop: requests in flight per deployment (scenario "concurrency")
    measured_requests: str = "steady"  # closed loop: "steady" (warm-up and drain waves left out) or "all"
    shared_prefix_tokens: int = 0  # leading tokens every prompt shares (a system prompt); 0: none
    prompt_pool: PromptPool | None = None  # the client's distinct prompts, repeated across requests; None: all unique
    path: str = ""

    @property
    def kv(self) -> str:
        """The KV-cache precision in effect: as given, else the engine's default for the weight precision
        (`defaults.kv_precision`: TensorRT-LLM's FP8 checkpoints carry an FP8 cache), else the activations'."""
        engine = stack_of(self, "serving")
        return kv_dtype(self.precision, self.kv_precision or engine.get("defaults.kv_precision").get(self.precision))


def _err(path: str, key: str, message: str) -> EmulatorError:
    return EmulatorError(message, file=path, field=f"inference.{key}")


def parse_distribution(value: Any, path: str, key: str, *, prefix: str = "inference") -> Distribution:
    """A number (fixed) or {distribution, mean, std, min, max}."""
    top, why = MAX_TOKENS, "more than any context"
    if not isinstance(value, Mapping):
        return Distribution(mean=check_number(value, file=path, field=f"{prefix}.{key}", integer=True, maximum=top,
                                              why=why))
    d = Fields(value, file=path, prefix=f"{prefix}.{key}", allowed=("distribution", "mean", "std", "min", "max"))
    kind = d.choice("distribution", DISTRIBUTIONS, "fixed")
    lo = d.number("min", 1.0, minimum=1, strict=False, maximum=top, why=why) or 1.0
    hi = d.number("max", math.inf, maximum=top, why=why) or math.inf
    if kind == "uniform":
        if not d.has("max"):
            raise d.error("max", "is missing for a uniform distribution. Fix: add max (and min).")
        mean = (lo + hi) / 2
    else:
        if not d.has("mean"):
            raise d.error("mean", f"is missing for a {kind} distribution. Fix: add e.g. mean: 512.")
        mean = d.number("mean", maximum=top, why=why) or 1.0  # present, so a number > 0
    std = d.number("std", 0.0, strict=False, maximum=top, why=why) or 0.0
    if kind in ("normal", "lognormal") and std <= 0:
        raise d.error("std", f"must be > 0 for a {kind} distribution. Fix: add std, or use a fixed number.")
    if hi < lo:
        raise d.error("max", f"{hi:g} is below min {lo:g}. Fix: swap them.")
    return Distribution(kind=kind, mean=mean, std=std, minimum=lo, maximum=hi)


def read_trace(path: str, origin: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival_s, input_tokens, output_tokens) from a CSV trace file; a header line is optional."""
    file = Path(path)
    if not file.is_absolute() and origin:
        file = Path(origin).parent / file
    try:
        rows = list(csv.reader(file.read_text(encoding="utf-8").splitlines()))
    except OSError as e:
        raise _err(origin, "trace", f"cannot read '{file}' ({e.strerror}). Fix: check the path (relative paths are "
                   "relative to the scenario file).") from None
    except (UnicodeDecodeError, csv.Error):
        raise _err(origin, "trace", f"'{file}' is not CSV text. Fix: name a CSV file of 'arrival_s,input_tokens,"
                   "output_tokens' lines.") from None
    out: list[tuple[float, int, int]] = []
    for i, row in enumerate(rows):
        if not row or row[0].strip().startswith("#"):
            continue
        try:
            t, a, b = float(row[0]), float(row[1]), float(row[2])
            if not (math.isfinite(t) and a.is_integer() and b.is_integer()):
                raise ValueError(row)
        except (ValueError, IndexError):
            if i == 0:
                continue  # a header line
            raise _err(origin, "trace", f"line {i + 1} of '{file}' is {row!r}. Fix: write "
                       "'arrival_s,input_tokens,output_tokens' per line.") from None
        if t < 0 or not 1 <= a <= MAX_TOKENS or not 1 <= b <= MAX_TOKENS:
            raise _err(origin, "trace", f"line {i + 1} of '{file}' has a negative time or a length outside 1 to "
                       f"{MAX_TOKENS:,}. Fix it.")
        out.append((t, int(a), int(b)))
    if not out:
        raise _err(origin, "trace", f"'{file}' holds no requests. Fix: add "
                   "'arrival_s,input_tokens,output_tokens' lines.")
    out.sort()
    arr = np.array(out, dtype=float)
    return arr[:, 0], arr[:, 1].astype(np.int64), arr[:, 2].astype(np.int64)


def parse_inference(data: Mapping[str, Any], path: str, *, prefix: str = "inference") -> ServingSpec:
    """Validate the `inference:` mapping of a scenario file into a ServingSpec (`prefix` names the section in
    errors: a sizing file's `serve:` section is parsed here too)."""
    r = Fields(data, file=path, prefix=prefix, allowed=KEYS)
    kw: dict[str, Any] = {"path": path}
    if r.has("engine"):
        kw["engine"] = r.choice("engine", list_stacks("serving"))
        load_stack(kw["engine"], "serving", file=path)  # a broken shipped profile fails here, naming its file
    if r.has("precision"):
        kw["precision"] = r.choice("precision", SERVE_PRECISIONS)
    if r.has("kv_precision"):
        kw["kv_precision"] = r.choice("kv_precision", KV_PRECISIONS)
    parallel = r.section("parallel", ("tp", "pp", "ep", "attention_dp"))
    for k in ("tp", "pp", "ep"):
        if parallel.has(k):
            kw[k] = parallel.integer(k, maximum=MAX_DEVICES, why="devices in the largest plan")
    kw["attention_dp"] = parallel.boolean("attention_dp", False)
    if not r.has("input_tokens") and not r.has("trace"):
        raise r.error("input_tokens", "is missing. Fix: add e.g. input_tokens: 1024 (or a distribution, or trace:).")
    for key in ("input_tokens", "output_tokens", "samples_per_query"):
        if r.has(key):
            kw[key] = parse_distribution(r.get(key), path, key, prefix=prefix)
    limits = {"batch_size": (MAX_BATCH, "concurrent sequences of one replica"),
              "max_batch_tokens": (MAX_BATCH_TOKENS, "tokens of one iteration"),
              "num_requests": (MAX_REQUESTS, "requests one simulation holds"), "num_beams": (MAX_BEAMS, "beams")}
    for key, (top, why) in limits.items():
        if r.has(key):
            kw[key] = r.integer(key, maximum=top, why=why)
    if r.has("seed"):
        kw["seed"] = r.integer("seed", minimum=0)
    if r.has("concurrency"):
        kw["concurrency"] = r.integer("concurrency", maximum=MAX_CONCURRENCY, why="requests in flight",
                                      hint="concurrency: 64 (requests in flight, a whole number >= 1)")
    if r.has("measured_requests"):
        kw["measured_requests"] = r.choice("measured_requests", MEASURED)
    kw["scenario"] = r.choice("scenario", SCENARIOS, "concurrency" if "concurrency" in kw else "offline")
    if r.has("arrival_rate_per_s"):
        kw["arrival_rate_per_s"] = r.number("arrival_rate_per_s", maximum=MAX_RATE_PER_S,
                                            why="requests per second past any service")
    traced: int | None = None
    if r.has("trace"):
        if r.has("arrival_rate_per_s"):
            raise r.error("trace", "give arrival_rate_per_s or trace, not both. Fix: delete one.")
        kw["trace"] = r.text("trace", hint="trace: requests.csv")
        traced = int(read_trace(kw["trace"], path)[1].min())  # its shortest prompt; a bad file fails here
    if r.has("shared_prefix_tokens"):
        kw["shared_prefix_tokens"] = _shared_prefix(r, kw, traced)
    if r.has("scheduler_overhead_s"):
        kw["scheduler_overhead_s"] = r.number("scheduler_overhead_s", strict=False, maximum=MAX_OVERHEAD_S,
                                              why="seconds per iteration")
    if r.has("engine_settings"):
        kw["engine_settings"] = parse_settings(r.get("engine_settings"), "serving", path,
                                               f"{prefix}.engine_settings")
    if r.has("speculative"):
        sp = r.section("speculative", ("draft_tokens", "acceptance_rate"))
        drafts = sp.integer("draft_tokens", maximum=MAX_DRAFT_TOKENS, why="drafted tokens per step",
                            hint="draft_tokens: 3 (MTP or EAGLE tokens drafted per step)")
        kw["speculative"] = (drafts, _acceptance(sp, drafts))
    if r.has("slo"):
        slo = r.section("slo", SLO_KEYS)
        kw["slo"] = Slo(**{k: slo.number(k) for k in SLO_KEYS if slo.has(k)})
    if r.has("disaggregation"):
        d = r.section("disaggregation", ("prefill_replicas", "decode_replicas"))
        kw["disaggregation"] = Disaggregation(
            prefill_replicas=d.integer("prefill_replicas", hint="prefill_replicas: 1 (a whole number >= 1)"),
            decode_replicas=d.integer("decode_replicas", hint="decode_replicas: 1 (a whole number >= 1)"))
    if r.has("prompt_pool"):
        kw["prompt_pool"] = parse_prompt_pool(r, kw)
    check_closed_loop(r, kw)
    if kw["scenario"] == "server" and "arrival_rate_per_s" not in kw and "trace" not in kw:
        slo = kw.get("slo", Slo())
        if slo.ttft_p99_s is None and slo.tpot_p99_s is None and slo.latency_p99_s is None:
            raise r.error("slo", "is needed to search the highest Server rate (no arrival_rate_per_s or trace). "
                                 "Fix: add slo: {ttft_p99_s: 2.0, tpot_p99_s: 0.2}, or give arrival_rate_per_s.")
    return ServingSpec(**kw)


def _shared_prefix(r: Fields, kw: dict[str, Any], trace_shortest: int | None) -> int:
    """`shared_prefix_tokens`: fewer than the shortest prompt (each prompt has tokens of its own after it);
    `trace_shortest`: the trace's shortest prompt, when the section names one."""
    tokens = r.integer("shared_prefix_tokens", minimum=0, maximum=MAX_TOKENS, why="tokens of a prompt")
    if trace_shortest is not None:
        shortest, how = trace_shortest, "the trace's shortest prompt"
    else:
        d = kw["input_tokens"]
        shortest, how = (int(d.mean), "input_tokens") if d.kind == "fixed" else (int(d.minimum), "input_tokens' min")
    if tokens >= shortest:
        raise r.error("shared_prefix_tokens", f"is {tokens}, not fewer than {how}, {shortest}: each prompt needs "
                                              f"tokens of its own after the shared ones. Fix: lower it below "
                                              f"{shortest}, or raise input_tokens (set its min).")
    return tokens


def _acceptance(sp: Fields, draft_tokens: int) -> float | tuple[float, ...]:
    """`speculative.acceptance_rate`: one probability for every drafted token, or a list of one per drafted position
    (each given the one before: a drafter run on its own drafts is kept less often after the first)."""
    rates = sp.required("acceptance_rate", "acceptance_rate: 0.8 (the chance the verify step keeps a drafted token, "
                                           "given the one before), or one per drafted position: [0.85, 0.6, 0.6]")
    if not isinstance(rates, list):
        return float(sp.number("acceptance_rate", strict=False, maximum=1.0,
                               why="probability that a drafted token is kept") or 0.0)
    if len(rates) != draft_tokens:
        raise sp.error("acceptance_rate", f"lists {len(rates)} rate(s) for {draft_tokens} drafted token(s). Fix: give "
                                          "one rate per drafted position, or one number for all of them.")
    return tuple(check_number(a, file=sp.file, field=f"{sp.field('acceptance_rate')}[{i}]", strict=False,
                              maximum=1.0, why="probability that a drafted token is kept") for i, a in enumerate(rates))


__all__ = ["Distribution", "Disaggregation", "ServingSpec", "Slo", "parse_distribution", "parse_inference",
           "read_trace"]
