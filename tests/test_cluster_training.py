"""Training on a cluster: step time, figures, schedules, memory advice, goodput and the published runs."""

from __future__ import annotations

import dataclasses

import pytest

from emulator.cluster import predict_training
from emulator.cluster.goodput import Reliability, goodput
from emulator.cluster.schedule import bubble_s
from emulator.hardware import load_device, load_system
from emulator.scenario import Parallel, Scenario, Training
from emulator.validation.published_training import validate_published
from emulator.workloads.presets import preset

SINGLE_KEYS = ("step_time_s", "tokens_per_s", "tokens_per_s_per_device", "flops_per_step", "flops_convention",
               "hardware_flops_per_step", "model_flops_per_s_per_device", "mfu", "memory_per_device_bytes",
               "memory_breakdown", "memory_capacity_bytes", "fits", "provenance", "error_band", "step_time_range_s",
               "bound", "unknown_ops", "kernels", "notes")
CLUSTER_KEYS = ("mfu_without_attention", "hfu", "time_to_train_s", "device_hours", "goodput",
                "effective_time_to_train_s", "breakdown", "plan")


def _scenario(model: str = "llama3-8b", *, seq: int = 4096, batch: int = 64, recompute: str = "none",
              total_tokens: float | None = 1e12, system: str | None = "hgx-h100", **parallel: object) -> Scenario:
    p = Parallel(**parallel)  # type: ignore[arg-type]
    return Scenario(path="<test>", model=preset(model), device=load_device("h100-sxm"),
                    system=load_system(system) if system else None, num_devices=p.num_devices,
                    training=Training(seq_len=seq, global_batch_size=batch, parallel=p, recompute=recompute,
                                      total_tokens=total_tokens))


@pytest.fixture(scope="module")
def base():  # type: ignore[no-untyped-def]
    return predict_training(_scenario(tp=2, pp=2, dp=2, sequence_parallel=True)).to_json()


def test_json_has_single_device_and_cluster_keys(base) -> None:  # type: ignore[no-untyped-def]
    """to_json carries every single-device key plus the cluster figures."""
    for key in SINGLE_KEYS + CLUSTER_KEYS:
        assert key in base, key
    for key in ("compute_s", "exposed_communication_s", "bubble_s"):
        assert key in base["breakdown"]
    assert base["time_to_train_s"] == pytest.approx(1e12 / base["tokens_per_s"])
    assert base["device_hours"] == pytest.approx(base["time_to_train_s"] * 8 / 3600)
    assert base["effective_time_to_train_s"] > base["time_to_train_s"]
    assert 0 < base["mfu_without_attention"] < base["mfu"] < 1


def test_step_adds_up(base) -> None:  # type: ignore[no-untyped-def]
    """Compute, exposed communication and bubble add up to the step time."""
    b = base["breakdown"]
    assert b["compute_s"] + b["exposed_communication_s"] + b["bubble_s"] == pytest.approx(base["step_time_s"])


def test_interleaving_shrinks_the_bubble() -> None:
    """Virtual stages divide the 1F1B bubble (pp-1)/v."""
    assert bubble_s(8, 1, 1.0) == 7.0 and bubble_s(8, 4, 1.0) == 1.75 and bubble_s(1, 1, 1.0) == 0.0
    plain = predict_training(_scenario(pp=4, dp=2, batch=16)).to_json()
    inter = predict_training(_scenario(pp=4, dp=2, batch=16, virtual_stages=2)).to_json()
    assert inter["breakdown"]["bubble_s"] < plain["breakdown"]["bubble_s"]


def test_full_recompute_costs_a_forward_and_saves_memory() -> None:
    """Full recompute: more hardware FLOPs and time, same model FLOPs, fewer activation bytes."""
    none = predict_training(_scenario(tp=2, dp=4)).to_json()
    full = predict_training(_scenario(tp=2, dp=4, recompute="full")).to_json()
    assert full["flops_per_step"] == pytest.approx(none["flops_per_step"])
    assert full["hardware_flops_per_step"] > 1.2 * none["hardware_flops_per_step"]
    assert full["step_time_s"] > none["step_time_s"]
    assert full["memory_breakdown"]["activations"] < none["memory_breakdown"]["activations"] / 5


def test_model_flops_do_not_depend_on_the_plan() -> None:
    """The same model and batch count the same model FLOPs under any layout."""
    a = predict_training(_scenario(dp=8)).flops_per_step
    b = predict_training(_scenario(tp=4, pp=2, sequence_parallel=True)).flops_per_step
    assert a == pytest.approx(b)


def test_default_system_is_the_devices_first() -> None:
    """Without hardware.system the first shipped system built from the device is used."""
    out = predict_training(_scenario(dp=8, system=None)).to_json()
    assert out["system"] == "hgx-h100"


def test_plan_that_does_not_fit_gets_advice() -> None:
    """An 8B plan replicating its 16 B/param of state misses 80 GB: by how much, and that ZeRO would fit."""
    out = predict_training(_scenario("llama3-8b", dp=8, batch=8, total_tokens=None, zero=0)).to_json()
    assert not out["fits"]
    advice = out["fit_advice"]
    assert advice["over_by_bytes"] == out["memory_per_device_bytes"] - out["memory_capacity_bytes"] > 0
    assert any("zero" in f["change"] for f in advice["fixes"])
    seventy = predict_training(_scenario("llama3-70b", dp=8, batch=8, zero=0)).fit_advice
    assert seventy is not None and seventy.fixes == ()  # even ZeRO-3 over 8 ranks holds 140 GB of state


def test_a_plan_no_single_change_fits_says_so() -> None:
    """70B on one device fits with no single change: the advice says to add devices, in JSON and in the table."""
    pred = predict_training(_scenario("llama3-70b", dp=1, batch=1))
    assert pred.fit_advice is not None and pred.fit_advice.fixes == ()
    assert pred.to_json()["fit_advice"]["advice"].startswith("no single change fits")


def test_moe_and_context_parallel_plans() -> None:
    """Expert-parallel all-to-alls and context-parallel ring transfers appear in the breakdown."""
    moe = predict_training(_scenario("mixtral-8x7b", tp=2, dp=8, ep=8, sequence_parallel=True, batch=64, zero=1))
    assert moe.step.expert_parallel_s > 0
    # ep 8 leaves one of Mixtral's 8 experts per rank under top-2: its experts still run two assignments per token
    assert any("k assignments per token" in note for note in moe.notes)
    cp = predict_training(_scenario(tp=2, cp=4, seq=8192, batch=8))
    assert cp.step.communication_total_s > 0 and cp.plan.cp == 4


def test_goodput_defaults_and_scaling() -> None:
    """More devices fail more often: goodput falls with scale; a checkpoint every interval costs its write."""
    small = goodput(70e9, 1024, 1e6)
    large = goodput(70e9, 16384, 1e6)
    assert 0 < large.fraction < small.fraction < 1
    assert large.failures_per_device_hour == pytest.approx(419 / (54 * 24 * 16384))
    fixed = goodput(70e9, 1024, 1e6, dataclasses.replace(Reliability(), checkpoint_interval_s=60.0))
    assert fixed.fraction < small.fraction  # the Young/Daly interval is optimal


def test_published_cases_within_bounds() -> None:
    """Published A100 runs: median |error| <= 10%, max <= 20%, one set of device parameters for all."""
    out = validate_published()
    ids = [c["id"] for c in out["cases"]]
    assert "train-megatron2021-gpt-1008b-a100-3072gpu" in ids and "train-korthikanti-22b-a100-8gpu-mfu" in ids
    for c in out["cases"]:
        assert c["error"] == pytest.approx(c["predicted"] / c["published"] - 1)
    assert out["summary"]["median_abs_error"] <= 0.10
    assert out["summary"]["max_abs_error"] <= 0.20
