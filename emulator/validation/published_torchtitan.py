"""Predicted versus published torchtitan training runs on H100 (emulator/data/published_training_torchtitan.yaml).

The cases are the torchtitan team's benchmark tables of December 2024 (Llama 3.1 8B, 70B and 405B on 8 to 512 H100;
FSDP, context, tensor and pipeline parallelism; bf16 and torchao float8; torch.compile on or off; async TP; 1F1B
and interleaved 1F1B): a held-out test of the `torchtitan` stack profile, whose items come from torchtitan's
source and documentation, and of the calibration it runs on; nothing here is fitted. Each case becomes a scenario
by one rule for all:
- model: the shipped preset (llama3.1-8b, -70b, -405b) at the case's sequence length (the 256k-token runs stretch
  the released 128k context);
- hardware: `count` h100-sxm in hgx-h100 nodes at the runs' 500 W power limit (`power_limit_w`), each carrying the
  runs' 96 GB of HBM2e at 2.4 TB/s (`GRAND_TETON_MEMORY`, `DeviceProfile.with_main_memory`) where the profile's
  carry 80 GB of HBM3 at 3.35 TB/s: the same SMs and clocks, memory-bound kernels at the calibrated share of the
  slower memory (a case that overflows the 96 GB is still predicted; `fits` says so);
- plan: fsdp, tp, pp, cp as given (dp = the FSDP degree, ZeRO-3 over it); without pipelining the local batch
  at once, with it the local batch split into pp micro-batches (the runs' torchtitan, 9dec370, leaves
  experimental.pipeline_parallel_microbatches unset, and its pipelining_utils.build_pipeline_schedule then takes
  the pipeline degree: 32 sequences over pp 8 run as 8 micro-batches of 4); interleaved 1F1B with two stages per
  rank;
- stack: `framework: torchtitan` (torch.compile's fusions, FSDP2's overlaps, per-op selective recompute, float8
  casts), with the run's own departures as `framework_settings`: its torch's attention kernel, FlashAttention-2
  (`efficiency.attention_kernel_rate` `FLASH_ATTENTION_2_RATE`: SDPA's first choice on H100 before torch 2.9, where
  the calibration measured cuDNN's); without torch.compile no fused families
  (`fusion.families: []`); async TP hides the tensor-parallel collectives (`overlap.tp: 1`: torchtitan's
  enable_async_tensor_parallel decomposes each all-gather / reduce-scatter into micro-pipelined matmuls);
- precision: float8 -> fp8, else bf16; activation checkpointing: selective (per-op) -> `recompute: selective`
  (the stack's every-other-matmul policy), full -> full.
error = predicted tokens/s/GPU / published - 1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from emulator.cluster.training import predict_training
from emulator.engine.calibration import efficiency_for
from emulator.errors import EmulatorError
from emulator.hardware import load_device, load_system
from emulator.published import load_cases, profile_name
from emulator.scenario import Parallel, Scenario, Training
from emulator.validation.sources import error_summary
from emulator.workloads.config import TransformerConfig
from emulator.workloads.presets import preset

KIND = "training_torchtitan"
STACK = "torchtitan"
SOURCE = "torchtitan H100 benchmarks (held out)"
MODEL_PRESETS = {"Llama 3.1 8B": "llama3.1-8b", "Llama 3.1 70B": "llama3.1-70b", "Llama 3.1 405B": "llama3.1-405b"}
# The runs' H100 boards (torchtitan benchmarks/llama3_h100_202412_torchtitan.md: Grand Teton hosts, 'Each H100 GPU
# is equipped with 96GB HBM2e with 2.4 TB/sec peak memory bandwidth'): main memory capacity (B) and bandwidth (B/s).
GRAND_TETON_MEMORY = (96e9, 2.4e12)
# The runs' attention: torch's scaled_dot_product_attention at torch 1963fc8 (2024-12-23, the benchmark's own table),
# where SDPA ran FlashAttention-2 first on H100 (pytorch/pytorch#141133; #142132, on 2.6.0.dev20241204: 329 TFLOP/s
# against cuDNN's 631), while the shipped calibrations (torch 2.11) measured cuDNN's fused attention, SDPA's first
# choice on SM 9.0 from torch 2.9 (pytorch/pytorch#162073): FlashAttention-2's rate over cuDNN's on H100 at head dim
# 128 and 4k-16k tokens, forward 368-370 against 595-609 TFLOP/s and backward 310-322 against 499-518 (Shah et al.
# 2024, FlashAttention-3, arXiv 2407.08608, Figures 5 and 6).
FLASH_ATTENTION_2_RATE = 0.61
RECOMPUTE = {"selective (per-op)": "selective", "full": "full", "none": "none"}


def case_scenario(case: dict[str, Any]) -> Scenario:
    """The scenario a published case describes (see the module docstring)."""
    cfg, par, hw = case["config"], case["config"]["parallelism"], case["hardware"]
    count, fsdp, tp, pp, cp = (int(x) for x in (hw["count"], par["fsdp"], par["tp"], par["pp"], par["cp"]))
    if fsdp * tp * pp * cp != count:
        raise EmulatorError(f"case {case['id']}: fsdp x tp x pp x cp = {fsdp * tp * pp * cp}, not its {count} GPUs. "
                            "Fix: correct the parallelism in published_training_torchtitan.yaml.")
    local = int(cfg["local_batch_size"])
    interleaved = pp > 1 and cfg.get("pipeline_schedule") == "Interleaved1F1B"
    if local % pp:
        raise EmulatorError(f"case {case['id']}: local batch {local} does not split into pp {pp} micro-batches. "
                            "Fix: correct local_batch_size or the parallelism in published_training_torchtitan.yaml.")
    parallel = Parallel(tp=tp, pp=pp, cp=cp, dp=fsdp, zero=3, fsdp=True, microbatch_size=local // pp,
                        virtual_stages=2 if interleaved else 1)
    settings: list[tuple[str, Any]] = [("efficiency.attention_kernel_rate", FLASH_ATTENTION_2_RATE)]
    if not cfg["compile"]:
        settings.append(("fusion.families", []))
    if cfg["async_tp"]:
        settings.append(("overlap.tp", 1.0))
    training = Training(seq_len=int(cfg["seq_len"]), global_batch_size=int(cfg["global_batch_size"]),
                        precision="fp8" if str(cfg["precision"]).upper().startswith("FP8") else "bf16",
                        recompute=RECOMPUTE[cfg["activation_checkpoint"]], parallel=parallel, framework=STACK,
                        framework_settings=tuple(settings), path=str(case["id"]))
    device = load_device(profile_name(hw["device"]) or hw["device"])
    device = device.with_power_limit(float(hw["power_limit_w"]), f"{case['id']}: the runs' default power limit")
    device = device.with_main_memory(*GRAND_TETON_MEMORY, "torchtitan benchmarks/llama3_h100_202412_torchtitan.md: "
                                     "Grand Teton, each H100 with 96GB HBM2e with 2.4 TB/sec peak memory bandwidth")
    model = preset(MODEL_PRESETS[case["model"]["name"]])
    assert isinstance(model, TransformerConfig)
    if model.max_seq_len < training.seq_len:  # the 256k runs extend RoPE's positions past the released context
        model = dataclasses.replace(model, max_seq_len=training.seq_len)
    return Scenario(path=str(case["id"]), model=model, device=device, system=load_system("hgx-h100"),
                    num_devices=count, training=training)


def predict_case(case: dict[str, Any]) -> dict[str, Any]:
    """A case's record: id, metric, published, predicted, error, stack, source (and the plan)."""
    scenario = case_scenario(case)
    tr = scenario.training
    assert tr is not None
    pred = predict_training(scenario, efficiency_for(scenario.device))
    predicted = tr.global_batch_size * tr.seq_len / (pred.step_time_s * pred.num_devices)
    published = float(case["value"])
    return {"id": case["id"], "metric": case["metric"]["name"], "unit": case["metric"]["unit"],
            "published": published, "predicted": predicted, "error": predicted / published - 1, "stack": STACK,
            "source": case["source"], "precision": tr.precision, "recompute": tr.recompute,
            "plan": pred.plan.as_dict(), "step_time_s": pred.step_time_s, "fits": pred.memory.fits,
            "framework_settings": dict(tr.framework_settings)}


def validate_torchtitan() -> dict[str, Any]:
    """Every case: the `--json` section `torchtitan_h100` of `validate --published`."""
    cases = [predict_case(case) for case in load_cases(KIND)]
    by = {p: error_summary([c for c in cases if c["precision"] == p]) for p in sorted({c["precision"] for c in cases})}
    return {"cases": cases, "summary": {**error_summary(cases), "by_precision": by, "stack": STACK,
                                        "file": f"published_{KIND}.yaml"}}


def render(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [f"torchtitan, {s['file']} (stack: {s['stack']}; held out, never fitted; H100 SXM profile at 500 W)",
             f"{'case':62s} {'published':>10s} {'predicted':>10s} {'error':>8s}"]
    lines += [f"{c['id']:62s} {c['published']:10.4g} {c['predicted']:10.4g} {c['error']:+8.1%}"
              for c in result["cases"]]
    lines.append(f"all: {s['num_cases']} cases, median |error| {s['median_abs_error']:.1%}, max |error| "
                 f"{s['max_abs_error']:.1%}, mean error {s['mean_error']:+.1%}")
    lines += [f"  {p}: {v['num_cases']} cases, median |error| {v['median_abs_error']:.1%}, mean error "
              f"{v['mean_error']:+.1%}" for p, v in s["by_precision"].items()]
    return "\n".join(lines)


__all__ = ["KIND", "SOURCE", "case_scenario", "predict_case", "render", "validate_torchtitan"]
