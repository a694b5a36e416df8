"""`emulator calibrate` and `emulator validate`: measuring on this machine, and checking against published runs."""

from __future__ import annotations

import argparse
import sys

from emulator.calibrate.command import calibrate_device
from emulator.cli.output import print_json, table
from emulator.stats import median
from emulator.units import fmt_seconds
from emulator.validation.accuracy_records import gather, stale
from emulator.validation.aic_reference import compare as aic_reference
from emulator.validation.aic_reference import render as render_aic_reference
from emulator.validation.baselines import baselines
from emulator.validation.baselines import render as render_baselines
from emulator.validation.measured_stack import SOURCE as MEASURED_STACK_SOURCE
from emulator.validation.measured_stack import render as render_measured_stack
from emulator.validation.measured_stack import validate_measured_stack
from emulator.validation.published_aic import (
    BLACKWELL_CSV,
    BLACKWELL_SAMPLE_ROWS,
    SAMPLE_ROWS,
    UNSEEN_SAMPLE_ROWS,
    WEIGHT_ONLY_SAMPLE_ROWS,
    validate_aic,
)
from emulator.validation.published_aic import render as render_aic
from emulator.validation.published_attention import SOURCE as ATTENTION_SOURCE
from emulator.validation.published_attention import render as render_attention
from emulator.validation.published_attention import validate_attention_tables
from emulator.validation.published_gemm import SOURCE as GEMM_SOURCE
from emulator.validation.published_gemm import TABLES as GEMM_TABLES
from emulator.validation.published_gemm import render as render_gemm
from emulator.validation.published_gemm import validate_gemm_tables
from emulator.validation.published_hopper import BLACKWELL as BLACKWELL_TRAINING
from emulator.validation.published_hopper import KIND as HOPPER_TRAINING
from emulator.validation.published_hopper import render as render_hopper
from emulator.validation.published_hopper import validate_published as hopper_cases
from emulator.validation.published_moe import SGLANG_SOURCE as MOE_SGLANG_SOURCE
from emulator.validation.published_moe import SOURCE as MOE_SOURCE
from emulator.validation.published_moe import VLLM_SOURCE as MOE_VLLM_SOURCE
from emulator.validation.published_moe import render as render_moe
from emulator.validation.published_moe import validate_moe_tables
from emulator.validation.published_serving import HELDOUT_SOURCE as MLPERF_HELDOUT_SOURCE
from emulator.validation.published_serving import OPERATING_SOURCE as MLPERF_LATENCY_SOURCE
from emulator.validation.published_serving import render as render_serving
from emulator.validation.published_serving import render_heldout as render_mlperf_heldout
from emulator.validation.published_serving import render_operating_points as render_mlperf_latency
from emulator.validation.published_serving import validate_heldout as mlperf_heldout_cases
from emulator.validation.published_serving import validate_operating_points as mlperf_latency_cases
from emulator.validation.published_serving import validate_published as serving_cases
from emulator.validation.published_torchtitan import KIND as TORCHTITAN_KIND
from emulator.validation.published_torchtitan import SOURCE as TORCHTITAN_SOURCE
from emulator.validation.published_torchtitan import render as render_torchtitan
from emulator.validation.published_torchtitan import validate_torchtitan
from emulator.validation.published_training import render as render_training
from emulator.validation.published_training import validate_published as training_cases
from emulator.validation.sources import (
    A100_SOURCE,
    AIC_BLACKWELL_SOURCE,
    AIC_HOPPER_SOURCE,
    AIC_UNSEEN_BLACKWELL_SOURCE,
    AIC_UNSEEN_SOURCE,
    AIC_WEIGHT_ONLY_SOURCE,
    BLACKWELL_TRAINING_SOURCE,
    HOPPER_TRAINING_SOURCE,
    MLPERF_H100_SOURCE,
    by_source,
    case_records,
)
from emulator.validation.sources import render as render_sources
from emulator.validation.validate import validate_device


def calibrate(args: argparse.Namespace) -> None:
    path, data = calibrate_device(args.device, quick=args.quick, out=args.out, points_file=args.points,
                                  record=not args.no_record, progress=not args.json,
                                  only=args.only.split(",") if args.only else None)
    if args.json:
        print_json({"path": path, **data})
        return
    rows = [[fam, str(v["num_points"]), f"{v['error'] * 100:.1f}%", f"{v['math']:.2f}", f"{v['memory']:.2f}",
             fmt_seconds(v["overhead_s"]), str(v["tile"])] for fam, v in sorted(data["families"].items())]
    print(table(rows, ["family", "points", "held-out error", "math eff", "memory eff", "overhead", "tile"]))
    print(f"\ncalibration of {data['fingerprint'].get('name')} ({data['device'] or 'no shipped profile'}) -> {path}")
    for line in data.get("warnings", []):
        print(f"warning: {line}", file=sys.stderr)


def _validated_line(behind: list[str], aic_all: bool) -> str:
    if aic_all:
        return "stack_profiles/fits/validated.json: not checked (--aic-all predicts other rows than its sample)"
    if not behind:
        return "stack_profiles/fits/validated.json (the errors predictions report as validated) matches this run"
    return (f"stack_profiles/fits/validated.json is stale: {len(behind)} record(s) differ from this run; rerun "
            "python scripts/accuracy.py\n" + "\n".join(f"  {line}" for line in behind))


def validate(args: argparse.Namespace) -> None:
    if args.published:
        training, serving, hopper = training_cases(), serving_cases(), hopper_cases()
        mlperf_heldout = mlperf_heldout_cases()
        mlperf_latency = mlperf_latency_cases()
        blackwell_training = hopper_cases(kind=BLACKWELL_TRAINING)
        torchtitan = validate_torchtitan()
        aic = validate_aic(None if args.aic_all else SAMPLE_ROWS)
        blackwell = validate_aic(None if args.aic_all else BLACKWELL_SAMPLE_ROWS, path=BLACKWELL_CSV)
        unseen_limit = None if args.aic_all else UNSEEN_SAMPLE_ROWS
        unseen = validate_aic(unseen_limit, unseen_models=True)
        unseen_blackwell = validate_aic(unseen_limit, path=BLACKWELL_CSV, unseen_models=True)
        weight_only = validate_aic(None if args.aic_all else WEIGHT_ONLY_SAMPLE_ROWS, weight_only_rows=True)
        measured = validate_measured_stack()
        gemm = validate_gemm_tables()
        gemm_vllm, gemm_sglang = validate_gemm_tables("vllm"), validate_gemm_tables("sglang")
        attention = validate_attention_tables()
        moe, moe_sglang = validate_moe_tables(), validate_moe_tables(engine="sglang")
        moe_vllm = validate_moe_tables(engine="vllm")
        errors = [abs(c["error"]) for c in (*training["cases"], *serving["cases"])]
        reference = baselines({HOPPER_TRAINING: hopper, BLACKWELL_TRAINING: blackwell_training,
                               TORCHTITAN_KIND: torchtitan})
        result = {
            "cases": [*training["cases"], *serving["cases"]],
            "summary": {"median_abs_error": median(errors), "max_abs_error": max(errors), "num_cases": len(errors),
                        "training": training["summary"], "inference": serving["summary"]},
            # Its own section: Megatron-Core on H100 (cases, skipped, summary by task and family).
            "megatron_core_h100": hopper,
            "mlperf_heldout": mlperf_heldout,  # MLPerf Inference on other chips and engines: held out, never fitted on
            # Each MLPerf Server run's own TTFT and TPOT at the rate it was scheduled at: never fitted on
            "mlperf_server_latency": mlperf_latency,
            "megatron_core_blackwell": blackwell_training,  # the same on B200 and GB200: held out, never fitted on
            "torchtitan_h100": torchtitan,  # the torchtitan team's H100 benchmarks: held out, never fitted on
            "aic": aic,  # its own section: closed-loop TPOT and TTFT, summarised per engine
            "aic_blackwell": blackwell,  # the same on B200 and GB200: held out, never fitted on
            "aic_unseen": unseen,  # the same for models no fit has seen (Kimi-K2.5, MiniMax-M2.5) on Hopper
            "aic_unseen_blackwell": unseen_blackwell,  # and on B200
            # Hopper's 4-bit checkpoints run weight-only (gpt-oss MXFP4, Kimi-K2.5 INT4): held out, never fitted on
            "aic_weight_only": weight_only,
            "h200_stack": measured,  # the stack mechanisms against our own H200 kernel and step measurements
            "aic_gemm": gemm,  # device transfer at the kernel level: measured GEMMs on Hopper and Blackwell
            "aic_gemm_vllm": gemm_vllm,  # the same for vLLM's GEMMs, and SGLang's: other collectors and kernels
            "aic_gemm_sglang": gemm_sglang,
            "aic_attention": attention,  # the same for measured context attention
            "aic_moe": moe,  # the same for measured fused MoE layers
            "aic_moe_sglang": moe_sglang,  # and for SGLang's own fused MoE kernels, by layout
            "aic_moe_vllm": moe_vllm,  # and vLLM's
            # The constant-MFU guesses the training predictions have to beat, on the same cases.
            "baselines": reference,
        }
        records = (case_records(training, source=A100_SOURCE, stack="eager")
                   + case_records(serving, source=MLPERF_H100_SOURCE, stack="trtllm")
                   + case_records(mlperf_heldout, source=MLPERF_HELDOUT_SOURCE, stack="")
                   + case_records(mlperf_latency, source=MLPERF_LATENCY_SOURCE, stack="")
                   + case_records(hopper, source=HOPPER_TRAINING_SOURCE, stack="megatron-core")
                   + case_records(blackwell_training, source=BLACKWELL_TRAINING_SOURCE, stack="megatron-core")
                   + case_records(torchtitan, source=TORCHTITAN_SOURCE, stack="torchtitan")
                   + case_records(aic, source=AIC_HOPPER_SOURCE, stack="")
                   + case_records(blackwell, source=AIC_BLACKWELL_SOURCE, stack="")
                   + case_records(unseen, source=AIC_UNSEEN_SOURCE, stack="")
                   + case_records(unseen_blackwell, source=AIC_UNSEEN_BLACKWELL_SOURCE, stack="")
                   + case_records(weight_only, source=AIC_WEIGHT_ONLY_SOURCE, stack="")
                   + case_records(measured, source=MEASURED_STACK_SOURCE, stack="")
                   + case_records(gemm, source=GEMM_SOURCE, stack="")
                   + case_records(gemm_vllm, source=GEMM_TABLES["vllm"][1], stack="")
                   + case_records(gemm_sglang, source=GEMM_TABLES["sglang"][1], stack="")
                   + case_records(attention, source=ATTENTION_SOURCE, stack="")
                   + case_records(moe, source=MOE_SOURCE, stack="")
                   + case_records(moe_sglang, source=MOE_SGLANG_SOURCE, stack="")
                   + case_records(moe_vllm, source=MOE_VLLM_SOURCE, stack=""))
        sources = by_source(records)
        result["all_cases"], result["by_source"] = records, sources
        # NVIDIA AIConfigurator's own errors on the same sampled serving rows, beside the emulator's.
        result["aic_reference"] = reference_serving = aic_reference(records)
        # Whether stack_profiles/fits/validated.json (what predictions report as `validated`) is this run's: a
        # full AIConfigurator run (--aic-all) predicts other rows than the sample it was gathered from.
        behind = [] if args.aic_all else stale(gather(result))
        result["validated_records"] = {"checked": not args.aic_all, "differ": behind}
        if args.json:
            print_json(result)
        else:
            print(render_training(training) + "\n\n" + render_serving(serving) + "\n\n"
                  + render_mlperf_heldout(mlperf_heldout) + "\n\n" + render_mlperf_latency(mlperf_latency)
                  + "\n\n" + render_hopper(hopper)
                  + "\n\n" + render_hopper(blackwell_training) + "\n\n" + render_baselines(reference)
                  + "\n\n" + render_torchtitan(torchtitan)
                  + "\n\n" + render_aic(aic) + "\n\n" + render_aic(blackwell) + "\n\n" + render_aic(unseen)
                  + "\n\n" + render_aic(unseen_blackwell) + "\n\n" + render_aic(weight_only) + "\n\n"
                  + render_measured_stack(measured) + "\n\n"
                  + render_gemm(gemm) + "\n\n" + render_gemm(gemm_vllm) + "\n\n" + render_gemm(gemm_sglang)
                  + "\n\n" + render_attention(attention) + "\n\n" + render_moe(moe) + "\n\n"
                  + render_moe(moe_sglang) + "\n\n" + render_moe(moe_vllm) + "\n\n"
                  + render_sources(sources) + "\n\n" + render_aic_reference(reference_serving) + "\n\n"
                  + _validated_line(behind, args.aic_all))
        return
    out = validate_device(args.device, only=args.only.split(",") if args.only else None, progress=not args.json)
    if args.json:
        print_json(out)
        return
    rows = [[c["id"], fmt_seconds(c["measured"]), fmt_seconds(c["predicted"]), f"{c['error']:+.1%}"]
            for c in out["cases"]]
    print(table(rows, ["workload", "measured", "predicted", "error"]))
    s = out["summary"]
    print(f"\nmedian |error| {s['median_abs_error']:.1%}, max |error| {s['max_abs_error']:.1%} "
          f"({out['provenance']} from {out['calibration']})")
