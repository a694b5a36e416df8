"""Stack profiles: the shipped files load with a source per item, bad files fail clearly, and the engine applies
a stack: fused regions move only what crosses their boundary, fp8 recipes add casts, overlap hides collectives,
defaults fill the plan."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from emulator.cli.render import render_prediction
from emulator.cluster import predict_training
from emulator.cluster.network import Group, Network
from emulator.cluster.step import Overlap, hide
from emulator.engine.calibration import efficiency_for, table_from
from emulator.engine.efficiency import SPEC_DEFAULTS
from emulator.engine.predict import time_trace
from emulator.engine.stack import (
    GROUPED_FAMILIES,
    fuse,
    fused_permute,
    group_experts,
    low_precision_casts,
    sustained,
)
from emulator.engine.trace import trace_workload
from emulator.errors import EmulatorError
from emulator.hardware import load_system
from emulator.predict import predict_scenario
from emulator.scenario import Parallel, Scenario, Training, load_scenario
from emulator.serving.replica import build_replica, step_model
from emulator.serving.replica import shard as serving_shard
from emulator.serving.stepcomm import all_reduce_s as _all_reduce_s
from emulator.serving.stepcomm import comm_s as _comm_s
from emulator.stacks import (
    ITEMS,
    STACK_KINDS,
    Item,
    list_stacks,
    load_stack,
    parse_settings,
    runs_on,
    stack_for,
)
from emulator.stacks import load as stack_load
from emulator.workloads.presets import preset

FUSIBLE = ("elementwise", "copy", "reduction", "softmax", "norm")


@pytest.mark.parametrize("kind", STACK_KINDS)
def test_every_shipped_stack_loads_with_a_source_per_item(kind: str) -> None:
    names = list_stacks(kind)
    assert "eager" in names and len(names) >= 3
    for name in names:
        stack = load_stack(name, kind)
        assert stack.kind == kind and stack.versions
        for key, item in stack.items.items():
            assert kind in ITEMS[key][1] and item.source.strip(), (name, key)
            if item.fitted:  # a fit names its record, which exists
                record = item.source.split(" ")[0]
                assert (Path(__file__).resolve().parent.parent / record).is_file(), (name, key, record)
        assert stack.as_dict()["items"].keys() == {k for k in ITEMS if kind in ITEMS[k][1]}


@pytest.mark.parametrize("kind", STACK_KINDS)
def test_every_fitted_item_holds_its_records_fitted_value(kind: str) -> None:
    """A profile's fitted value is the one its fit record chose (a map item: the record's families)."""
    import json

    for name in list_stacks(kind):
        for key, item in load_stack(name, kind).items.items():
            if not item.fitted:
                continue
            record = json.loads((Path(__file__).resolve().parent.parent / item.source.split(" ")[0]).read_text())
            if key in record["fitted"]:
                fitted = record["fitted"][key]
                value = {k: item.value[k] for k in fitted} if isinstance(fitted, dict) else item.value
                assert value == fitted, (name, key, item.value, fitted)


def test_engine_defaults_follow_the_device_memory_and_family() -> None:
    """vLLM's token budget and sequence cap are large from 70 GiB except on an A100; SGLang's chunk grows with the
    memory tier; TensorRT-LLM's are one value everywhere. A map needs a 0 tier."""
    from emulator.hardware import load_device
    from emulator.stacks.values import check_value

    def on(engine: str, key: str, device: str) -> int:
        d = load_device(device)
        return load_stack(engine, "serving").count_for(f"defaults.{key}", d.family, d.memory_bytes)

    assert [on("vllm", "max_batch_tokens", d) for d in ("a100-sxm", "l40s", "h100-sxm", "mi300x")] == [2048, 2048,
                                                                                                     8192, 8192]
    assert (on("vllm", "max_batch_size", "a100-sxm"), on("vllm", "max_batch_size", "h200-sxm")) == (256, 1024)
    assert [on("sglang", "max_batch_tokens", d) for d in ("l40s", "h100-sxm", "h200-sxm", "b200", "mi300x")] == [
        4096, 8192, 8192, 16384, 16384]
    assert on("trtllm", "max_batch_tokens", "b200") == on("trtllm", "max_batch_tokens", "l40s") == 8192

    def fail(message: str) -> None:
        raise ValueError(message)

    assert check_value("count", {0: 2, "ampere": 3}, fail) == {0: 2, "ampere": 3}
    with pytest.raises(ValueError, match="one of them 0"):
        check_value("count", {70: 8192}, fail)
    with pytest.raises(ValueError, match="whole number"):
        check_value("count", {0: 0.5}, fail)


@pytest.mark.parametrize("value", [{"bf16": [64]}, {"int4": [64, 64]}, {"fp8": [0, 128]}, {"bf16": [64.0, 64]},
                                   [64, 64], {"fp8": [64, 2048]}])
def test_a_grouped_gemm_tile_map_names_formats_and_whole_tiles(value: object) -> None:
    from emulator.stacks.values import check_value

    def fail(message: str) -> None:
        raise ValueError(message)

    assert check_value("tile_map", {"bf16": [64, 64], "fp8": [64, 128]}, fail) == {"bf16": (64, 64),
                                                                                    "fp8": (64, 128)}
    assert check_value("tile_map", {}, fail) == {}
    with pytest.raises(ValueError, match=r"output tile \[rows, columns\].*Fix: e.g. \{bf16: \[64, 64\]"):
        check_value("tile_map", value, fail)


def test_defaults_and_unknown_names() -> None:
    assert load_stack(None, "training").name == "megatron-core"
    assert load_stack(None, "serving").name == "trtllm"
    with pytest.raises(EmulatorError, match="training.framework.*megatron-core") as e:
        load_stack("megatron", "training", file="x.yaml")
    assert "Fix:" in str(e.value)


def test_a_device_gets_an_engine_its_vendor_runs(tmp_path: Path) -> None:
    """TensorRT-LLM runs on NVIDIA chips only: with no engine named an AMD device is served by vLLM, an NVIDIA one
    by TensorRT-LLM; naming TensorRT-LLM for an AMD device is an error naming the file, the field and the engines
    that run there (a training framework likewise)."""
    assert stack_for(None, "serving", "nvidia") == "trtllm" and stack_for(None, "serving", "amd") == "vllm"
    assert stack_for("sglang", "serving", "amd") == "sglang" and stack_for(None, "training", "amd") == "megatron-core"
    assert runs_on(load_stack("trtllm", "serving"), "nvidia") and not runs_on(load_stack("trtllm", "serving"), "amd")
    with pytest.raises(EmulatorError, match="runs on nvidia devices only") as e:
        stack_for("trtllm", "serving", "amd", file="s.yaml")
    assert e.value.field == "inference.engine" and "vllm" in e.value.message and "Fix:" in e.value.message
    path = tmp_path / "s.yaml"
    path.write_text("model: llama3-8b\nhardware: {device: mi355x, system: mi355x-node, num_devices: 1}\n"
                    "inference: {input_tokens: 128, output_tokens: 16}\n")
    assert load_scenario(path).serving.engine == "vllm"
    path.write_text(path.read_text().replace("output_tokens: 16}", "output_tokens: 16, engine: trtllm}"))
    with pytest.raises(EmulatorError, match="nvidia devices only") as e:
        load_scenario(path)
    assert e.value.file == str(path) and e.value.field == "inference.engine"
    with pytest.raises(EmulatorError, match="not a setting of the run") as e:
        parse_settings({"platform.vendors": ["amd"]}, "serving", "s.yaml", "inference.engine_settings")
    assert e.value.field == "inference.engine_settings.platform.vendors"


def _write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    (tmp_path / "training").mkdir(exist_ok=True)
    (tmp_path / "training" / "mine.yaml").write_text(body)
    monkeypatch.setattr(stack_load, "shipped", lambda folder: tmp_path)


@pytest.mark.parametrize(("items", "needle"), [
    ("  overlap.tp: {value: 0.5}", "needs exactly one of source"),
    ("  overlap.tp: {value: 1.5, source: x}", "from 0 to 1"),
    ("  overlap.tpp: {value: 0.5, source: x}", "did you mean 'overlap.tp'"),
    ("  defaults.kv_precision: {value: {fp8: fp8}, source: x}", "applies to serving stacks"),
    ("  fusion.families: {value: [gemm], source: x}", "list of kernel families"),
    ("  platform.vendors: {value: nvidia, source: x}", "list of device vendors"),
    ("  efficiency.attention_kernel_rate: {value: 0, source: x}", "rate above 0 and at most 4"),
    ("  efficiency.attention_kernel_rate: {value: fast, source: x}", "rate above 0 and at most 4"),
])
def test_bad_profile_items_name_the_field_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, items: str,
                                                   needle: str) -> None:
    _write(tmp_path, monkeypatch, f"name: mine\nkind: training\ntitle: t\nversions: v\nitems:\n{items}\n")
    with pytest.raises(EmulatorError, match=needle) as e:
        load_stack("mine", "training")
    assert "mine.yaml" in str(e.value) and "Fix:" in str(e.value)


@pytest.mark.parametrize("value", ["8.0e-4", "{hopper: 2}", "{hopper: fast}", "{hopper: true}"])
def test_a_bad_per_family_host_time_names_the_field_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              value: str) -> None:
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "mine.yaml").write_text("name: mine\nkind: serving\ntitle: t\nversions: v\nitems:\n"
                                                    f"  host.prompt_moe_layer_s: {{value: {value}, source: x}}\n")
    monkeypatch.setattr(stack_load, "shipped", lambda folder: tmp_path)
    with pytest.raises(EmulatorError, match="must map device families to seconds from 0 to 1") as e:
        load_stack("mine", "serving")
    assert "mine.yaml" in str(e.value) and "Fix: e.g. {hopper: 8.0e-4}" in str(e.value)


def test_fused_norm_moves_its_input_and_output_only() -> None:
    model = dataclasses.replace(preset("llama3-8b"), num_layers=1)
    trace = trace_workload(model, "train", 1, 256, 0, torch.bfloat16)
    fused = fuse(trace, FUSIBLE)
    act = 256 * model.hidden_size * 2  # one bf16 [tokens, hidden] activation
    norm = [c for c in fused.calls if c.module.endswith("attention_norm") and c.phase == "forward"
            and c.family != "view"]
    assert len(norm) == 1 and norm[0].op.startswith("fused(")
    # reads x (and the tiny weight), writes y: the fp32 intermediates of eager RMSNorm stay on chip
    assert norm[0].cost.bytes_read == pytest.approx(act, rel=0.01)
    assert norm[0].cost.bytes_written == pytest.approx(act, rel=0.01)
    eager_norm = [c for c in trace.calls if c.module.endswith("attention_norm") and c.phase == "forward"
                  and c.family != "view"]
    assert len(eager_norm) > 4 and sum(c.total.bytes for c in eager_norm) > 4 * act
    # GEMMs and attention are untouched; the vector FLOPs are kept
    gemms = sorted(c.total.matrix_flops for c in trace.calls if c.family == "gemm")
    assert gemms == sorted(c.total.matrix_flops for c in fused.calls if c.family == "gemm")
    assert sum(c.total.vector_flops for c in fused.calls) == pytest.approx(sum(c.total.vector_flops
                                                                               for c in trace.calls))
    assert fuse(trace, ()) is trace and fuse(trace, FUSIBLE) is fused  # cached per trace


def test_fused_swiglu_reads_gate_and_up_and_writes_one() -> None:
    model = dataclasses.replace(preset("llama3-8b"), num_layers=1)
    fused = fuse(trace_workload(model, "prefill", 1, 128, 0, torch.bfloat16), FUSIBLE)
    (mlp,) = [c for c in fused.calls if c.module.endswith("feed_forward") and c.op.startswith("fused(")]
    width = 128 * model.ffn_hidden_size * 2
    assert mlp.cost.bytes_read == pytest.approx(2 * width, rel=0.01)
    assert mlp.cost.bytes_written == pytest.approx(width, rel=0.01)


def test_fp8_casts_cover_each_weight_gemm_operand() -> None:
    model = dataclasses.replace(preset("llama3-8b"), num_layers=1)
    trace = trace_workload(model, "train", 1, 256, 0, torch.bfloat16)
    assert low_precision_casts(trace, "bf16", 3.0) is trace
    cast = low_precision_casts(trace, "fp8", 3.0)
    added = [c for c in cast.calls if c.op == "cast_fp8"]
    weight_gemms = [c for c in trace.calls if c.family == "gemm" and c.weight_bytes > 0]
    assert len(added) == len(weight_gemms) > 0
    for c, g in zip(added, weight_gemms, strict=True):
        elements = (g.cost.bytes_read - g.weight_bytes) / 2
        assert c.cost.bytes == pytest.approx(3.0 * elements)


def test_hide_and_overlap_of_a_stack() -> None:
    assert hide(2.0, 0.0, 10.0) == 2.0 and hide(2.0, 1.0, 10.0) == 0.0 and hide(2.0, 1.0, 0.5) == 1.5
    assert hide(2.0, 0.5, 10.0) == pytest.approx(1.0)
    eager = Overlap.of(load_stack("eager", "training"))
    assert eager == Overlap()  # the eager profile is the step's default schedule
    mc = Overlap.of(load_stack("megatron-core", "training"))
    assert mc.dp_param_gather == 1.0 and mc.pp == 1.0 and 0 < mc.tp <= 1
    assert Overlap.of(load_stack("megatron-core", "training"), overlap_grad_reduce=False).dp_grad_reduce == 0.0


def test_sustained_scales_compute_families_only() -> None:
    table = sustained(SPEC_DEFAULTS, 0.5)
    assert table.get("gemm").math == pytest.approx(0.5 * SPEC_DEFAULTS.get("gemm").math)
    assert table.get("attention").math == pytest.approx(0.5 * SPEC_DEFAULTS.get("attention").math)
    assert table.get("elementwise") == SPEC_DEFAULTS.get("elementwise")
    assert sustained(SPEC_DEFAULTS, 0.5) is table and sustained(SPEC_DEFAULTS, 1.0) is SPEC_DEFAULTS


def test_a_stacks_attention_kernel_scales_the_attention_family_only() -> None:
    """`efficiency.attention_kernel_rate` (FlashAttention-2 where the calibration measured cuDNN's) slows the
    attention family's math and nothing else, on top of the sustained share; the shipped training stacks run the
    calibrated kernel, and a serving engine has no such item."""
    table = sustained(SPEC_DEFAULTS, 0.5, 0.6)
    assert table.get("attention").math == pytest.approx(0.3 * SPEC_DEFAULTS.get("attention").math)
    assert table.get("gemm").math == pytest.approx(0.5 * SPEC_DEFAULTS.get("gemm").math)
    assert table.get("attention").memory == SPEC_DEFAULTS.get("attention").memory
    assert sustained(SPEC_DEFAULTS, 1.0, 0.6) is sustained(SPEC_DEFAULTS, 1.0, 0.6) is not SPEC_DEFAULTS
    assert {load_stack(n, "training").attention_kernel_rate() for n in ("eager", "megatron-core", "torchtitan")} \
        == {1.0}
    assert load_stack("vllm", "serving").attention_kernel_rate() == 1.0
    s = _scenario(dp=2)
    titan = load_stack("torchtitan", "training")
    base = predict_training(s, stack=titan)
    fa2 = predict_training(s, stack=titan.with_settings((("efficiency.attention_kernel_rate", 0.61),)))
    assert fa2.kernels["attention"].time_s > 1.3 * base.kernels["attention"].time_s
    assert fa2.kernels["gemm"].time_s == pytest.approx(base.kernels["gemm"].time_s)
    assert fa2.step_time_s > base.step_time_s


def _scenario(**parallel: int) -> Scenario:
    system = load_system("hgx-h100")
    par = Parallel(**parallel)
    model = dataclasses.replace(preset("llama3-8b"), num_layers=4)
    return Scenario(path="t", model=model, device=system.device, system=system, num_devices=par.num_devices,
                    training=Training(seq_len=2048, global_batch_size=16, precision="bf16", parallel=par))


def test_megatron_core_defaults_fill_the_plan_and_run_faster_than_eager() -> None:
    s = _scenario(tp=2, dp=4)
    eager = predict_training(s, stack=load_stack("eager", "training"))
    mc = predict_training(s, stack=load_stack("megatron-core", "training"))
    assert (eager.plan.sequence_parallel, eager.plan.zero) == (False, 0)
    assert (mc.plan.sequence_parallel, mc.plan.zero) == (True, 1)
    assert mc.step_time_s < eager.step_time_s
    assert mc.kernels["elementwise"].time_s < eager.kernels["elementwise"].time_s
    assert mc.to_json()["stack"]["name"] == "megatron-core"
    explicit = predict_training(_scenario(tp=2, dp=4, zero=0, sequence_parallel=False),
                                stack=load_stack("megatron-core", "training"))
    assert (explicit.plan.sequence_parallel, explicit.plan.zero) == (False, 0)  # the file's choice wins


def test_scenario_keys_name_the_stack(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("model: llama3-8b\nhardware: {device: h100-sxm}\ntraining: {seq_len: 2048, framework: eager}\n")
    assert load_scenario(path).training.framework == "eager"  # type: ignore[union-attr]
    path.write_text("model: llama3-8b\nhardware: {device: h100-sxm}\ntraining: {seq_len: 2048, framework: nemo}\n")
    with pytest.raises(EmulatorError, match="training.framework") as e:
        load_scenario(path)
    assert "Fix:" in str(e.value)
    path.write_text("model: llama3-8b\nhardware: {device: h100-sxm}\n"
                    "inference: {input_tokens: 128, output_tokens: 8, engine: vllm}\n")
    spec = load_scenario(path).serving
    assert spec.engine == "vllm" and spec.kv == "bf16"
    path.write_text("model: llama3-8b\nhardware: {device: h100-sxm}\n"
                    "inference: {input_tokens: 128, output_tokens: 8, precision: fp8}\n")
    assert load_scenario(path).serving.kv == "fp8"  # trtllm's FP8 checkpoints carry an FP8 cache


def test_grouped_experts_launch_once_per_block_with_the_same_work() -> None:
    model = dataclasses.replace(preset("qwen3-30b-a3b"), num_layers=2)
    trace = trace_workload(model, "decode", 8, 1, 64, torch.bfloat16)
    grouped = group_experts(trace)
    total = trace.total_cost()
    assert grouped.total_cost().matrix_flops == pytest.approx(total.matrix_flops)
    assert grouped.total_cost().bytes == pytest.approx(total.bytes)
    assert grouped.num_kernel_calls < trace.num_kernel_calls  # the eager elementwise chain is not fused here
    experts = [c for c in grouped.calls if c.op == "grouped_mm"]
    routers = [c for c in grouped.calls if c.module.endswith(".router")]
    assert experts and all(c.count == routers[0].count for c in experts)
    blocks = [c for c in grouped.calls if c.module.endswith("feed_forward") and c.family in GROUPED_FAMILIES]
    assert blocks and all(c.count == routers[0].count for c in blocks)  # one launch per block execution
    assert all(len(c.shapes[0]) == 3 and c.shapes[0][0] > 1 for c in experts)  # [experts, M, K]
    dense = trace_workload(dataclasses.replace(preset("llama3-8b"), num_layers=1), "decode", 8, 1, 64,
                           torch.bfloat16)
    assert group_experts(dense) is dense  # no MoE block: nothing to group


def test_a_fused_moe_kernel_gathers_in_its_gemm_and_sums_each_tokens_rows_once() -> None:
    """`moe.fused_permute`: the hidden rows' gather is gone (the grouped GEMM reads them in place), the scatter-add
    becomes one reduction reading the N routed rows and writing the T output rows, the GEMMs unchanged; a step
    takes less time; a trace without MoE is returned as it is."""
    model = dataclasses.replace(preset("qwen3-30b-a3b"), num_layers=2)  # top 8 of 128 experts, hidden 2048
    grouped = group_experts(trace_workload(model, "prefill", 1, 512, 0, torch.bfloat16))
    fused = fused_permute(grouped)
    assert [c for c in fused.calls if c.family == "gemm"] == [c for c in grouped.calls if c.family == "gemm"]
    gathers = [c for c in grouped.calls if c.op == "aten.index_select" and len(c.shapes[0]) == 2]
    assert gathers and not [c for c in fused.calls if c.op == "aten.index_select" and len(c.shapes[0]) == 2]
    assert not [c for c in fused.calls if c.op == "aten.index_add_"]
    sums = [c for c in fused.calls if c.op == "moe_sum"]
    routers = [c for c in fused.calls if c.family == "gemm" and c.module.endswith(".router")]
    assert len(sums) == len(routers) and all(c.family == "reduction" and c.count == routers[0].count for c in sums)
    routed, out = 512 * 8 * 2048 * 2, 512 * 2048 * 2  # bytes of the [T k, H] rows and of the [T, H] output
    assert all(c.cost.bytes_read == routed and c.cost.bytes_written == out for c in sums)
    system = load_system("hgx-h100")
    assert time_trace(fused, system.device, SPEC_DEFAULTS, "bf16").total_s < \
        time_trace(grouped, system.device, SPEC_DEFAULTS, "bf16").total_s
    dense = trace_workload(dataclasses.replace(preset("llama3-8b"), num_layers=1), "decode", 8, 1, 64, torch.bfloat16)
    assert fused_permute(dense) is dense


def test_expert_gemms_on_streams_launch_a_few_experts_at_a_time_with_the_same_work() -> None:
    model = dataclasses.replace(preset("qwen3-30b-a3b"), num_layers=2)  # 128 experts
    trace = trace_workload(model, "train", 1, 256, 0, torch.bfloat16)
    one, streams = group_experts(trace), group_experts(trace, 4)
    assert streams.total_cost().matrix_flops == pytest.approx(one.total_cost().matrix_flops)
    assert streams.total_cost().bytes == pytest.approx(one.total_cost().bytes)
    pairs = [(a, b) for a, b in zip(one.calls, streams.calls, strict=True) if a.op == "grouped_mm"]
    # A call per expert GEMM (some passes run two per expert): ceil(those / 4) launches of 4 each
    assert pairs and all(b.count == a.count * a.shapes[0][0] // 4 and b.shapes[0][0] == 4 for a, b in pairs)
    assert {a.shapes[0][0] for a, _ in pairs} >= {128}
    assert [c for c in streams.calls if c.op != "grouped_mm"] == [c for c in one.calls if c.op != "grouped_mm"]
    six = group_experts(trace, 6)  # 128 GEMMs on 6 streams: 22 launches of 128 / 22 each, rounded
    launches = [(c, a, math.ceil(a.shapes[0][0] / 6)) for c, a in zip(six.calls, one.calls, strict=True)
                if c.op == "grouped_mm"]
    assert all(c.count == a.count * n and c.shapes[0][0] == round(a.shapes[0][0] / n) for c, a, n in launches)
    assert six.total_cost().matrix_flops == pytest.approx(one.total_cost().matrix_flops)
    system = load_system("hgx-h100")
    assert time_trace(streams, system.device, SPEC_DEFAULTS, "bf16").total_s > \
        time_trace(one, system.device, SPEC_DEFAULTS, "bf16").total_s  # fewer tiles share each launch's waves


def test_megatron_core_runs_expert_gemms_on_transformer_engines_streams() -> None:
    assert load_stack("megatron-core", "training").get("moe.expert_gemm_streams") == 4
    assert load_stack("torchtitan", "training").get("moe.expert_gemm_streams") == 0  # torch's grouped_mm
    assert all(load_stack(e, "serving").get("moe.expert_gemm_streams") == 0 for e in ("trtllm", "vllm", "sglang"))


def test_grouped_experts_make_moe_decode_faster_on_a_gpu() -> None:
    system = load_system("hgx-h100")
    model = dataclasses.replace(preset("qwen3-30b-a3b"), num_layers=2)
    trace = fuse(trace_workload(model, "decode", 8, 1, 64, torch.bfloat16), FUSIBLE)
    loop = time_trace(trace, system.device, SPEC_DEFAULTS, "bf16").total_s
    grouped = time_trace(group_experts(trace), system.device, SPEC_DEFAULTS, "bf16").total_s
    assert grouped < loop / 2  # the per-expert launches dominated the eager loop


def test_cuda_graphs_replace_the_launch_overhead_by_the_engine_gap() -> None:
    system = load_system("hgx-h100")
    model = dataclasses.replace(preset("llama3-8b"), num_layers=2)
    engine = load_stack("trtllm", "serving")
    items = dict(engine.items)
    slow = dataclasses.replace(engine, items={**items, "host.graph_kernel_gap_s": Item(8e-6, "test")})
    fast = dataclasses.replace(engine, items={**items, "host.graph_kernel_gap_s": Item(1e-6, "test")})
    args = (model, system.device, system, SPEC_DEFAULTS, "bf16", "bf16", 1, 1, 1, 0.0)
    assert step_model(*args, fast).step_s(1, 0, 1, 64) < step_model(*args, slow).step_s(1, 0, 1, 64)
    eager = step_model(*args, load_stack("eager", "serving"))
    assert eager.step_s(1, 0, 1, 64) > step_model(*args, engine).step_s(1, 0, 1, 64)  # launches, no fusion


def test_a_low_precision_gemm_fitted_on_few_shapes_takes_the_base_shape_response() -> None:
    data = {"families": {
        "gemm": {"math": 0.76, "memory": 0.78, "tile": 64, "half_dim": 0.0003, "overhead_s": 3e-6, "error": 0.1,
                 "num_points": 98},
        "gemm.fp8": {"math": 0.70, "memory": 0.25, "tile": 128, "half_dim": 97.0, "overhead_s": 1e-6,
                     "error": 0.03, "num_points": 6}}}
    table = table_from(data, "test.json")
    fp8, base = table.get("gemm", "fp8"), table.get("gemm")
    assert fp8.math == pytest.approx(0.70)  # its own large-GEMM rate
    assert (fp8.memory, fp8.tile, fp8.half_dim, fp8.overhead_s) == (base.memory, base.tile, base.half_dim,
                                                                    base.overhead_s)
    assert fp8.error > base.error > 0.03  # widened for the shapes it never saw
    data["families"]["gemm.fp8"]["num_points"] = 60
    assert table_from(data, "test.json").get("gemm", "fp8").half_dim == 97.0  # enough shapes: its own fit


def test_one_shot_all_reduce_for_small_messages_inside_a_domain() -> None:
    net = Network.of(load_system("hgx-h100"))
    small, big = 16 * 8192 * 2.0, 64e6  # a 16-token decode of a 8192-wide model; a prefill chunk
    assert _all_reduce_s(net, small, 8, 524288) < net.time("all_reduce", small, Group(8)) / 2
    assert _all_reduce_s(net, small, 8, 0) == net.time("all_reduce", small, Group(8))  # no custom kernel: NCCL
    assert _all_reduce_s(net, big, 8, 524288) == net.time("all_reduce", big, Group(8))  # past the threshold


def test_two_shot_all_reduce_for_mid_size_messages_at_the_kernels_link_share() -> None:
    net = Network.of(load_system("hgx-h100"))
    mid = 64 * 8192 * 2.0  # a 64-token decode of a 8192-wide model: 1 MiB, past the one-shot bound
    ring = net.time("all_reduce", mid, Group(8))
    two = _all_reduce_s(net, mid, 8, 524288, 8 << 20)
    assert two == pytest.approx(2 * net.scale_up_latency_s + 2 * 7 / 8 * mid / net.scale_up_bytes_per_s)
    assert two < ring / 2  # no cliff between the one-shot kernel and NCCL
    assert _all_reduce_s(net, mid, 8, 524288) == ring  # no two-shot kernel: NCCL
    half = _all_reduce_s(net, mid, 8, 524288, 8 << 20, link_share=0.5)
    assert half - 2 * net.scale_up_latency_s == pytest.approx(2 * (two - 2 * net.scale_up_latency_s))
    assert _all_reduce_s(net, 64e6, 8, 524288, 8 << 20) == net.time("all_reduce", 64e6, Group(8))  # past both
    assert _all_reduce_s(net, 6e6, 8, 524288, 8 << 20, link_share=0.01) == net.time("all_reduce", 6e6, Group(8))
    assert _all_reduce_s(net, mid, 16, 524288, 8 << 20) == net.time("all_reduce", mid, Group(16))  # two domains
    engines = {e: load_stack(e, "serving") for e in ("trtllm", "vllm", "sglang")}
    assert {e: s.get("comm.two_shot_allreduce_bytes") for e, s in engines.items()} == \
        {"trtllm": 4 << 20, "vllm": 8 << 20, "sglang": 8 << 20}
    assert all(0.3 < s.get("comm.custom_allreduce_link_share") < 1 for s in engines.values())


def test_expert_parallel_ranks_of_a_replica_move_no_tokens() -> None:
    """Experts spread over the tensor-parallel ranks: every rank holds the whole batch after attention's all-reduce,
    and the MoE block's all-reduce sums the experts' outputs, so ep adds no all-to-all."""
    import inspect

    from emulator.serving.replica import step_model

    assert "ep" not in inspect.signature(_comm_s).parameters  # the iteration's collectives do not depend on ep
    system, model = load_system("hgx-h100"), preset("qwen3-235b-a22b")
    args = (model, system.device, system, efficiency_for(system.device), "fp8", "fp8", 8, 1)
    spread, whole = step_model(*args, 8, 0.0), step_model(*args, 1, 0.0)
    for n in (1, 64, 4096):  # 8-way ep spreads the experts' GEMMs, each on an eighth of the assignments
        comm = _comm_s(model, system, 8, 1, n, 524288, 1e-5)
        assert 0 < comm < spread.dense(n) and spread.dense(n) != whole.dense(n)


def test_each_all_reduce_waits_for_the_slowest_rank() -> None:
    """`comm.rank_skew_s`: every tensor-parallel all-reduce of an iteration waits E[max of tp normals] x the skew;
    one device has none to wait for."""
    system, model = load_system("hgx-h100"), preset("llama3.1-8b")
    for tp, slowest in ((2, 0.5642), (4, 1.0294), (8, 1.4236)):
        extra = _comm_s(model, system, tp, 1, 16, 524288, 5e-6) - _comm_s(model, system, tp, 1, 16, 524288)
        assert extra == pytest.approx(2 * model.num_layers * slowest * 5e-6, rel=1e-3)
    assert _comm_s(model, system, 1, 1, 16, 524288, 5e-6) == 0.0
    base = load_stack("trtllm", "serving").with_settings((("comm.rank_skew_s", 0.0),))
    skewed = base.with_settings((("comm.rank_skew_s", 5e-6),))
    args = (model, system.device, system, SPEC_DEFAULTS, "bf16", "bf16", 4, 1, 1, 0.0)
    a, b = step_model(*args, engine=base), step_model(*args, engine=skewed)
    assert b.dense(16) - a.dense(16) == pytest.approx(2 * model.num_layers * 1.0294 * 5e-6, rel=1e-3)
    assert b.kv_s_per_token == a.kv_s_per_token and b.pair_s == a.pair_s


def test_expert_parallel_ranks_of_a_replica_take_their_share_of_the_assignments() -> None:
    model = preset("qwen3-235b-a22b")  # 128 experts, top-8
    assert serving_shard(model, 8, 1).num_experts_per_token == 8  # experts split tp ways: every rank, every token
    part = serving_shard(model, 8, 8)
    assert part.num_experts == 16 and part.num_experts_per_token == 1  # 8 assignments per token over 8 ranks
    assert part.routed_per_token == 0.0  # a whole top-k


def test_a_rank_of_more_expert_parallel_ranks_than_top_k_receives_a_fraction_of_the_tokens() -> None:
    """Top-2 of 8 experts over 8 ranks: each rank's expert receives a quarter of the batch's tokens, not all of
    them (each token at least once per rank, as before, made Mixtral's layer 4x the work at ep 8)."""
    part = serving_shard(preset("mixtral-8x7b"), 8, 8)
    assert (part.num_experts, part.num_experts_per_token, part.routed_per_token) == (1, 1, 0.25)
    trace = trace_workload(dataclasses.replace(part, num_layers=1), "decode", 1024, 1, 1, torch.bfloat16)
    experts = [c for c in trace.calls if c.family == "gemm" and c.module == "layers.0.feed_forward"]
    assert [c.shapes[0] for c in experts] == [(256, 4096), (256, 14336)]  # gate+up, down: 1024 tokens x 2 / 8
    assert serving_shard(preset("deepseek-v3"), 16, 16).routed_per_token == 0.5  # top-8 over 16 ranks


def test_kv_pool_of_the_whole_memory_or_of_what_is_free() -> None:
    """TensorRT-LLM gives the KV cache a share of what weights leave; vLLM's share is of the whole memory."""
    system = load_system("hgx-h100")
    model = preset("llama3.1-8b")
    common = {"precision": "bf16", "kv_precision": "bf16"}
    trt = build_replica(model, system.device, system, SPEC_DEFAULTS, engine="trtllm", **common)
    vllm = build_replica(model, system.device, system, SPEC_DEFAULTS, engine="vllm", **common)
    free = system.device.memory_bytes - trt.weight_bytes - trt.workspace_bytes
    assert trt.kv_capacity_tokens * trt.kv_bytes_per_token == pytest.approx(0.9 * free, rel=0.01)
    assert vllm.kv_capacity_tokens * vllm.kv_bytes_per_token == pytest.approx(
        0.9 * system.device.memory_bytes - vllm.weight_bytes - vllm.workspace_bytes, rel=0.01)
    assert (trt.scheduling.reserve_output, vllm.scheduling.reserve_output) == (1.0, 0.0)


def test_every_prediction_names_its_stack_in_json_and_text(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("model: llama3-8b\nhardware: {device: h100-sxm, system: hgx-h100}\n"
                    "inference: {input_tokens: 128, output_tokens: 8, batch_size: 4}\n")
    serving = predict_scenario(load_scenario(path))
    assert serving.to_json()["stack"]["name"] == serving.to_json()["engine"] == "trtllm"
    assert "software stack       trtllm (TensorRT-LLM" in render_prediction(serving)
    path.write_text("model: llama3-8b\nhardware: {device: h100-sxm}\ntraining: {seq_len: 1024, framework: eager}\n")
    training = predict_scenario(load_scenario(path))
    assert training.to_json()["stack"]["name"] == "eager" and "software stack       eager" in \
        render_prediction(training)


def test_the_step_model_cache_tells_tables_of_one_source_apart() -> None:
    """Two tables from one calibration file that differ (a stack's transform, a test's) get their own step model."""
    system = load_system("hgx-h100")
    model = dataclasses.replace(preset("llama3-8b"), num_layers=2)
    slow = dataclasses.replace(SPEC_DEFAULTS, families={name: dataclasses.replace(eff, overhead_s=50e-6)
                                                        for name, eff in SPEC_DEFAULTS.families.items()})
    args = (model, system.device, system)
    fast_step = step_model(*args, SPEC_DEFAULTS, "bf16", "bf16", 1, 1, 1, 0.0).step_s(1, 0, 1, 64)
    slow_step = step_model(*args, slow, "bf16", "bf16", 1, 1, 1, 0.0).step_s(1, 0, 1, 64)
    assert slow_step > fast_step + 20 * 50e-6


def test_a_family_without_its_own_sustained_share_takes_the_transferred_one() -> None:
    stack = load_stack("megatron-core", "training")
    shares = stack.get("efficiency.sustained_math")
    assert stack.sustained_math("hopper") == shares["hopper"]
    assert stack.sustained_math("blackwell") == shares["*"]  # transferred, said so in the profile
    assert load_stack("eager", "training").sustained_math("blackwell") == 1.0


def test_low_precision_gemms_take_the_16_bit_shape_response() -> None:
    """`recipe.low_precision_gemm_shape`: an fp8 family keeps its large-GEMM math rate and takes the bf16 family's
    small-shape response and weight streaming; other families are untouched."""
    from emulator.engine.efficiency import EfficiencyTable, FamilyEfficiency
    from emulator.engine.stack import low_precision_from_base

    base = FamilyEfficiency(math=0.74, memory=0.78, overhead_s=2.5e-6, tile=64, half_dim=0.3, error=0.13)
    fp8 = FamilyEfficiency(math=0.70, memory=0.60, overhead_s=3.2e-6, tile=128, half_dim=97.0, error=0.06)
    norm = FamilyEfficiency(math=0.5, memory=0.5, tile=0, error=0.1)
    table = EfficiencyTable(families={"gemm": base, "gemm.fp8": fp8, "norm": norm}, provenance="calibrated",
                           source="test")
    out = low_precision_from_base(table).families
    assert out["gemm.fp8"].math == 0.70
    assert (out["gemm.fp8"].memory, out["gemm.fp8"].overhead_s, out["gemm.fp8"].tile, out["gemm.fp8"].half_dim) == (
        0.78, 2.5e-6, 64, 0.3)
    assert out["gemm"] == base and out["norm"] == norm
    assert load_stack("trtllm", "serving").get("recipe.low_precision_gemm_shape") is True
    assert load_stack("eager", "serving").get("recipe.low_precision_gemm_shape") is False


def test_weight_only_gemms_widen_their_weights_at_the_engines_cost() -> None:
    """`recipe.weight_only_*`: an engine's w4a16 GEMMs (and matrix-vector products) take the 16-bit GEMM's shape
    response and bandwidth, its widening operations per weight and its share of the math; none and 1 leave the table
    as it is."""
    from emulator.engine.efficiency import EfficiencyTable, FamilyEfficiency
    from emulator.engine.stack import weight_only_from_base

    base = FamilyEfficiency(math=0.8, memory=0.85, overhead_s=2e-6, tile=64, half_dim=0.3, error=0.1)
    table = EfficiencyTable(families={"gemm": base}, provenance="calibrated", source="test")
    assert weight_only_from_base(table, 0.0, 1.0) is table
    out = weight_only_from_base(table, 16.0, 0.7).families
    for key in ("gemm.w4a16", "gemv.w4a16"):
        assert (out[key].widen_ops, out[key].math) == (16.0, pytest.approx(0.56))
        assert (out[key].memory, out[key].tile, out[key].half_dim, out[key].overhead_s) == (0.85, 64, 0.3, 2e-6)
    assert out["gemm"] == base and base.widen_ops == 0.0


def test_widening_costs_the_vector_units_once_per_row_tile_the_same_on_h100_and_h200() -> None:
    """A weight-only GEMM's widening is vector work: elements x operations per row tile of its output at the vector
    rate, beside the packed weights' stream. It does not depend on the chip's bandwidth (H100 and H200 share their
    SMs), grows with the row tiles, and a bf16 GEMM never pays it."""
    from emulator.engine.efficiency import EfficiencyTable, FamilyEfficiency
    from emulator.engine.roofline import kernel_time
    from emulator.engine.stack import weight_only_from_base
    from emulator.hardware import load_device
    from kernels import Cost, KernelCall

    table = weight_only_from_base(EfficiencyTable(families={"gemm": FamilyEfficiency(math=0.8, memory=0.8, tile=64)},
                                                  provenance="spec", source="test"), 64.0, 1.0)

    def gemm(rows: int) -> KernelCall:
        k, n = 4096, 4096
        return KernelCall(family="gemm", op="aten.mm", shapes=((rows, k), (k, n)), dtype="bf16",
                          cost=Cost(matrix_flops=2.0 * rows * k * n, bytes_read=2.0 * (rows * k + k * n),
                                    bytes_written=2.0 * rows * n), weight_bytes=2.0 * k * n)

    h100, h200 = load_device("h100-sxm"), load_device("h200-sxm")
    widen = 64 * 4096 * 4096 / h100.vector_peak("bf16") / 0.5  # one row tile, at the spec vector efficiency
    assert kernel_time(gemm(8), h100, table, "w4a16").t_math_s == pytest.approx(widen)
    assert kernel_time(gemm(8), h200, table, "w4a16").t_math_s == pytest.approx(widen)
    assert kernel_time(gemm(100), h200, table, "w4a16").t_math_s >= 2 * widen  # two 64-row tiles
    assert kernel_time(gemm(8), h200, table, "bf16").t_math_s < widen / 10


def test_a_weight_only_decode_step_widens_where_the_engine_says_and_other_precisions_ignore_it() -> None:
    """A decode step of a w4a16 checkpoint takes longer on an engine that widens its weights (TensorRT-LLM's,
    fitted on its MXFP4 MoE kernels) than on one that does not; a bf16 step is the same either way."""
    from emulator.engine.stack import engine_table

    system = load_system("hgx-h200")
    model = dataclasses.replace(preset("llama3-8b"), num_layers=2)
    trace = trace_workload(model, "decode", 4, 1, 64, torch.bfloat16)
    table = efficiency_for(system.device)
    engine = load_stack("trtllm", "serving")
    assert float(engine.get("recipe.weight_only_widen_ops")) > 0.0
    plain = dataclasses.replace(engine, items={**engine.items, "recipe.weight_only_widen_ops": Item(0.0, "test"),
                                               "recipe.weight_only_math_share": Item(1.0, "test")})

    def step(stack: object, precision: str) -> float:  # the GEMMs' time: the rest runs as it did
        kernels = time_trace(trace, system.device, engine_table(table, stack), precision).kernels  # type: ignore[arg-type]
        return sum(k.time_s for k in kernels if k.family == "gemm")

    assert step(engine, "w4a16") > 1.15 * step(plain, "w4a16")
    assert step(plain, "w4a16") < step(plain, "bf16")  # packed weights stream in a quarter of the bytes
    assert step(engine, "bf16") == step(plain, "bf16")


def test_the_expert_all_to_all_hides_only_when_the_run_overlaps_it() -> None:
    """`defaults.ep_overlap` off (Megatron-Core's default): the expert-parallel all-to-all is all exposed whatever
    `overlap.ep` says; on: `overlap.ep` of it runs beside compute."""
    stack = load_stack("megatron-core", "training")
    assert stack.get("defaults.ep_overlap") is False and Overlap.of(stack).ep == 0.0
    on = stack.with_settings((("defaults.ep_overlap", True),))
    assert Overlap.of(on).ep == stack.get("overlap.ep") > 0.0
    assert Overlap.of(on).tp == Overlap.of(stack).tp  # only the expert all-to-all changes
