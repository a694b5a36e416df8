"""The host's dispatch time outside CUDA graphs (cluster/host.py): what graphs capture, and when the device waits."""

from __future__ import annotations

import dataclasses

import pytest

from emulator.cli.render import render_prediction
from emulator.cluster import predict_training
from emulator.cluster.host import HostDispatch, call_host_s, captured, moe_layers
from emulator.errors import EmulatorError
from emulator.hardware import load_device, load_system
from emulator.scenario import Parallel, Scenario, Training
from emulator.stacks import load_stack
from emulator.workloads.presets import preset
from kernels import Cost, KernelCall


def _call(module: str, phase: str = "forward", count: int = 2) -> KernelCall:
    return KernelCall(family="elementwise", op="aten.add", shapes=((8,),), dtype="bf16", cost=Cost(), module=module,
                      phase=phase, count=count)


@pytest.mark.parametrize(("module", "moe", "scopes", "expected"), [
    ("layers.0.attention.wo", True, ("attn",), True),
    ("layers.0.attention_norm", True, ("attn",), True),
    ("layers.0", True, ("attn",), True),  # the layer's residual adds sit in its attention graph
    ("layers.0.feed_forward", True, ("attn", "moe_router", "moe_preprocess"), False),  # the experts stay eager
    ("layers.0.feed_forward.router", True, ("moe_router",), True),
    ("layers.0.ffn_norm", True, ("moe_router",), True),
    ("layers.0.feed_forward", True, ("moe",), True),
    ("layers.0.feed_forward", False, ("moe",), False),  # a dense layer's MLP is `mlp`
    ("layers.0.feed_forward", False, ("mlp",), True),
    ("layers.5.feed_forward.shared.w2", True, ("layer",), True),
    ("head.output", True, ("layer",), False),  # per-layer graphs leave the embedding and the head eager
    ("head.output", True, ("full_iteration",), True),
    ("layers.0.attention", True, (), False),
])
def test_what_each_graph_scope_captures(module: str, moe: bool, scopes: tuple[str, ...], expected: bool) -> None:
    """Megatron-Core's scopes map onto the traced program's modules (the module docstring)."""
    assert captured(module, scopes, moe) is expected


def test_host_seconds_per_op_and_phase() -> None:
    """Each op outside graphs costs op_s forward and op_s x backward_ratio backward; the optimizer and captured
    ops cost nothing; without a per-op time nothing does."""
    calls = (_call("layers.0.feed_forward.router"), _call("layers.0.attention"), _call("layers.1.attention"))
    moe = moe_layers(calls)
    assert moe == frozenset({"layers.0"})
    host = HostDispatch(op_s=1e-5, backward_ratio=0.5, scopes=("moe_router",))
    assert call_host_s(calls[0], host, moe) == 0.0
    assert call_host_s(calls[1], host, moe) == pytest.approx(2e-5)
    assert call_host_s(_call("layers.0.attention", "backward"), host, moe) == pytest.approx(1e-5)
    assert call_host_s(_call("layers.0.attention", "optimizer"), host, moe) == 0.0
    assert call_host_s(calls[1], HostDispatch(), moe) == 0.0


def test_host_dispatch_reads_a_training_stack() -> None:
    """megatron-core states a per-op time and no graphs; a serving engine or no stack has no training host."""
    mcore = HostDispatch.of(load_stack("megatron-core", "training"))
    assert mcore.op_s > 0 and mcore.scopes == ()
    assert HostDispatch.of(None) == HostDispatch() == HostDispatch.of(load_stack("vllm", "serving"))


def _moe(settings: dict[str, object], *, microbatch: int = 1) -> Scenario:
    model = dataclasses.replace(preset("qwen3-30b-a3b"), num_layers=2)
    p = Parallel(dp=8, ep=8, microbatch_size=microbatch)
    return Scenario(path="<test>", model=model, device=load_device("b200"), system=load_system("hgx-b200"),
                    num_devices=8, training=Training(seq_len=4096, global_batch_size=8 * microbatch, parallel=p,
                                                     precision="fp8", framework="megatron-core",
                                                     framework_settings=tuple(settings.items())))


def test_a_host_bound_step_waits_and_graphs_remove_the_wait() -> None:
    """With a per-op time the kernels of a small-expert micro-batch cannot hide, the step waits on the host
    (breakdown host_wait_s, inside compute_s); capturing the attention and router shortens the wait, the whole
    iteration removes it, and the step is then the kernels' alone."""
    slow = {"host.op_dispatch_s": 2e-4}
    eager = predict_training(_moe(slow))
    partial = predict_training(_moe({**slow, "host.graph_scopes": ("attn", "moe_router")}))
    whole = predict_training(_moe({**slow, "host.graph_scopes": ("full_iteration",)}))
    none = predict_training(_moe({"host.op_dispatch_s": 0.0}))
    assert eager.step.host_wait_s > partial.step.host_wait_s > whole.step.host_wait_s == 0.0
    assert eager.step_time_s > partial.step_time_s > whole.step_time_s == pytest.approx(none.step_time_s)
    b = eager.to_json()["breakdown"]
    assert 0 < b["host_wait_s"] < b["compute_s"]
    assert "waiting on the host" in render_prediction(eager)
    assert "waiting on the host" not in render_prediction(whole)
    assert b["compute_s"] + b["exposed_communication_s"] + b["bubble_s"] == pytest.approx(eager.step_time_s)


def test_long_kernels_hide_the_host() -> None:
    """At the fitted per-op time, a micro-batch of 8 sequences keeps the device busier than the host."""
    assert predict_training(_moe({}, microbatch=8)).step.host_wait_s == 0.0


def test_a_bad_graph_scope_is_refused_with_the_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A scenario naming a scope Megatron-Core has not gets a one-paragraph error naming the field and the fix."""
    from emulator.scenario import load_scenario

    path = tmp_path / "s.yaml"
    path.write_text("model: qwen3-30b-a3b\nhardware: {device: b200, system: hgx-b200, num_devices: 8}\n"
                    "training: {seq_len: 4096, global_batch_size: 8, parallel: {dp: 8, ep: 8},\n"
                    "  framework: megatron-core, framework_settings: {host.graph_scopes: [attention]}}\n")
    with pytest.raises(EmulatorError) as err:
        load_scenario(path)
    message = str(err.value)
    assert "host.graph_scopes" in message and "moe_router" in message and "Fix" in message
