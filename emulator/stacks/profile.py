"""A software stack as data: what a framework or serving engine does to the traced program, item by item.

A stack profile (`stack_profiles/<kind>/<name>.yaml`, documented in `stack_profiles/README.md`) states, per item,
a value and where it comes from: a `source` (documentation, code, a paper) or a `fit` (the data, the method and
the held-out error of a fit on measured runs). The engine reads the items through `StackProfile.get`; nothing in
code holds a stack's numbers.

Items (the schema; `KINDS` says which kind of stack has which):
- `fusion.families`: the non-GEMM kernel families the stack runs fused, one kernel per module region and phase
  (`engine.stack.fuse`): what the region reads from outside and writes for later use, its intermediates kept
  on chip. Empty for `eager`.
- `recipe.cast_bytes_per_element`: with fp8 (or another low precision), the bytes per element of a GEMM's
  activation operand that the recipe's cast kernels move (read 16-bit, write the fp8 copy and its transpose),
  less what fused producers (norm + quantize, SwiGLU + quantize) write directly (`engine.stack.low_precision_casts`).
- `recipe.low_precision_head`: under a low-precision recipe the LM head's GEMMs run in it too (the traced
  program's own rule); false: the vocabulary projection stays 16-bit, neither cast nor quantized, and a serving
  replica holds its weights 16-bit (`engine.stack.keep_head_dtype`).
- `fusion.gemm_groups`: the Linears that read one input (q, k, v; gate and up) run as one GEMM over their summed
  width in every pass: forward, input gradient (the adds of the members' input gradients gone) and weight gradient;
  LoRA adapters on them as one adapter (`engine.gemm_groups`).
- `moe.grouped_gemm`: an MoE block's experts run as one grouped GEMM per projection, with one permute and one
  un-permute kernel, instead of a loop of per-expert kernels (`engine.stack.group_experts`).
- `moe.expert_gemm_streams`: how the grouped expert GEMM runs: 0, one grouped kernel over all of a rank's experts
  (CUTLASS grouped GEMM, torch's grouped_mm); N, one library GEMM per expert, N of them at a time on N streams
  (Transformer Engine's multi-stream cuBLAS backend): ceil(experts / N) launches, each filling its waves with N
  experts' tiles only (`engine.stack.group_experts`).
- `moe.grouped_gemm_tile` (serving): per GEMM format, the [rows, columns] output tile of the engine's grouped expert
  GEMM where it is small enough that reloading the operands of every tile through the L2 bounds the kernel (Triton's
  fused MoE without a tuned config): an expert's rows are read once per column tile and its weights once per row
  tile, at the device's L2 bandwidth (`serving.attention_dp.grouped_gemm_excess_s`).
- `moe.token_dispatcher`: how a training run moves tokens to their experts: `alltoall` (one copy per routed
  expert) or `flex` (DeepEP / HybridEP: one copy per remote scale-up domain over the fabric, one per target rank
  inside; `cluster.network`'s `dispatch`).
- `recompute.selective`: what a plan's `recompute: selective` reruns in the backward (`cluster.recompute`):
  `attention_core` (Megatron-Core's default, its `core_attn`), a list of Megatron-Core's `recompute_modules`
  (`RECOMPUTE_MODULES`), or `every_other_mm` (torchtitan's per-op SAC).
- `efficiency.sustained_math`: per device family (`hopper`, `blackwell`, ...), the share of the calibrated GEMM
  and attention math rate a whole step sustains under this stack (microbenchmarks run short bursts at boost
  clock; a step runs at the power-limited clock, with the stack's kernel choices). A fit; the entry `"*"` states
  what transfers to families without one; 1 where neither exists.
- `efficiency.attention_kernel_rate`: the math rate of the fused attention kernel the stack's software picks over
  that of the kernel the calibration measured (1: the same kernel; FlashAttention-2 against cuDNN's on Hopper about
  0.6), on the attention family's forward and backward (`engine.stack.sustained`).
- `overlap.<class>`: the fraction of a collective class's time the stack runs concurrently with compute (0: all
  exposed; 1: hidden as far as the compute beside it lasts), for each of `OVERLAP_CLASSES`.
- `defaults.*`: what a user of the stack gets without asking (sequence parallelism with tp, the ZeRO stage of the
  distributed optimizer, KV-cache precision per weight precision, token budget, batch limit, KV memory fraction).
  The token budget and batch limit may differ by device, as engines size them by GPU memory: a map of memory tiers
  (GiB from which an entry holds, one of them 0) and device families (which take precedence), `count_for`.
- `comm.one_shot_allreduce_bytes`: all-reduces up to this size inside one scale-up domain run as the engine's
  one-shot kernel (each rank reads its peers' copies in one step) instead of NCCL's ring (serving engines' custom
  all-reduce); `comm.two_shot_allreduce_bytes`: those up to this size as its two-shot kernel (a reduce-scatter and
  an all-gather over the peer links, 2 (tp - 1) / tp payloads per rank), NCCL's ring above (or where faster);
  `comm.custom_allreduce_link_share`: the share of the links' bandwidth those kernels reach (measured: the kernels
  read and reduce their peers' buffers in place, below the links' rate).
- `comm.rank_skew_s`: the spread (standard deviation) of the ranks' arrival at a blocking collective of an
  iteration: every tensor-parallel all-reduce waits for the slowest of its tp ranks, E[max of tp standard
  normals] x this, on top of the collective's own time (a collective measured alone starts on
  ranks in step; in a model the ranks' kernels drift between collectives).
- `scheduler.reserve_output`: the share of each admitted request's remaining output tokens the engine keeps
  free in the KV cache before it admits another (1: no request is ever evicted; 0: admit on the prompt, preempt
  when the cache runs out). Requests wait in the queue instead, which is TTFT. `scheduler.mixed_batches`: whether
  an iteration carries prefill chunks and decodes together (chunked prefill piggybacked on decodes) or runs one
  or the other, prefill first, the decoding sequences waiting through it.
- `host.graph_scopes`, `host.op_dispatch_s`, `host.backward_dispatch_ratio` (training): the host's time to dispatch
  the ops outside CUDA graphs, per op of the traced program (views included: each is a Python-level call), and which
  parts of the step graphs capture (`cluster.host`); a stage's forward or backward takes the longer of its kernels
  and that host time.
- `host.*` (serving): scheduler time, CUDA graphs, the time per kernel inside a replayed graph (replacing the
  device profile's launch overhead), the host's launch cost per kernel without graphs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STACK_KINDS = ("training", "serving")
OVERLAP_CLASSES = ("dp_grad_reduce", "dp_param_gather", "tp", "pp", "ep", "cp")

# item -> (value kind, the stack kinds that may set it, the default when a profile leaves it out, what it means)
ITEMS: dict[str, tuple[str, tuple[str, ...], Any, str]] = {
    "platform.vendors": ("vendors", STACK_KINDS, (), "device vendors whose chips run the stack (empty: any)"),
    "fusion.families": ("families", STACK_KINDS, (), "non-GEMM families fused per module region and phase"),
    "fusion.gemm_groups": ("bool", STACK_KINDS, False,
                           "sibling Linears reading one input run as one GEMM per pass (q, k, v; gate and up), their "
                           "LoRA adapters as one adapter"),
    "recipe.cast_bytes_per_element": ("bytes", ("training",), 0.0,
                                      "bytes a low-precision recipe's casts move per GEMM activation element"),
    "moe.grouped_gemm": ("bool", STACK_KINDS, False, "MoE experts run as grouped kernels, one launch per block"),
    "moe.expert_gemm_streams": ("streams", STACK_KINDS, 0,
                                "0: one grouped expert GEMM over a rank's experts; N: one GEMM per expert, N at a "
                                "time on N streams"),
    "moe.token_dispatcher": ("dispatcher", ("training",), "alltoall",
                             "how expert-parallel tokens move: alltoall, one copy per routed expert; flex (DeepEP, "
                             "HybridEP), one copy per remote domain and target rank"),
    "recompute.selective": ("selective_policy", ("training",), "attention_core",
                            "what `recompute: selective` reruns in the backward: attention_core (Megatron-Core's "
                            "default; free with fused attention), a list of Megatron-Core's recompute_modules, or "
                            "every_other_mm (torchtitan's per-op policy)"),
    "moe.grouped_gemm_time_scale": ("factor", ("serving",), 1.0,
                                    "the engine's grouped expert GEMM time over the calibrated grouped GEMM's"),
    "moe.grouped_gemm_tile": ("tile_map", ("serving",), {},
                              "per GEMM format, the output tile [rows, columns] of the engine's grouped expert GEMM: "
                              "each tile reloads its operands through the L2, at the device's L2 bandwidth (empty: "
                              "the calibrated GEMM's tiles, their reloads hidden)"),
    "moe.fused_permute": ("bool", ("serving",), False,
                          "the fused MoE kernel gathers the routed rows inside its first grouped GEMM and sums each "
                          "token's rows in one reduction (no row gather, no scatter-add)"),
    "recipe.low_precision_head": ("bool", STACK_KINDS, True,
                                  "the LM head's GEMMs run in the low precision too (false: they stay 16-bit, as "
                                  "the body's Linears alone are quantized)"),
    "recipe.low_precision_gemm_shape": ("bool", STACK_KINDS, False,
                                        "low-precision GEMMs follow the 16-bit GEMM's shape response (tiles picked per "
                                        "M bucket), with their own large-GEMM math rate"),
    "recipe.weight_only_widen_ops": ("ops", ("serving",), 0.0,
                                     "vector operations the engine's weight-only (w4a16) GEMMs spend widening each "
                                     "packed weight, once per row tile of their output"),
    "recipe.weight_only_math_share": ("rate", ("serving",), 1.0, "share of the 16-bit GEMM's math efficiency the "
                                      "engine's weight-only (w4a16) GEMMs reach"),
    "efficiency.sustained_math": ("family_map", STACK_KINDS, {},
                                  "share of the calibrated GEMM and attention math rate a step sustains, per "
                                  "device family"),
    "efficiency.attention_kernel_rate": ("rate", ("training",), 1.0,
                                         "the fused attention kernel the stack runs, its math rate over the "
                                         "calibrated one's (FlashAttention-2 where the calibration measured cuDNN's)"),
    **{f"overlap.{c}": ("fraction", STACK_KINDS, 0.0, f"share of {c} collectives run beside compute")
       for c in OVERLAP_CLASSES},
    "defaults.sequence_parallel": ("bool", ("training",), False, "sequence parallelism whenever tp > 1"),
    "defaults.ep_overlap": ("bool", ("training",), True,
                            "the run overlaps its expert-parallel all-to-all with compute (then `overlap.ep` of it "
                            "hides; off: all of it is exposed)"),
    "defaults.zero": ("zero", ("training",), 0, "ZeRO stage of the default optimizer (1: distributed optimizer)"),
    "defaults.kv_precision": ("kv_map", ("serving",), {}, "KV-cache precision per weight precision"),
    "defaults.max_batch_tokens": ("count", ("serving",), 8192, "token budget of one iteration"),
    "defaults.max_batch_size": ("count", ("serving",), 2048, "sequences one iteration holds at most"),
    "defaults.stream_interval": ("stream_tokens", ("serving",), 1,
                                 "output tokens per event the API server streams to a client (trtllm-serve's "
                                 "stream_interval, SGLang's --stream-interval), which share host.frontend_token_s"),
    "defaults.kv_memory_fraction": ("fraction", ("serving",), 0.9, "share of free memory given to the KV cache"),
    "defaults.kv_memory_of_total": ("bool", ("serving",), False,
                                    "the fraction is of the whole memory (weights inside it), not of what is free"),
    "defaults.kv_memory_reserve_bytes": ("bytes_count", ("serving",), 0.0,
                                         "memory held back from the weights and KV pool whatever the device's size "
                                         "(prefill activations, CUDA-graph buffers); replaces the workspace estimate"),
    "defaults.prefix_caching": ("bool", ("serving",), False,
                                "a prompt's KV blocks already in the cache (a shared prefix, a repeated prompt) are "
                                "reused, not recomputed"),
    "scheduler.reserve_output": ("fraction", ("serving",), 0.0,
                                 "share of a request's remaining output tokens kept free in the KV cache at admission"),
    "scheduler.mixed_batches": ("bool", ("serving",), True,
                                "prefill chunks and decodes share an iteration; false: an iteration runs one or the "
                                "other, prefill first"),
    "scheduler.chunked_prefill": ("bool", ("serving",), True,
                                  "a prompt longer than what is left of an iteration's token budget is split over "
                                  "iterations; false: prompts run whole, in order (one that does not fit waits for "
                                  "the next iteration, and one alone may exceed the budget)"),
    "scheduler.batch_wait_iters": ("iterations", ("serving",), 0,
                                   "batch waiting: iterations a prompt may wait for more prompts while decodes run "
                                   "and the iteration is short of the token ratio (0: never waits)"),
    "scheduler.adp_balance_iters": ("iterations", ("serving",), 0,
                                    "attention data parallelism: prompts wait, up to this many iterations, until "
                                    "every attention rank has one (0: they never wait)"),
    "scheduler.recv_interval_iters": ("iterations", ("serving",), 1,
                                      "while only decodes run, the scheduler takes new requests every this many "
                                      "iterations (after prompts, or idle, at once)"),
    "scheduler.max_prefill_tokens": ("tokens", ("serving",), 0,
                                     "prompt tokens new requests may bring into one iteration, less its decoding "
                                     "sequences when mixed: a prompt joins whole or waits, the first always (0: none)"),
    "scheduler.batch_wait_tokens_ratio": ("fraction", ("serving",), 0.0,
                                          "batch waiting: share of the token budget an iteration must reach for its "
                                          "prompts to run at once"),
    "host.scheduler_overhead_s": ("seconds", ("serving",), 1e-3, "host time per iteration not hidden"),
    "host.per_token_s": ("seconds", ("serving",), 0.0,
                         "host time per token an iteration produces in the engine's loop (per-request sampling, stop "
                         "checks, handing the token on)"),
    "host.frontend_token_s": ("seconds", ("serving",), 0.0,
                              "the API server's serial time per output token it streams to a client (detokenize, "
                              "frame, write): past its rate clients see tokens late (0: never binds)"),
    "host.request_s": ("seconds", ("serving",), 0.0,
                       "host time from a request's send to the engine's scheduler (the API server parses, tokenizes "
                       "and routes it): on its TTFT and latency, not on the iterations"),
    "host.overlap": ("bool", ("serving",), False,
                     "the engine prepares iteration i + 1 on the host while the device runs i: an iteration takes the "
                     "longer of its host and device time, not their sum, and a request that arrives during an "
                     "iteration joins the one after next"),
    "comm.one_shot_allreduce_bytes": ("bytes_count", ("serving",), 0.0,
                                      "largest all-reduce the engine runs as a one-shot kernel in a scale-up domain"),
    "comm.two_shot_allreduce_bytes": ("bytes_count", ("serving",), 0.0,
                                      "largest all-reduce the engine runs as a two-shot kernel (reduce-scatter then "
                                      "all-gather over peer links) in a scale-up domain; NCCL above"),
    "comm.custom_allreduce_link_share": ("fraction", ("serving",), 1.0,
                                         "share of the scale-up links' bandwidth the engine's one-shot and two-shot "
                                         "all-reduce kernels reach"),
    "comm.rank_skew_s": ("seconds", ("serving",), 0.0,
                         "spread of the ranks' arrival at a blocking collective: each one waits for the slowest rank"),
    "host.graph_scopes": ("graph_scopes", ("training",), (),
                          "the parts of a training step replayed from CUDA graphs (Megatron-Core's cuda_graph_scope; "
                          "layer: every layer; full_iteration: the whole step): their ops cost the host nothing"),
    "host.op_dispatch_s": ("seconds", ("training",), 0.0,
                           "host time per op of the traced forward outside CUDA graphs (Python, framework, launch): a "
                           "pass of a stage takes the longer of its kernels and its host time"),
    "host.backward_dispatch_ratio": ("factor", ("training",), 1.0,
                                     "host time per op of the backward over one of the forward"),
    "host.cuda_graphs": ("bool", ("serving",), True, "decode iterations replay CUDA graphs"),
    "host.kernel_launch_s": ("seconds", ("serving",), 0.0, "host time per kernel without CUDA graphs"),
    "host.prompt_launch_s": ("seconds", ("serving",), 0.0,
                             "host time per kernel of an iteration that carries prompt tokens, which the engine "
                             "launches kernel by kernel where it replays CUDA graphs of decode-only ones (0: its "
                             "graphs cover those iterations too)"),
    "host.prompt_layer_s": ("seconds", ("serving",), 0.0,
                            "host time per model layer that an iteration carrying prompt tokens adds beside the "
                            "device's, not hidden: preparing the prompt's inputs and dispatching a forward the engine "
                            "does not replay from a CUDA graph"),
    "host.prompt_moe_layer_s": ("family_seconds", ("serving",), {},
                                "per device family, the host time per mixture-of-experts layer that an iteration "
                                "carrying prompt tokens adds beside host.prompt_layer_s: the engine's MoE layer "
                                "routing, configuring and launching the family's MoE kernels from Python outside "
                                "the graphs (`\"*\"`: families without their own entry; 0 where neither)"),
    "host.graph_kernel_gap_s": ("seconds", ("serving",), 4.0e-6,
                                "fixed device time per kernel when a CUDA graph replays the iteration"),
}


@dataclass(frozen=True, slots=True)
class Item:
    value: Any
    source: str  # a citation, or the fit record's path and summary
    fitted: bool = False  # `fit:` (measured runs decided it) rather than `source:` (a document states it)


@dataclass(frozen=True, slots=True, kw_only=True)
class StackProfile:
    """A framework (`kind: training`) or serving engine (`kind: serving`) with its sourced items."""

    name: str
    kind: str
    title: str
    versions: str  # the version range the items describe
    items: Mapping[str, Item] = field(default_factory=dict)
    path: str = ""

    def get(self, key: str) -> Any:
        """The item's value, or the schema's default when the profile leaves it out."""
        if key not in ITEMS:
            raise KeyError(key)
        item = self.items.get(key)
        return item.value if item is not None else ITEMS[key][2]

    def with_settings(self, settings: tuple[tuple[str, Any], ...]) -> StackProfile:
        """The same stack with a run's own item values (a scenario's `engine_settings` or `framework_settings`)."""
        if not settings:
            return self
        mine = {k: Item(v, "the scenario's own setting (engine_settings or framework_settings)") for k, v in settings}
        return dataclasses.replace(self, items={**self.items, **mine})

    def source(self, key: str) -> str:
        item = self.items.get(key)
        return item.source if item is not None else "schema default (stack_profiles/README.md)"

    def fitted(self, key: str) -> bool:
        item = self.items.get(key)
        return item is not None and item.fitted

    def overlap(self, klass: str) -> float:
        return float(self.get(f"overlap.{klass}"))

    def count_for(self, key: str, family: str, memory_bytes: float) -> int:
        """A count item on a device: the value, or of a per-device map the device family's entry, else the entry of
        the largest memory tier (GiB) the device reaches (engines that size their defaults by GPU memory)."""
        value = self.get(key)
        if not isinstance(value, Mapping):
            return int(value)
        if family in value:
            return int(value[family])
        gib = memory_bytes / 2**30
        return int(value[max(k for k in value if not isinstance(k, str) and k <= gib)])

    def attention_kernel_rate(self) -> float:
        """`efficiency.attention_kernel_rate` (1, the schema's default, for a serving engine, which cannot set it)."""
        return float(self.get("efficiency.attention_kernel_rate"))

    def _for_family(self, key: str, device_family: str, otherwise: float) -> float:
        """A per-family item's value for a device family: its own entry, else the `"*"` entry, else `otherwise`."""
        values = self.get(key)
        return float(values.get(device_family, values.get("*", otherwise)))

    def sustained_math(self, device_family: str) -> float:
        """`efficiency.sustained_math` of a device family: its own entry, else the `"*"` entry (what transfers to
        families without a fit), else 1."""
        return self._for_family("efficiency.sustained_math", device_family, 1.0)

    def prompt_moe_layer_s(self, device_family: str) -> float:
        """`host.prompt_moe_layer_s` of a device family: its own entry, else the `"*"` entry, else 0 (the engine's
        MoE kernels on that family add no host time the other items do not hold)."""
        return self._for_family("host.prompt_moe_layer_s", device_family, 0.0)

    @property
    def fused_families(self) -> tuple[str, ...]:
        return tuple(self.get("fusion.families"))

    @property
    def label(self) -> str:
        """What a prediction names: the stack and its version range."""
        return f"{self.name} ({self.versions})"

    def as_dict(self) -> dict[str, Any]:
        """The `stack` of `--json`: name, versions and every item with its value and source."""
        values = {k: {"value": _plain(self.get(k)), ("fit" if self.fitted(k) else "source"): self.source(k)}
                  for k in ITEMS if self.kind in ITEMS[k][1]}
        return {"name": self.name, "kind": self.kind, "title": self.title, "versions": self.versions,
                "items": values}


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, Mapping):
        return dict(v)
    return v
