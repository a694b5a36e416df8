"""The LM head under a low-precision recipe: 16-bit in the stacks that leave it out (`recipe.low_precision_head`)."""

from __future__ import annotations

import dataclasses

import pytest

from emulator.cluster.plan import Plan
from emulator.cluster.shard import rank_program
from emulator.engine.calibration import efficiency_for
from emulator.engine.memory import serving_weight_bytes
from emulator.engine.predict import time_trace
from emulator.engine.stack import HEAD_MODULE, keep_head_dtype, low_precision_casts
from emulator.engine.trace import trace_workload
from emulator.hardware import load_device, load_system
from emulator.precision import KEEP_DTYPE
from emulator.serving.replica import build_replica
from emulator.stacks import load_stack
from emulator.workloads.presets import preset

MODEL = dataclasses.replace(preset("llama3-8b"), num_layers=2)
H100 = load_device("h100-sxm")


def _head_s(trace_fp8: object, precision: str) -> float:
    timing = time_trace(trace_fp8, H100, efficiency_for(H100), precision)  # type: ignore[arg-type]
    return sum(k.time_s for k in timing.kernels if k.module == HEAD_MODULE and k.family == "gemm")


def test_the_head_keeps_its_dtype_and_takes_no_cast() -> None:
    """Marked, the head's GEMMs run as traced under fp8 (the same time as in bf16) and get no cast kernel; every
    other weight GEMM still does."""
    trace = trace_workload(MODEL, "train", 1, 256, 0, "bf16")
    kept = keep_head_dtype(trace)
    heads = [c for c in kept.calls if c.module == HEAD_MODULE and c.family == "gemm"]
    assert heads and all(KEEP_DTYPE in c.params for c in heads)
    assert all(KEEP_DTYPE not in c.params for c in kept.calls if c.module != HEAD_MODULE)
    assert _head_s(kept, "fp8") == pytest.approx(_head_s(trace, "bf16"))
    assert _head_s(trace, "fp8") < _head_s(trace, "bf16")
    casts = [c for c in low_precision_casts(kept, "fp8", 3.0).calls if c.op == "cast_fp8"]
    weight_gemms = [c for c in trace.calls if c.family == "gemm" and c.weight_bytes > 0]
    head_weight_gemms = [c for c in heads if c.weight_bytes > 0]  # the weight-gradient GEMM takes no weight
    assert len(casts) == len(weight_gemms) - len(head_weight_gemms) > 0
    assert all(c.module != HEAD_MODULE for c in casts)


def test_training_stacks_run_the_head_16_bit() -> None:
    """Megatron-Core and torchtitan leave the vocabulary projection out of their fp8 recipes; the eager program
    (the traced rule) runs it in fp8."""
    plan = Plan(seq_len=1024, global_batch_size=1)
    for name, kept in (("megatron-core", True), ("torchtitan", True), ("eager", False)):
        prog = rank_program(MODEL, plan, "fp8", stack=load_stack(name, "training"))
        heads = [c for c in prog.compute if c.module == HEAD_MODULE and c.family == "gemm"]
        assert heads and all((KEEP_DTYPE in c.params) == kept for c in heads), name


def test_a_low_precision_replica_holds_its_embedding_and_head_16_bit() -> None:
    """fp8 weights: every Linear at 1 byte, the embedding table at 2 and, where the stack leaves the head out,
    the untied head at 2; bf16 weights are all 2 bytes either way."""
    table = MODEL.vocab_size * MODEL.hidden_size
    quantized = MODEL.num_params() * 1.0
    assert serving_weight_bytes(MODEL, "fp8") == pytest.approx(quantized + table)
    assert serving_weight_bytes(MODEL, "fp8", low_precision_head=False) == pytest.approx(quantized + 2 * table)
    assert serving_weight_bytes(MODEL, "fp8", 2, low_precision_head=False) == pytest.approx(
        (quantized + 2 * table) / 2)
    assert serving_weight_bytes(MODEL, "bf16", low_precision_head=False) == serving_weight_bytes(MODEL, "bf16")
    tied = dataclasses.replace(MODEL, tie_embeddings=True)
    assert serving_weight_bytes(tied, "fp8", low_precision_head=False) == pytest.approx(
        tied.num_params() + table)


def test_an_engine_that_leaves_the_head_out_decodes_slower_with_more_weights() -> None:
    """TensorRT-LLM's fp8 checkpoints keep lm_head bf16: its decode step streams the head at 2 bytes and its
    replica holds it so; turned on, the head is fp8 like the rest."""
    system = load_system("hgx-h100")
    table = efficiency_for(system.device)
    out = {}
    for low in (False, True):
        out[low] = build_replica(MODEL, system.device, system, table, precision="fp8", kv_precision="fp8",
                                 settings=(("recipe.low_precision_head", low),), engine="trtllm")
    assert load_stack("trtllm", "serving").get("recipe.low_precision_head") is False
    head_bytes = MODEL.vocab_size * MODEL.hidden_size
    assert out[False].weight_bytes - out[True].weight_bytes == pytest.approx(head_bytes)
    assert out[False].step.decode_s(16) > out[True].step.decode_s(16)
