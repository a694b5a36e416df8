"""The kinds of value a stack item takes (`profile.ITEMS` names each item's kind) and the check of one value: what a
stack profile's YAML may write for it, and the one-paragraph error naming the fix when it writes something else."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emulator.errors import EmulatorError
from emulator.precision import KV_PRECISIONS, SERVE_PRECISIONS

FUSIBLE_FAMILIES = ("elementwise", "copy", "reduction", "softmax", "norm")
DISPATCHERS = ("alltoall", "flex")  # Megatron-Core's moe_token_dispatcher_type values the emulator models
SELECTIVE_POLICIES = ("attention_core", "every_other_mm")  # what `recompute: selective` reruns (cluster.recompute)
# Megatron-Core's recompute_modules (TransformerConfig): a policy of their own, as a list (cluster.recompute)
RECOMPUTE_MODULES = ("core_attn", "layernorm", "mla_up_proj", "moe_act", "mlp", "moe", "shared_experts")
# Megatron-Core's cuda_graph_scope values (transformer_engine graphs), `layer` for its per-layer graphs
# (enable_cuda_graph / cuda_graph_impl local) and `full_iteration` for a whole step captured (cluster.host)
GRAPH_SCOPES = ("attn", "mlp", "moe", "moe_router", "moe_preprocess", "layer", "full_iteration")

# List item kinds whose entries come from a fixed set: (the set, what its entries are, the fix to print).
LIST_KINDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "graph_scopes": (GRAPH_SCOPES, "CUDA-graph scopes", "e.g. [attn, moe_router, moe_preprocess], or [] for none."),
    "families": (FUSIBLE_FAMILIES, "kernel families", "list only those."),
}
TILE_FORMATS = ("bf16", "fp16", "fp8", "fp4")  # the GEMM formats a tile map may name (a kernel's run dtype)

# Numeric item kinds that take a number from 0 to a bound: (what it is, the bound, as written, an example).
RANGES: dict[str, tuple[str, float, str, str]] = {
    "fraction": ("a number", 1.0, "1", "0.9"),
    "seconds": ("seconds", 1.0, "1", "0.001 for a millisecond"),
    "bytes": ("bytes per element", 64.0, "64", "3.0"),
    "bytes_count": ("a size in bytes", 2.0**40, "2**40", "524288"),
    "factor": ("a factor", 10.0, "10", "1.25"),
    "ops": ("operations per element", 256.0, "256", "16"),
}
# Item kinds that map device families (or "*", the rest) to a number in a range: (what the numbers are, the range,
# as written, an example).
FAMILY_MAPS: dict[str, tuple[str, float, float, str, str]] = {
    "family_map": ("factors", 0.1, 1.5, "0.1 to 1.5", "{hopper: 0.85}"),
    "family_seconds": ("seconds", 0.0, 1.0, "0 to 1", "{hopper: 8.0e-4}"),
}
# Whole-number item kinds from 0 to a bound: (what is counted, how 0 reads, the bound, an example).
WHOLE_RANGES: dict[str, tuple[str, str, int, str]] = {
    "streams": ("streams", "0 (one grouped kernel)", 64, "4"),
    "iterations": ("iterations", "0", 10_000, "20"),
    "tokens": ("tokens", "0 (no cap)", 1 << 24, "16384"),
    "stream_tokens": ("tokens per streamed event", "0 (as 1: an event per token)", 4096, "10"),
}


def check_value(kind: str, value: Any, fail: Any) -> Any:
    """The value of an item of `kind`, or `fail(message)` (which raises) when it is not one."""
    if kind == "bool":
        if not isinstance(value, bool):
            fail(f"must be true or false, got {value!r}. Fix: write true or false.")
        return value
    if kind == "dispatcher":
        if value not in DISPATCHERS:
            fail(f"must be one of {', '.join(DISPATCHERS)}, got {value!r}. Fix: write alltoall (one copy of a token "
                 "per routed expert) or flex (DeepEP or HybridEP).")
        return str(value)
    if kind == "selective_policy":
        if isinstance(value, list) and value and all(v in RECOMPUTE_MODULES for v in value):
            return tuple(sorted(set(value), key=RECOMPUTE_MODULES.index))
        if isinstance(value, list) or value not in SELECTIVE_POLICIES:
            fail(f"must be one of {', '.join(SELECTIVE_POLICIES)} or a list of Megatron-Core's recompute modules out "
                 f"of {', '.join(RECOMPUTE_MODULES)}, got {value!r}. Fix: write attention_core (Megatron-Core's "
                 "default), e.g. [mla_up_proj, moe_act], or every_other_mm (torchtitan's per-op SAC).")
        return str(value)
    if kind in LIST_KINDS:
        allowed, what, fix = LIST_KINDS[kind]
        if not isinstance(value, list) or any(v not in allowed for v in value):
            fail(f"must be a list of {what} out of {', '.join(allowed)}, got {value!r}. Fix: {fix}")
        return tuple(value)
    if kind == "vendors":
        if not isinstance(value, list) or not value or any(not isinstance(v, str) or not v.strip() for v in value):
            fail(f"must be a list of device vendors (a device profile's `vendor`), got {value!r}. Fix: e.g. [nvidia], "
                 "or leave the item out for any vendor.")
        return tuple(value)
    if kind == "kv_map":
        if not isinstance(value, Mapping) or any(k not in SERVE_PRECISIONS or v not in KV_PRECISIONS
                                                 for k, v in value.items()):
            fail(f"must map weight precisions ({', '.join(SERVE_PRECISIONS)}) to KV precisions "
                 f"({', '.join(KV_PRECISIONS)}), got {value!r}. Fix: e.g. {{fp8: fp8, bf16: bf16}}.")
        return dict(value)
    if kind == "tile_map":
        if not isinstance(value, Mapping) or any(
                k not in TILE_FORMATS or not isinstance(v, list) or len(v) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1024 for n in v)
                for k, v in value.items()):
            fail(f"must map GEMM formats ({', '.join(TILE_FORMATS)}) to an output tile [rows, columns] of whole "
                 f"numbers from 1 to 1024, got {value!r}. Fix: e.g. {{bf16: [64, 64], fp8: [64, 128]}}, or {{}}.")
        return {str(k): (int(v[0]), int(v[1])) for k, v in value.items()}
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "zero":
        if not numeric or value not in (0, 1, 2, 3):
            fail(f"must be a ZeRO stage 0-3, got {value!r}. Fix: write 0, 1, 2 or 3.")
        return int(value)
    if kind == "count":
        if isinstance(value, Mapping):  # per device: memory tiers (GiB from which it holds) and device families
            counts = {k: check_value("count", v, fail) for k, v in value.items()}
            if 0 not in counts or any(isinstance(k, bool) or not (isinstance(k, str) or isinstance(k, (int, float))
                                                                  and k >= 0) for k in counts):
                fail(f"must map device memory in GiB (numbers, one of them 0) or device families to whole numbers, "
                     f"got {value!r}. Fix: e.g. {{0: 2048, 70: 8192}}.")
            return counts
        if not numeric or value < 1 or not float(value).is_integer():
            fail(f"must be a whole number >= 1, got {value!r}. Fix: e.g. 8192.")
        return int(value)
    if kind in WHOLE_RANGES:
        what, zero, bound, example = WHOLE_RANGES[kind]
        if not numeric or not 0 <= value <= bound or not float(value).is_integer():
            fail(f"must be a whole number of {what} from {zero} to {bound}, got {value!r}. Fix: e.g. {example}.")
        return int(value)
    if kind in FAMILY_MAPS:
        what, low, high, shown, example = FAMILY_MAPS[kind]
        if not isinstance(value, Mapping) or any(not isinstance(k, str) or isinstance(v, bool)
                                                 or not isinstance(v, (int, float)) or not low <= v <= high
                                                 for k, v in value.items()):
            fail(f"must map device families to {what} from {shown}, got {value!r}. Fix: e.g. {example}.")
        return {str(k): float(v) for k, v in value.items()}
    if kind == "rate":
        if not numeric or not 0.0 < value <= 4.0:
            fail(f"must be a rate above 0 and at most 4 (1: the calibrated kernel's), got {value!r}. Fix: e.g. 0.6.")
        return float(value)
    if kind in RANGES:
        what, top, shown, example = RANGES[kind]
        if not numeric or not 0.0 <= value <= top:
            fail(f"must be {what} from 0 to {shown}, got {value!r}. Fix: e.g. {example}.")
        return float(value)
    raise EmulatorError(f"unknown item kind {kind!r}")  # a schema bug, not a user's
