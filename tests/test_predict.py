"""Predictions: every shipped device predicts every preset that fits it; the roofline behaves like one."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.engine.efficiency import SPEC_DEFAULTS
from emulator.engine.predict import predict, predict_batch
from emulator.engine.roofline import call_terms, kernel_time, wave_efficiency
from emulator.hardware import list_devices, load_device
from emulator.scenario import Inference, Scenario, Training
from emulator.stacks import load_stack
from emulator.workloads.config import DLRMConfig
from emulator.workloads.presets import list_models, preset
from kernels import Cost, KernelCall


def _scenario(model: str, device: str, **inference: int | str) -> Scenario:
    m = preset(model)
    settings_ = dict(input_tokens=1 if isinstance(m, DLRMConfig) else 256, output_tokens=16, batch_size=1,
                     precision="bf16")
    settings_.update(inference)
    return Scenario(path="<test>", model=m, device=load_device(device), system=None, num_devices=1,
                    inference=Inference(**settings_))  # type: ignore[arg-type]


@pytest.mark.parametrize("device", list_devices())
def test_every_device_predicts_every_preset_that_fits(device: str) -> None:
    """Each shipped device, the custom accelerator included, predicts inference of every preset that fits it."""
    predicted = 0
    for model in list_models():
        out = predict(_scenario(model, device)).to_json()
        if not out["fits"]:
            continue
        predicted += 1
        assert out["step_time_s"] > 0 and math.isfinite(out["step_time_s"])
        assert out["tokens_per_s"] == out["tokens_per_step"] / out["step_time_s"] > 0
        assert not out["unknown_ops"], (model, out["unknown_ops"])
        assert out["provenance"] in ("spec", "calibrated", "transferred")
    assert predicted >= 2, f"{device} fits too few presets"


def test_the_batch_view_times_the_kernels_the_serving_engine_runs() -> None:
    """With a serving engine the one-batch view runs its fused kernels on CUDA graphs (what the serving model's steps
    time): fewer kernels, less time off the GEMMs than the eager program, and the same model FLOPs; the eager engine's
    view is the eager program itself (what `emulator run` measures)."""
    s = _scenario("llama3-8b", "h100-sxm", batch_size=8)
    eager = predict_batch(s, SPEC_DEFAULTS)
    trt = predict_batch(s, SPEC_DEFAULTS, load_stack("trtllm", "serving"))
    assert trt.flops_per_step == eager.flops_per_step
    for phase in ("prefill", "decode"):
        ours, theirs = trt.phases[phase], eager.phases[phase]
        assert sum(k.count for k in ours.kernels) < sum(k.count for k in theirs.kernels)
        assert any(k.op.startswith("fused(") for k in ours.kernels)
        assert ours.total_s < theirs.total_s
    assert trt.kernels["gemm"].time_s == pytest.approx(eager.kernels["gemm"].time_s, rel=0.1)
    off_gemm = sum(k.time_s for f, k in trt.kernels.items() if f != "gemm")
    assert off_gemm < sum(k.time_s for f, k in eager.kernels.items() if f != "gemm")
    assert predict_batch(s, SPEC_DEFAULTS, load_stack("eager", "serving")).step_time_s == eager.step_time_s


def test_training_prediction_is_compute_bound_with_plausible_mfu() -> None:
    """A large dense training step on H100 is compute-bound with MFU between 30% and 80% (spec defaults)."""
    s = Scenario(path="<test>", model=preset("llama3-8b"), device=load_device("h100-sxm"), system=None, num_devices=1,
                 training=Training(seq_len=4096, global_batch_size=2))
    out = predict(s, SPEC_DEFAULTS).to_json()
    assert out["bound"] == "compute"
    assert 0.3 < out["mfu"] < 0.8
    assert out["memory_breakdown"]["optimizer_states"] == pytest.approx(12 * preset("llama3-8b").num_params())


def test_decode_is_memory_bound_and_faster_on_more_bandwidth() -> None:
    """Decode is memory-bound; the H200's extra bandwidth makes it faster than the H100 at equal peaks."""
    h100 = predict(_scenario("llama3-8b", "h100-sxm", batch_size=8), SPEC_DEFAULTS)
    h200 = predict(_scenario("llama3-8b", "h200-sxm", batch_size=8), SPEC_DEFAULTS)
    assert h100.phases["decode"].bound in ("memory", "overhead")
    assert h200.phases["decode"].total_s < h100.phases["decode"].total_s


def test_low_precision_weights_speed_up_decode() -> None:
    """fp8 weights halve the bytes decode streams, so decode gets faster on a chip with fp8; the embedding table
    stays 16-bit (quantized checkpoints convert Linears only)."""
    bf16 = predict(_scenario("llama3-8b", "h100-sxm", batch_size=4), SPEC_DEFAULTS)
    fp8 = predict(_scenario("llama3-8b", "h100-sxm", batch_size=4, precision="fp8"), SPEC_DEFAULTS)
    assert fp8.phases["decode"].total_s < 0.8 * bf16.phases["decode"].total_s
    model = preset("llama3-8b")
    table = model.vocab_size * model.hidden_size
    assert fp8.memory.parts["weights"] == pytest.approx((bf16.memory.parts["weights"] + 2 * table) / 2)


def test_weight_only_four_bit_streams_packed_weights_with_16_bit_math() -> None:
    """w4a16 on a chip without 4-bit matrix units: a decode GEMM reads its weights at 4.25 bits (4 bits and an 8-bit
    scale per 32), the rest of its traffic and its FLOPs unchanged; the replica holds 0.53 bytes per weight (the
    embedding table 2)."""
    w = 64e6  # a 4096 x 8192 bf16 weight
    call = KernelCall(op="mm", family="gemm", dtype="bf16", shapes=((8, 4096), (4096, 8192)),
                      cost=Cost(matrix_flops=2 * 8 * 4096 * 8192, bytes_read=w + 65536, bytes_written=131072),
                      weight_bytes=w)
    bf16 = kernel_time(call, load_device("h100-sxm"), SPEC_DEFAULTS)
    packed = kernel_time(call, load_device("h100-sxm"), SPEC_DEFAULTS, "w4a16")
    terms = call_terms(call, load_device("h100-sxm"), SPEC_DEFAULTS, "w4a16")
    assert terms.call.weight_bytes == pytest.approx(w * (0.5 + 1 / 32) / 2)
    assert terms.call.cost.bytes_read == pytest.approx(w * (0.5 + 1 / 32) / 2 + 65536)
    assert terms.call.dtype == "bf16" and terms.call.cost.matrix_flops == call.cost.matrix_flops
    assert packed.time_s < 0.4 * bf16.time_s  # memory bound: about a quarter of the bytes
    bf16_run = predict(_scenario("llama3-8b", "h100-sxm", batch_size=4), SPEC_DEFAULTS)
    w4 = predict(_scenario("llama3-8b", "h100-sxm", batch_size=4, precision="w4a16"), SPEC_DEFAULTS)
    packed_width, table = 0.5 + 1 / 32, preset("llama3-8b").vocab_size * preset("llama3-8b").hidden_size
    assert w4.memory.parts["weights"] == pytest.approx(  # the embedding table stays 16-bit
        bf16_run.memory.parts["weights"] * packed_width / 2 + table * (2 - packed_width))


def test_fp4_gemms_stream_their_block_scales() -> None:
    """fp4 is NVFP4: a GEMM on a chip with fp4 units reads its operands at 4 bits plus an 8-bit scale per 16 values
    (0.5625 bytes, against fp8's 1), its FLOPs unchanged, and the replica holds its weights at 0.5625 bytes."""
    w = 64e6  # a 4096 x 8192 bf16 weight
    call = KernelCall(op="mm", family="gemm", dtype="bf16", shapes=((8, 4096), (4096, 8192)),
                      cost=Cost(matrix_flops=2 * 8 * 4096 * 8192, bytes_read=w + 65536, bytes_written=131072),
                      weight_bytes=w)
    b200 = load_device("b200")
    fp4, fp8 = (call_terms(call, b200, SPEC_DEFAULTS, p).call for p in ("fp4", "fp8"))
    assert fp4.dtype == "fp4" and fp4.cost.matrix_flops == call.cost.matrix_flops
    assert fp4.weight_bytes == pytest.approx(w * 0.5625 / 2)
    assert fp4.cost.bytes_read == pytest.approx((w + 65536) * 0.5625 / 2)
    assert fp8.weight_bytes == pytest.approx(w / 2)
    bf16_run = predict(_scenario("llama3-8b", "b200", batch_size=4), SPEC_DEFAULTS)
    fp4_run = predict(_scenario("llama3-8b", "b200", batch_size=4, precision="fp4"), SPEC_DEFAULTS)
    table = preset("llama3-8b").vocab_size * preset("llama3-8b").hidden_size
    assert fp4_run.memory.parts["weights"] == pytest.approx(  # the embedding table stays 16-bit
        bf16_run.memory.parts["weights"] * 0.5625 / 2 + table * (2 - 0.5625))


def test_sram_tier_makes_small_working_sets_faster_on_the_custom_accelerator() -> None:
    """A transient working set that fits MTIA's SRAM streams at SRAM bandwidth, not LPDDR bandwidth."""
    mtia = load_device("mtia-v2")
    small = KernelCall(family="elementwise", op="aten.add", shapes=((1024, 1024),), dtype="bf16",
                       cost=Cost(vector_flops=2**20, bytes_read=4 * 2**20, bytes_written=2 * 2**20))
    big = dataclasses.replace(small, cost=small.cost * 1000)
    t_small = kernel_time(small, mtia, SPEC_DEFAULTS)
    t_big = kernel_time(big, mtia, SPEC_DEFAULTS)
    sram = next(t for t in mtia.memory if t.kind == "sram")
    assert t_small.t_mem_s == pytest.approx(small.cost.bytes / (sram.bandwidth_bytes_per_s * 0.85))
    assert t_big.t_mem_s == pytest.approx(big.cost.bytes / (mtia.memory_bandwidth_bytes_per_s * 0.85))
    # Weights always stream from main memory, even when they would fit in SRAM.
    weights = dataclasses.replace(small, weight_bytes=small.cost.bytes)
    assert kernel_time(weights, mtia, SPEC_DEFAULTS).t_mem_s == pytest.approx(t_big.t_mem_s / 1000)


def test_wave_quantisation() -> None:
    """A GEMM with one tile more than the compute units needs two waves: about half the units idle."""
    units = load_device("h100-sxm").num_compute_units
    assert wave_efficiency(1, 128 * units, 128, units, 128) == 1.0
    assert wave_efficiency(1, 128 * (units + 1), 128, units, 128) == pytest.approx((units + 1) / (2 * units))
    # Narrow operands get narrow tiles (down to 16): 24 rows pad to 32, 8 rows to 16.
    assert wave_efficiency(1, 24, 64 * units, units, 64) == pytest.approx(24 / 32)
    assert wave_efficiency(1, 8, 64 * units, units, 64) == pytest.approx(8 / 16)


@settings(max_examples=50, deadline=None)
@given(flops=st.floats(1e3, 1e15), nbytes=st.floats(1e3, 1e12), scale=st.floats(1.01, 100))
def test_kernel_time_is_monotone_in_work(flops: float, nbytes: float, scale: float) -> None:
    """More FLOPs or more bytes never make a kernel faster; time is at least the launch overhead."""
    dev = load_device("a100-sxm")
    call = KernelCall(family="elementwise", op="aten.mul", shapes=(), dtype="bf16",
                      cost=Cost(vector_flops=flops, bytes_read=nbytes))
    t = kernel_time(call, dev).time_s
    assert t >= dev.launch_overhead_s
    assert kernel_time(dataclasses.replace(call, cost=call.cost * scale), dev).time_s >= t


def test_prediction_is_deterministic() -> None:
    """The same scenario predicts the same numbers twice."""
    a = predict(_scenario("mixtral-8x7b", "h200-sxm"), SPEC_DEFAULTS).to_json()
    b = predict(_scenario("mixtral-8x7b", "h200-sxm"), SPEC_DEFAULTS).to_json()
    assert a == b


def test_a_cached_kernel_reads_at_cache_speed_but_writes_at_main_memory_speed() -> None:
    """Transient data that fits the cache is read at the fitted speed-up; the output lands in a freshly
    allocated buffer and is written at main memory's rate (write-allocate); model state always streams from
    main memory."""
    h100 = load_device("h100-sxm")
    fast = dataclasses.replace(SPEC_DEFAULTS, families={**SPEC_DEFAULTS.families,
                                                        "elementwise": dataclasses.replace(
                                                            SPEC_DEFAULTS.get("elementwise"), cache_speedup=4.0)})
    main = h100.memory_bandwidth_bytes_per_s * fast.get("elementwise").memory
    read, written = 8e6, 4e6
    call = KernelCall("elementwise", "aten.add", ((1000,),), "bf16", Cost(bytes_read=read, bytes_written=written))
    t = kernel_time(call, h100, fast)
    assert t.t_mem_s == pytest.approx(read / (4 * main) + written / main)
    state = dataclasses.replace(call, weight_bytes=read)
    assert kernel_time(state, h100, fast).t_mem_s == pytest.approx((read + written) / main)


def _fused_attention(head_dim: int, backward: bool = False) -> KernelCall:
    """A causal fused attention of 8 sequences x 4096 tokens x 16 heads at `head_dim`, 16-bit."""
    from kernels.attention import attention_flops

    q = (8, 16, 4096, head_dim)
    fwd = attention_flops(q, q, head_dim, True)
    if backward:
        return KernelCall(family="attention", op="emulator.attention_backward", shapes=(q, q, q, q, q), dtype="bf16",
                          cost=Cost(matrix_flops=2 * fwd, recompute_flops=fwd / 2, bytes_read=1e6))
    return KernelCall(family="attention", op="emulator.attention", shapes=(q, q, q), dtype="bf16",
                      cost=Cost(matrix_flops=fwd, bytes_read=1e6))


@pytest.mark.parametrize("backward", [False, True])
def test_a_small_head_keeps_the_per_score_work_of_fused_attention(backward: bool) -> None:
    """Halving the head dimension halves the matrix work but not the softmax work per score: head dim 64 pays the
    reference's (128) per-score share of it, head dims at or above the reference pay none."""
    from emulator.engine.roofline import REFERENCE_HEAD_DIM, SCORE_OPS

    device = load_device("b200")
    pass_ = "backward" if backward else "forward"
    terms = {d: call_terms(_fused_attention(d, backward), device) for d in (64, 128, 256)}
    scores = 8 * 16 * 4096 * 4097 / 2
    assert terms[64].score_s == pytest.approx(
        scores * SCORE_OPS[pass_] / device.vector_peak("fp32") * (1 - 64 / REFERENCE_HEAD_DIM))
    assert terms[128].score_s == terms[256].score_s == 0.0
    t64, t128 = (kernel_time(_fused_attention(d, backward), device).time_s for d in (64, 128))
    assert t128 / 2 < t64  # more than half the head-dim-128 time
    assert terms[64].matrix_s == pytest.approx(terms[128].matrix_s / 2)
