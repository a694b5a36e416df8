"""Specs for emulator.validation.run: a scenario executed on the CPU, measured, predicted beside it and recorded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from emulator.cli.main import build_parser
from emulator.cli.run import command
from emulator.errors import EmulatorError
from emulator.measure.device import parse_device
from emulator.results import ResultsStore
from emulator.scenario import load_scenario
from emulator.validation import run as run_module
from emulator.validation import runplan
from emulator.validation.run import RunResult, kernel_family, run_scenario, scale_to_fit

LLAMA = ("{model_type: llama, num_hidden_layers: %d, hidden_size: 128, num_attention_heads: 4, num_key_value_heads: 2, "
         "intermediate_size: 256, vocab_size: 1000, max_position_embeddings: 512}")
TRAIN = "training: {seq_len: 64, global_batch_size: 4, precision: fp32, parallel: {microbatch_size: 2}}"
INFER = "inference: {input_tokens: 32, output_tokens: 8, batch_size: 2, precision: fp32}"
FAST: dict[str, Any] = {"target_time_s": 0.02, "profile": False}


def scenario(tmp_path: Path, body: str, model: str | None = None, layers: int = 2, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"model: {model or LLAMA % layers}\nhardware: {{device: h100-sxm}}\n{body}\n")
    return path


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread (the results store and calibrations folder are the test's own: see conftest.py).

    One thread because these tests check what is reported, not how fast: on a busy 2-core machine a second
    OpenMP thread that is descheduled makes every tiny matmul wait a scheduler quantum (~15 ms).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_training_run_measures_one_micro_batch(tmp_path: Path) -> None:
    """A training scenario measures one micro-batch, profiles it into families and says power is not measured."""
    s = load_scenario(scenario(tmp_path, TRAIN))
    result = run_scenario(s, "cpu", target_time_s=0.02, record=False)
    assert isinstance(result, RunResult)
    m = result.measured
    assert m.provenance == "measured" and 0 < m.p20_s <= m.total_s <= m.p80_s  # type: ignore[operator]
    assert result.tokens_per_step == 2 * 64  # one micro-batch of 2 sequences of 64 tokens
    assert any("ONE micro-batch" in n for n in result.notes)
    out = result.to_json()
    assert out["measured"]["power"].startswith("not measured (")
    assert out["measured"]["energy_per_step_j"] is None and out["measured"]["energy_per_token_j"] is None
    assert out["measured"]["kernels"] and "gemm" in out["measured"]["families"]
    assert out["scale_model"] is None


def test_without_calibration_the_prediction_is_not_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When this CPU has no calibration the run still succeeds and says how to get a prediction."""
    def no_calibration(device: str) -> Any:
        raise EmulatorError("no calibration")

    monkeypatch.setattr(runplan, "local_calibration", no_calibration)
    result = run_scenario(load_scenario(scenario(tmp_path, TRAIN)), "cpu", record=False, **FAST)
    assert result.predicted is None and result.error is None
    assert any("prediction: not available" in n and "emulator calibrate --device cpu --quick" in n
               for n in result.notes)
    assert result.to_json()["predicted"] is None


def test_inference_combines_prefill_and_decode(tmp_path: Path) -> None:
    """Inference measures a prefill and a decode step; the step is prefill + output_tokens x decode."""
    result = run_scenario(load_scenario(scenario(tmp_path, INFER)), "cpu", record=False, **FAST)
    pre, dec = result.measured_phases["prefill"], result.measured_phases["decode"]
    assert result.measured.total_s == pytest.approx(pre.total_s + 8 * dec.total_s)
    assert result.tokens_per_step == 2 * 8  # output tokens of the batch
    assert set(result.to_json()["phases"]) == {"prefill", "decode"}


def test_dlrm_inference_runs_the_forward_only(tmp_path: Path) -> None:
    """A DLRM inference scenario measures one forward of the batch; tokens are samples."""
    body = "inference: {input_tokens: 1, output_tokens: 1, batch_size: 32, precision: fp32}"
    result = run_scenario(load_scenario(scenario(tmp_path, body, model="dlrm-small")), "cpu", record=False, **FAST)
    assert result.measured.total_s > 0 and result.tokens_per_step == 32 and not result.measured_phases


def test_scale_model_when_memory_is_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With memory for 2 of 4 layers, a 2-layer scale model runs and the notes say so."""
    s = load_scenario(scenario(tmp_path, TRAIN, layers=4))
    dtype = torch.float32
    two = run_module._memory_bytes(s, s.model.scaled(num_layers=2), dtype)  # type: ignore[union-attr]
    three = run_module._memory_bytes(s, s.model.scaled(num_layers=3), dtype)  # type: ignore[union-attr]
    monkeypatch.setattr(run_module, "available_memory_bytes", lambda device: (two + three) / 2)
    built: list[int] = []
    real_build = run_module.build_step

    def spy(model: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(model.num_layers)
        return real_build(model, *args, **kwargs)

    monkeypatch.setattr(run_module, "build_step", spy)
    result = run_scenario(s, "cpu", record=False, **FAST)
    assert built == [2]
    assert dict(result.scale_model or {}) == {"num_layers": 2, "of": 4}
    assert any(n.startswith("ran a scale model: 2 of 4 layers (memory: needs") for n in result.notes)


def test_no_scale_model_fits_is_a_clear_error(tmp_path: Path) -> None:
    """When even one layer does not fit, the error names the scenario file and suggests a smaller batch."""
    s = load_scenario(scenario(tmp_path, TRAIN))
    with pytest.raises(EmulatorError, match=r"s\.yaml.*1-layer scale model.*batch size"):
        scale_to_fit(s, torch.float32, 1.0)


def test_dlrm_scales_embedding_rows(tmp_path: Path) -> None:
    """A DLRM too large for memory keeps its tables but with fewer rows."""
    body = "training: {seq_len: 1, global_batch_size: 32, precision: fp32}"
    s = load_scenario(scenario(tmp_path, body, model="dlrm-small"))
    need = run_module._memory_bytes(s, s.model, torch.float32)
    model, scale, note = scale_to_fit(s, torch.float32, need * 0.7)
    assert scale is not None and scale["embedding_rows"] < scale["of"] == 1800
    assert len(model.embedding_rows) == 4 and note and "embedding rows" in note  # type: ignore[union-attr]
    assert run_module._memory_bytes(s, model, torch.float32) <= need * 0.7


def test_run_is_recorded_in_the_results_store(tmp_path: Path) -> None:
    """Every recorded run is one 'run' row with the summary's measured step time."""
    store = tmp_path / "store.sqlite"
    result = run_scenario(load_scenario(scenario(tmp_path, TRAIN)), "cpu", store_path=str(store), **FAST)
    runs = ResultsStore(store).list_runs(kind="run")
    assert len(runs) == 1
    assert runs[0]["summary"]["measured"]["step_time_s"] == pytest.approx(result.measured.total_s)
    assert runs[0]["scenario"]["path"].endswith("s.yaml")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu", ""])
def test_bad_device_strings_are_user_errors(device: str) -> None:
    """Anything but cpu, cuda or cuda:N is an EmulatorError with the fix."""
    with pytest.raises(EmulatorError, match="--device cpu"):
        parse_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_user_error() -> None:
    """Asking for CUDA where torch sees none names the fix."""
    with pytest.raises(EmulatorError, match="no CUDA GPU"):
        parse_device("cuda")


def test_command_with_a_bad_device(tmp_path: Path) -> None:
    """`emulator run S --device gpu` fails with an EmulatorError before anything runs."""
    args = build_parser().parse_args(["run", str(scenario(tmp_path, TRAIN)), "--device", "gpu"])
    with pytest.raises(EmulatorError):
        command(args)


def test_kernel_families_by_name() -> None:
    """CPU ops map through the kernel registry, GPU kernels by name fragments."""
    assert kernel_family("aten::mm", "cpu") == "gemm"
    assert kernel_family("aten::_fused_adamw_", "cpu") == "optimizer"
    assert kernel_family("autograd::engine::evaluate_function: MmBackward0", "cpu") == "other"
    assert kernel_family("sm90_xmma_gemm_bf16bf16_bf16f32", "cuda") == "gemm"
    assert kernel_family("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTN", "cuda") == "gemm"
    assert kernel_family("flash_fwd_kernel", "cuda") == "attention"
    assert kernel_family("void at::native::vectorized_layer_norm_kernel<float>", "cuda") == "norm"
    assert kernel_family("indexFuncLargeIndex index_add", "cuda") == "scatter"
    assert kernel_family("void at::native::vectorized_elementwise_kernel<4, CUDAFunctor_add>", "cuda") == "elementwise"
    assert kernel_family("Memcpy DtoD (Device -> Device)", "cuda") == "copy"


def test_command_prints_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI hook renders measured and predicted side by side, or the JSON fields."""
    path = str(scenario(tmp_path, TRAIN))
    command(build_parser().parse_args(["run", path, "--target-time", "0.02", "--no-profile", "--no-record", "--json"]))
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"measured", "predicted", "error", "scale_model", "notes"}
    assert set(out["measured"]) >= {"step_time_s", "p20_s", "p80_s", "tokens_per_s", "power", "energy_per_step_j",
                                    "energy_per_token_j", "kernels"}
    command(build_parser().parse_args(["run", path, "--target-time", "0.02", "--no-profile", "--no-record"]))
    text = capsys.readouterr().out
    assert "measured" in text and "predicted" in text and "step time" in text and "not measured (" in text


def test_prediction_of_the_same_program_with_a_calibration(tmp_path: Path) -> None:
    """With this CPU calibrated, the run predicts the program that ran and reports the error."""
    from emulator.calibrate.command import build_calibration
    from emulator.calibrate.points import collect
    from emulator.calibrate.sweeps import BenchPoint
    from emulator.files import write_json_atomic
    from emulator.measure.machine import device_fingerprint

    points = [BenchPoint("gemm", "gemm", {"m": m, "n": m, "k": m}, "fp32") for m in (64, 128, 256, 384, 512)]
    points += [BenchPoint("copy", "copy", {"bytes": b}, "fp32") for b in (65536, 1 << 20, 1 << 22)]
    points += [BenchPoint("elementwise", "add", {"rows": r, "cols": 256}, "fp32") for r in (64, 1024)]
    fingerprint = device_fingerprint("cpu")
    measured = collect("cpu", True, progress=False, points=points)
    data = build_calibration(measured, fingerprint, {"op": 1e-6, "view": 1e-7})
    write_json_atomic(data, tmp_path / "calibrations" / f"{fingerprint['key']}.json")
    result = run_scenario(load_scenario(scenario(tmp_path, INFER)), "cpu", record=False, **FAST)
    assert result.predicted is not None and result.predicted.total_s > 0
    assert result.predicted.provenance == "calibrated"
    assert result.error == pytest.approx(result.predicted.total_s / result.measured.total_s - 1)
    assert set(result.predicted_phases) == {"prefill", "decode"}
    out = result.to_json()
    assert out["predicted"]["kernels"] and "gemm" in out["predicted"]["kernels"]


def test_scale_runs_a_smaller_scale_model_and_the_plan_estimates_its_time(tmp_path: Path) -> None:
    """`--scale 0.5` runs 2 of 4 layers; the plan estimates each part's steps, build and total before running."""
    s = load_scenario(scenario(tmp_path, INFER, layers=4))
    dev = parse_device("cpu")
    plan = runplan.plan_run(s, dev, free_bytes=1e12, scale=0.5, target_time_s=0.02, profile=False)
    assert plan.model.num_layers == 2 and dict(plan.scale_model or {}) == {"num_layers": 2, "of": 4}  # type: ignore[union-attr]
    assert any(n.endswith("2 of 4 layers (--scale 0.5)") for n in plan.notes)
    est = plan.estimate
    assert [p.name for p in est.parts] == ["prefill", "decode"]
    assert all(p.step_s > 0 and p.num_calls >= runplan.MIN_REPS and p.build_s > 0 for p in est.parts)
    assert est.total_s == pytest.approx(sum(p.build_s + p.num_calls * p.step_s for p in est.parts))
    assert "step times from" in est.describe()
    with pytest.raises(EmulatorError, match="--scale"):
        runplan.plan_run(s, dev, free_bytes=1e12, scale=1.5)


def test_a_smaller_scale_is_suggested_within_the_limit(tmp_path: Path) -> None:
    """The suggested --scale keeps whole layers and its estimate is within the limit; none when even one layer
    takes longer."""
    s = load_scenario(scenario(tmp_path, INFER, layers=8))
    dev = parse_device("cpu")
    plan = runplan.plan_run(s, dev, free_bytes=1e12, target_time_s=0.02, profile=False)
    one = runplan.suggested_scale(s, plan, dev, 1e9, target_time_s=0.02, profile=False)
    assert one is not None and one[0] == 1.0
    assert runplan.suggested_scale(s, plan, dev, 0.0, target_time_s=0.02, profile=False) is None
    limit = plan.estimate.total_s * 0.6
    found = runplan.suggested_scale(s, plan, dev, limit, target_time_s=0.02, profile=False)
    if found is not None:  # the build and per-layer costs may leave no scale under 60% of the full run
        scale, est = found
        assert 0 < scale < 1 and runplan.scaled(s.model, scale).num_layers == round(scale * 8)  # type: ignore[union-attr]
        assert est.total_s <= plan.estimate.total_s


def test_past_the_limit_the_command_refuses_without_yes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Non-interactively, a run estimated past the limit is refused with a message naming --yes and --scale (or
    what to lower); --yes runs it, printing the estimate and progress on stderr."""
    from emulator.cli import run as cli_run

    monkeypatch.setattr(cli_run, "CONFIRM_ABOVE_S", 0.0)
    path = str(scenario(tmp_path, INFER))
    base = ["run", path, "--target-time", "0.02", "--no-profile", "--no-record"]
    with pytest.raises(EmulatorError, match=r"estimated at about .*Fix: add --yes.*(--scale|lower batch_size)"):
        command(build_parser().parse_args(base))
    command(build_parser().parse_args([*base, "--yes"]))
    err = capsys.readouterr().err
    assert err.startswith("estimated run time: about ")  # the whole model: no scale model named
    assert "prefill: building the model" in err and "elapsed, ETA" in err and "measured; predicting" in err
    command(build_parser().parse_args([*base, "--yes", "--quiet"]))
    assert capsys.readouterr().err == ""
