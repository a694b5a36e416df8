"""An engine's scheduling policy as the simulator follows it: its stack profile's `scheduler.*` items, the host's
per-request ingress (`host.request_s`), its API server's streaming (`host.frontend_token_s`), whether it schedules one
iteration ahead (`host.overlap`) and whether it reuses cached prompt blocks (`defaults.prefix_caching`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from emulator.stacks import StackProfile


@dataclass(frozen=True, slots=True)
class Scheduling:
    """How the engine's scheduler fills an iteration: its stack profile's `scheduler.*` items."""

    reserve_output: float = 0.0  # share of each admitted request's remaining output kept free in the KV cache
    mixed_batches: bool = True  # prefill chunks and decodes share an iteration (else prefill first, decodes wait)
    chunked_prefill: bool = True  # a prompt is split over iterations (else it runs whole, waiting for room)
    # Batch waiting (TensorRT-LLM's batch_wait_timeout_iters, batch_wait_max_tokens_ratio): while decodes run and
    # the iteration would hold fewer than `batch_wait_ratio` x the token budget, prompts wait up to
    # `batch_wait_iters` iterations for more to arrive. 0: prompts never wait.
    batch_wait_iters: int = 0
    batch_wait_ratio: float = 0.0
    # TensorRT-LLM's attention-DP balance (attention_dp_config enable_balance, timeout_iters): prompts wait, up to
    # `batch_wait_iters` iterations, until every attention rank has one; with completions landing on ranks at random,
    # that takes ranks x H(ranks) of them (the coupon collector's expectation). 0: no such wait.
    batch_wait_prompts: int = 0
    ingress_s: float = 0.0  # host time from a request's send to the scheduler (API server: parse, tokenize, route)
    # The API server's serial time per output token streamed to a client (`frontend.Frontend`; 0: never binds): its
    # time per streamed event (`host.frontend_token_s`) shared by the event's tokens (`defaults.stream_interval`)
    frontend_token_s: float = 0.0
    # The engine schedules iteration i + 1 while the device runs i (`host.overlap`: TensorRT-LLM's and SGLang's
    # overlap schedulers): a request that arrives during an iteration joins the one after next.
    ahead: bool = False
    # SGLang's --scheduler-recv-interval: while only decodes run, new requests reach the batch every this many
    # iterations (its SchedulerRecvSkipper counts decode iterations; after prompts, or idle, it takes them at once).
    recv_interval: int = 1
    # SGLang's --max-prefill-tokens (its PrefillAdder's rem_input_tokens): the prompt tokens new requests may bring
    # into one iteration, less the decoding sequences when mixed; a prompt joins only if all of it that is left fits,
    # except the iteration's first. 0: no cap but the token budget.
    max_prefill_tokens: int = 0
    prefix_caching: bool = False  # the engine reuses cached prompt blocks (`defaults.prefix_caching`)
    # Prompt tokens a request takes from the cache once a shared prefix was first computed: that prefix's whole KV
    # blocks (`replica.with_shared_prefix`), held once by the cache; 0: none
    cached_prefix_tokens: int = 0

    @classmethod
    def of(cls, stack: StackProfile, attention_ranks: int = 1) -> Scheduling:
        """The stack's policy for a replica of `attention_ranks` attention data-parallel ranks (1: none); the
        attention-DP balance, where on, takes the batch-waiting timeout, and each rank's scheduler has its own prompt
        cap (the replica's token budget is the ranks' too)."""
        balance = int(stack.get("scheduler.adp_balance_iters")) if attention_ranks > 1 else 0
        ranks_h = attention_ranks * sum(1.0 / i for i in range(1, attention_ranks + 1))
        return cls(reserve_output=float(stack.get("scheduler.reserve_output")),
                   mixed_batches=bool(stack.get("scheduler.mixed_batches")),
                   chunked_prefill=bool(stack.get("scheduler.chunked_prefill")),
                   batch_wait_iters=balance or int(stack.get("scheduler.batch_wait_iters")),
                   batch_wait_ratio=float(stack.get("scheduler.batch_wait_tokens_ratio")),
                   batch_wait_prompts=math.ceil(ranks_h) if balance else 0,
                   ingress_s=float(stack.get("host.request_s")), ahead=bool(stack.get("host.overlap")),
                   frontend_token_s=float(stack.get("host.frontend_token_s"))
                   / max(int(stack.get("defaults.stream_interval")), 1),
                   recv_interval=max(int(stack.get("scheduler.recv_interval_iters")), 1),
                   max_prefill_tokens=int(stack.get("scheduler.max_prefill_tokens")) * attention_ranks,
                   prefix_caching=bool(stack.get("defaults.prefix_caching")))


DEFAULT_SCHEDULING = Scheduling()


__all__ = ["DEFAULT_SCHEDULING", "Scheduling"]
