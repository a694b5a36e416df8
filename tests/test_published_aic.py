"""AIConfigurator's Hopper serving points: the shipped CSV, how rows map to closed-loop scenarios, why rows are
skipped, the deterministic stratified sample, a small end-to-end validation and its `validate --published` wiring.
Accuracy figures belong to the validate report, not here."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from emulator.cli import measure
from emulator.cli.main import main
from emulator.validation.aic_deployments import (
    AIC_PROMPT_MARGIN,
    DSR1_TRT_PLAIN,
    UNSEEN_B200_UPDATE,
    UNSEEN_MODELS,
    aic_mixed_chunk,
    measured,
    sglang_b200_mtp,
)
from emulator.validation.aic_load import prompts_per_iteration
from emulator.validation.published_aic import (
    BLACKWELL_CSV,
    BLACKWELL_SAMPLE_ROWS,
    CSV,
    MODELS,
    SAMPLE_ROWS,
    UNSEEN_SAMPLE_ROWS,
    WEIGHT_ONLY_SAMPLE_ROWS,
    attention_ranks,
    campaign,
    client,
    deployment,
    holds_weights,
    layout_suspects,
    partition,
    precision_of,
    render,
    rows,
    scenario_of,
    select,
    skip_reason,
    unseen,
    validate_aic,
    weight_only,
)


def _row(row_id: str) -> dict[str, str]:
    return next(r for r in rows() if r["id"] == row_id)


def _usable() -> list[dict[str, str]]:
    return [r for r in rows() if skip_reason(r) is None]


def test_the_csv_ships_with_its_source() -> None:
    """The package holds all 1,884 rows with unique ids, and its README states where they come from."""
    assert len(rows()) == 1884 and len({r["id"] for r in rows()}) == 1884
    readme = (CSV.parent / "README.md").read_text(encoding="utf-8")
    assert CSV.name in readme and "ai-dynamo/aiconfigurator" in readme and "Apache-2.0" in readme


def test_a_row_maps_to_its_closed_loop_scenario() -> None:
    """An aggregated MoE row becomes its system, layout (ep from moe_ep_size), precision, engine, lengths and
    concurrency; the KV cache takes the engine's default for the precision."""
    row = next(r for r in _usable() if r["backend"] == "trtllm" and r["model_path"] == "Qwen/Qwen3-235B-A22B-FP8"
               and int(r["moe_ep_size"]) > 1)
    scenario, spec = scenario_of(row)
    assert scenario.system is not None and scenario.system.name == "hgx-h100"
    assert (spec.tp, spec.pp, spec.ep) == (int(row["tp_size"]), 1, int(row["moe_ep_size"]))
    assert scenario.num_devices == spec.tp and scenario.model.name == "qwen3-235b-a22b"  # type: ignore[union-attr]
    assert (spec.precision, spec.kv, spec.engine, spec.scenario) == ("fp8", "fp8", "trtllm", "concurrency")
    assert spec.concurrency == int(row["batch_size"])
    assert (spec.input_tokens.mean, spec.output_tokens.mean) == (int(row["isl"]), int(row["osl"]))
    dense = next(r for r in _usable() if r["model_path"] == "meta-llama/Llama-3.1-8B-Instruct"
                 and r["gemm_quant_mode"] == "")
    assert scenario_of(dense)[1].precision == "bf16" and scenario_of(dense)[1].ep == 1


def test_inferencex_rows_take_that_clients_lengths_and_report_over_every_request() -> None:
    """InferenceX rows (its dated campaign) are drawn as InferenceMAX's client draws them: lengths uniform in
    [0.8 x isl, isl] and [0.8 x osl, osl], 10 prompts per client, every request measured; aiperf rows keep fixed
    lengths and, as AIConfigurator's benchmark script runs aiperf, 20 requests per client from a burst, all
    measured."""
    usable = _usable()
    ix = next(r for r in usable if r["silicon_data_source"].startswith("source_file=2026-04-06.csv"))
    aiperf = next(r for r in usable if "gap-analysis" in r["silicon_data_source"])
    assert (client(ix), client(aiperf)) == ("inferencex", "aiperf")
    assert {client(r) for r in usable if r["silicon_data_source"].startswith("db-dump/")} == {"inferencex"}
    spec = scenario_of(ix)[1]
    isl, osl, n = int(ix["isl"]), int(ix["osl"]), int(ix["batch_size"])
    assert (spec.input_tokens.kind, spec.input_tokens.minimum, spec.input_tokens.maximum) == \
        ("uniform", int(0.8 * isl), isl)
    assert (spec.output_tokens.minimum, spec.output_tokens.maximum) == (int(0.8 * osl), osl)
    assert (spec.num_requests, spec.measured_requests) == (10 * n, "all")
    fixed = scenario_of(aiperf)[1]
    assert (fixed.input_tokens.kind, fixed.measured_requests, fixed.num_requests) == \
        ("fixed", "all", 20 * int(aiperf["batch_size"]))


@pytest.mark.parametrize(("select_row", "reason"), [
    (lambda r: r["mode"] == "disagg", "disaggregated"),
    (lambda r: r["mode"] == "agg" and "dynamo_version=" in r["silicon_data_source"], "served through NVIDIA Dynamo"),
    (lambda r: r["model_path"] == "Qwen/Qwen3.5-397B-A17B", "no preset for Qwen/Qwen3.5-397B-A17B"),
    (lambda r: r["model_path"] == "zhipuai/GLM-5", "no preset for zhipuai/GLM-5"),
    (lambda r: r["mode"] == "agg" and r["model_path"] in MODELS and r["attention_dp_size"] == "64",
     "is more than the 8 GPUs of the one"),  # 64 attention ranks named for an 8-GPU measurement
    (lambda r: r["mode"] == "agg" and r["model_path"] == "Qwen/Qwen3-235B-A22B-FP8" and r["tp_size"] == "1"
     and r["moe_tp_size"] == "2", "moe_tp_size x moe_ep_size != tp_size"),
    (lambda r: r["mode"] == "agg" and r["tp_size"] == "64" and r["model_path"].startswith("deepseek-ai")
     and r["gemm_quant_mode"] == "fp8",
     "is more than the 8 GPUs of the one"),
])
def test_rows_the_model_cannot_express_are_skipped_with_a_reason(select_row, reason: str) -> None:  # type: ignore[no-untyped-def]
    """Disaggregated rows, models without a preset, layouts beyond the node (64 attention ranks) and expert layouts
    other than moe_tp x moe_ep = tp are skipped, each with its stated reason."""
    chosen = [r for r in rows() if select_row(r)]
    assert chosen and all(reason in (skip_reason(r) or "") for r in chosen)


def test_inferencex_gb200_rows_are_skipped_as_the_disaggregated_deployments_they_were() -> None:
    """InferenceX's GB200 DeepSeek-R1 rows carry the deployment's GPU count as tp_size (12 to 72, most not dividing
    the 128 heads): Dynamo disaggregated runs over several trays, skipped before any layout check; the GB200 rows of
    AIConfigurator's own campaign are not."""
    gb200 = [r for r in rows(BLACKWELL_CSV) if r["system"] == "gb200" and client(r) == "inferencex"]
    assert len(gb200) >= 50 and {int(r["tp_size"]) for r in gb200} >= {12, 32, 64, 72}
    assert all("Dynamo disaggregated deployments" in (skip_reason(r) or "") for r in gb200)
    own = [r for r in rows(BLACKWELL_CSV) if r["system"] == "gb200" and client(r) == "aiperf"]
    assert own and not any("Dynamo disaggregated deployments" in (skip_reason(r) or "") for r in own)


def test_four_bit_weights_on_hopper_are_a_held_out_section_of_their_own() -> None:
    """nvfp4 and int4_wo rows on Hopper run weight-only (w4a16): the fitted and unseen sides list them as skipped
    (so no fit samples them), the weight-only side predicts them, whatever their model; Blackwell's int4_wo rows stay
    skipped."""
    low = [r for r in rows() if r["gemm_quant_mode"] in ("nvfp4", "int4_wo")]
    assert low and all(precision_of(r, r["gemm_quant_mode"]) == "w4a16" and weight_only(r) for r in low)
    reasons = {s["id"]: s["reason"] for side in (False, True) for s in partition(CSV, unseen_models=side)[1]}
    assert all(r["id"] in reasons for r in low)
    usable, skipped = partition(CSV, weight_only_rows=True)
    assert {r["id"] for r in usable} == {r["id"] for r in low if skip_reason(r) is None}
    assert all("aic_weight_only" in reasons[r["id"]] for r in usable)
    assert {MODELS[r["model_path"]] for r in usable} == {"gpt-oss-120b", "kimi-k2.5"}
    assert len(usable) + len(skipped) == len(low)
    out = validate_aic(2, weight_only_rows=True)
    assert out["cases"] and out["summary"]["models"] == "weight-only" and "weight-only" in render(out)
    kimi = [r for r in rows(BLACKWELL_CSV) if r["gemm_quant_mode"] == "int4_wo"]
    assert kimi and all("predicted on Hopper only" in str(skip_reason(r)) for r in kimi)


def test_the_sample_is_deterministic_and_spread() -> None:
    """The sample repeats exactly, holds SAMPLE_ROWS distinct rows, draws from every (engine, model, system) group
    of the usable rows, and spans each large group's lowest and highest concurrency."""
    usable = _usable()
    first, second = select(usable), select(list(reversed(usable)))
    assert [r["id"] for r in first] == [r["id"] for r in second]
    assert len({r["id"] for r in first}) == len(first) == SAMPLE_ROWS
    group = lambda r: (r["backend"], MODELS[r["model_path"]], r["system"])  # noqa: E731
    sizes = Counter(group(r) for r in usable)
    assert set(Counter(group(r) for r in first)) == set(sizes)
    for key, size in sizes.items():
        if size >= SAMPLE_ROWS // len(sizes):
            levels = [int(r["batch_size"]) for r in usable if group(r) == key]
            picked = [int(r["batch_size"]) for r in first if group(r) == key]
            assert min(picked) == min(levels) and max(picked) == max(levels)
    assert select(usable, None) == usable


def test_small_validation_reports_two_cases_per_row_and_summaries() -> None:
    """A six-row validation gives `<row id>:tpot` and `<row id>:ttft` for each predicted row with the published
    value of the CSV, error = predicted / published - 1, the stack, a source, per-engine summaries of both metrics
    and a count for every skipped row."""
    out = validate_aic(6)
    by_id = {r["id"]: r for r in rows()}
    ids = [c["id"] for c in out["cases"]]
    assert len(ids) == 12 and len(set(ids)) == 12
    for c in out["cases"]:
        row_id, suffix = c["id"].rsplit(":", 1)
        assert suffix in ("tpot", "ttft") and f"{row_id}:{'ttft' if suffix == 'tpot' else 'tpot'}" in ids
        assert c["metric"] == f"{suffix}_ms" and c["published"] == float(by_id[row_id][f"silicon_{suffix}_ms"])
        assert c["error"] == pytest.approx(c["predicted"] / c["published"] - 1)
        assert c["stack"] == by_id[row_id]["backend"] and "aiconfigurator" in c["source"] and c["predicted"] > 0
    s = out["summary"]
    engines = {c["stack"] for c in out["cases"]}
    for metric in ("tpot_ms", "ttft_ms"):
        assert set(s["metrics"][metric]) == {"all", *engines}
        assert s["metrics"][metric]["all"]["num_cases"] == 6
        assert set(s["metrics"][metric]["all"]) == {"num_cases", "median_abs_error", "max_abs_error", "mean_error"}
        per = s["by_engine_model"][metric]
        assert set(per) == engines and sum(g["num_cases"] for e in per.values() for g in e.values()) == 6
        assert all(set(models) == {c["model"] for c in out["cases"] if c["stack"] == e} for e, models in per.items())
    assert sum(s["skipped_by_reason"].values()) == len(out["skipped"]) == s["num_rows"] - s["num_predicted"] - (
        s["num_usable"] - s["num_sampled"])
    text = render(out)
    assert all(i in text for i in ids) and "median |error|" in text and "skipped rows" in text
    assert "per engine and model" in text


def test_validate_published_adds_an_aic_section(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`emulator validate --published --json` keeps the training and MLPerf fields and adds `aic` with its cases;
    `--aic-all` asks for every usable row instead of the sample."""
    training = {"cases": [{"id": "t", "metric": "mfu", "published": 0.5, "predicted": 0.55, "error": 0.1}],
                "summary": {"num_cases": 1}}
    serving = {"cases": [{"id": "s", "unit": "tokens/s", "published": 10.0, "predicted": 8.0, "error": -0.2}],
               "summary": {"num_cases": 1}}
    asked: list[tuple[int | None, str, bool]] = []
    monkeypatch.setattr(measure, "training_cases", lambda: training)
    monkeypatch.setattr(measure, "serving_cases", lambda: serving)
    def small(limit: int | None, path: Path = CSV, unseen_models: bool = False,
              weight_only_rows: bool = False) -> dict:
        asked.append((limit, path.name, "weight-only" if weight_only_rows else unseen_models))
        return validate_aic(2, path=path, unseen_models=unseen_models, weight_only_rows=weight_only_rows)

    monkeypatch.setattr(measure, "validate_aic", small)
    monkeypatch.setattr(measure, "render_training", lambda result: "training table")
    monkeypatch.setattr(measure, "render_serving", lambda result: "mlperf table")
    assert main(["validate", "--published", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in out["cases"]] == ["t", "s"]
    assert out["summary"]["training"] == training["summary"] and out["summary"]["inference"] == serving["summary"]
    assert out["summary"]["num_cases"] == 2 and len(out["aic"]["cases"]) == 4 and "skipped_by_reason" in \
        out["aic"]["summary"]
    assert {"t", "s"} <= {c["id"] for c in out["all_cases"]}  # every section's cases, with stack and source
    assert all(set(c) - {"model"} == {"id", "metric", "published", "predicted", "error", "stack", "source"}
               for c in out["all_cases"])  # and the model where the section names it: the serving rows
    aic_cases = [c for c in out["all_cases"]
                 if c["source"] in ("AIConfigurator Hopper sample", "AIConfigurator Blackwell (held out)")]
    assert aic_cases and all(c.get("model") in MODELS.values() for c in aic_cases)
    assert {(r["source"], r["stack"]) for r in out["by_source"]} >= {("MLPerf Inference v4.1 H100", "trtllm")}
    assert len(out["aic_blackwell"]["cases"]) == 4 and out["aic_blackwell"]["summary"]["file"] == BLACKWELL_CSV.name
    assert {r["source"] for r in out["by_source"]} >= {"AIConfigurator Blackwell (held out)"}
    # the models no fit has seen: their own sections, on Hopper and on Blackwell
    assert {c["model"] for c in out["aic_unseen"]["cases"] + out["aic_unseen_blackwell"]["cases"]} <= UNSEEN_MODELS
    assert out["aic_unseen"]["cases"] and out["aic_unseen"]["summary"]["models"] == "unseen"
    assert {r["source"] for r in out["by_source"]} >= {"AIConfigurator unseen models (held out)"}
    # Hopper's 4-bit checkpoints run weight-only: a section of their own
    assert out["aic_weight_only"]["cases"] and out["aic_weight_only"]["summary"]["models"] == "weight-only"
    assert {r["source"] for r in out["by_source"]} >= {"AIConfigurator weight-only 4-bit, Hopper (held out)"}
    assert main(["validate", "--published", "--aic-all"]) == 0
    assert asked == [(SAMPLE_ROWS, CSV.name, False), (BLACKWELL_SAMPLE_ROWS, BLACKWELL_CSV.name, False),
                     (UNSEEN_SAMPLE_ROWS, CSV.name, True), (UNSEEN_SAMPLE_ROWS, BLACKWELL_CSV.name, True),
                     (WEIGHT_ONLY_SAMPLE_ROWS, CSV.name, "weight-only"),
                     (None, CSV.name, False), (None, BLACKWELL_CSV.name, False), (None, CSV.name, True),
                     (None, BLACKWELL_CSV.name, True), (None, CSV.name, "weight-only")] \
        and "AIConfigurator" in capsys.readouterr().out


def test_models_no_fit_has_seen_stay_out_of_the_fitted_sample() -> None:
    """Kimi-K2.5's and MiniMax-M2.5's rows are sampled apart: the fitted models' sample lists them as skipped (so
    it is the sample the stacks were fitted on), the unseen section predicts only them, with the memory fraction
    their InferenceX scripts set (MiniMax-M2.5 on H100: 0.90)."""
    fitted = validate_aic(0, path=CSV)
    reasons = fitted["summary"]["skipped_by_reason"]
    assert reasons["a model no fit has seen: its own held-out section"] == sum(unseen(r) for r in rows(CSV))
    assert fitted["summary"]["num_rows"] == len(rows(CSV))
    held = validate_aic(2, path=CSV, unseen_models=True)
    assert held["cases"] and all(c["model"] in UNSEEN_MODELS for c in held["cases"])
    assert held["summary"]["num_rows"] == sum(unseen(r) for r in rows(CSV))
    h100 = next(r for r in rows(CSV) if unseen(r) and r["system"] == "h100_sxm" and skip_reason(r) is None)
    assert dict(scenario_of(h100)[1].engine_settings)["defaults.kv_memory_fraction"] == 0.90


def test_partition_splits_every_row_once_as_validate_and_the_fits_sample_them() -> None:
    """The fitted side keeps each row no skip reason stops and that is not an unseen model's; the unseen side only
    the unseen models' rows; every row lands once, and a skipped row says why."""
    usable, skipped = partition(CSV)
    assert len(usable) + len(skipped) == len(rows(CSV))
    assert [r["id"] for r in usable] == [r["id"] for r in rows(CSV)
                                         if skip_reason(r) is None and not unseen(r) and not weight_only(r)]
    assert all(s["reason"] for s in skipped)
    held, held_skipped = partition(CSV, unseen_models=True)
    assert held and all(unseen(r) for r in held + [r for r in rows(CSV) if r["id"] in {s["id"] for s in held_skipped}])
    assert len(held) + len(held_skipped) == sum(unseen(r) for r in rows(CSV))


def test_deployments_state_what_their_launch_scripts_set() -> None:
    """InferenceX's TensorRT-LLM Llama 3.1 70B rows carry --max_num_tokens 16384, and batch waiting only at 1k/1k
    below tp 8; its SGLang DeepSeek-R1 H200 rows their chunk and memory settings; AIConfigurator's own vLLM rows
    the token budget and sequence limit its generator gives a vLLM server, its TensorRT-LLM rows the token budget
    (whole 32-token KV blocks) and KV memory fraction it gives a TensorRT-LLM worker; its SGLang rows of 0.5.6 and
    later mixed prefill chunks into decode batches (its generator's --enable-mixed-chunk), its 0.5.1.post1 ones
    nothing. InferenceX's TensorRT-LLM and SGLang scripts stream 10-30 tokens per event, its vLLM ones one (the
    default), AIConfigurator's own rows one."""
    usable = [r for r in rows() if skip_reason(r) is None]
    trt = [r for r in usable if r["backend"] == "trtllm" and MODELS[r["model_path"]] == "llama3.1-70b"]
    assert trt and all(deployment(r)["max_batch_tokens"] == 16384 for r in trt)
    assert all(deployment(r)["engine_settings"]["defaults.stream_interval"] == 10 for r in trt)
    waiting = [r for r in trt if "scheduler.batch_wait_iters" in deployment(r)["engine_settings"]]
    assert waiting and all(r["isl"] == r["osl"] == "1024" and int(r["tp_size"]) < 8 for r in waiting)
    assert len(waiting) == sum(r["isl"] == r["osl"] == "1024" and int(r["tp_size"]) < 8 for r in trt)
    spec = scenario_of(waiting[0])[1]
    assert dict(spec.engine_settings)["scheduler.batch_wait_iters"] == 20 and spec.max_batch_tokens == 16384
    sgl = [r for r in usable if r["backend"] == "sglang" and MODELS[r["model_path"]] == "deepseek-v3"]
    assert sgl and all(deployment(r)["max_batch_tokens"] == 32768 for r in sgl)
    assert all(deployment(r)["engine_settings"]["scheduler.max_prefill_tokens"] == 32768 for r in sgl
               if r["system"] == "h200_sxm")
    assert {deployment(r)["engine_settings"]["defaults.stream_interval"] for r in sgl} == {10}
    assert all("defaults.stream_interval" not in deployment(r).get("engine_settings", {}) for r in usable
               if r["backend"] == "vllm" or client(r) == "aiperf")
    aiperf = [r for r in usable if client(r) == "aiperf"]
    own_sgl = [r for r in aiperf if r["backend"] == "sglang"]
    early = [r for r in own_sgl if r["backend_version"] == "0.5.1.post1"]
    assert early and all(deployment(r) == {} for r in early)
    later = [r for r in own_sgl if r["backend_version"] != "0.5.1.post1"]
    assert {r["backend_version"] for r in later} >= {"0.5.6.post2", "0.5.8.post1"}
    assert all(deployment(r) == {"engine_settings": {"scheduler.mixed_batches": True}} for r in later)
    assert dict(scenario_of(later[0])[1].engine_settings) == {"scheduler.mixed_batches": True}
    assert (aic_mixed_chunk("0.5.6.post2"), aic_mixed_chunk("0.5.10"), aic_mixed_chunk("0.5.1.post1"),
            aic_mixed_chunk("0.4.9")) == (True, True, False, False)
    own_trt = [r for r in aiperf if r["backend"] == "trtllm"]
    for row in own_trt:
        tokens = int(row["batch_size"]) + int(row["isl"]) + 1500
        assert deployment(row) == {"max_batch_tokens": (tokens + 31) // 32 * 32,
                                   "engine_settings": {"defaults.kv_memory_fraction": 0.8}}
    eight = next(r for r in own_trt if r["isl"] == "4096" and r["batch_size"] == "8")
    assert scenario_of(eight)[1].max_batch_tokens == 5632  # one 4096-token prompt per iteration, not 8192's two
    vllm = [r for r in aiperf if r["backend"] == "vllm"]
    assert vllm and all(deployment(r) == {"max_batch_tokens": 512 + int(r["isl"]) + 1500, "batch_size": 512}
                        for r in vllm)
    assert scenario_of(vllm[0])[1].max_batch_tokens == 2012 + int(vllm[0]["isl"])
    mtp = [r for r in usable if "speculative" in deployment(r) and attention_ranks(r) == 1]
    assert mtp and all(r["backend"] == "trtllm" and "measured=2026-01-14" in r["silicon_data_source"] for r in mtp)
    assert scenario_of(mtp[0])[1].speculative == (3, (0.85, 0.63, 0.63))
    for row in mtp:  # the MTP script's per-run token budget: (MTP + 1) x CONC + ISL + 64, rounded up to 64
        assert deployment(row)["max_batch_tokens"] == (4 * int(row["batch_size"]) + int(row["isl"]) + 127) // 64 * 64
        assert deployment(row)["engine_settings"] == {"defaults.kv_memory_fraction": 0.75,
                                                      "defaults.stream_interval": 10}


def test_inferencex_gpt_oss_trtllm_rows_state_their_scripts_budget_memory_and_expert_parallelism() -> None:
    """benchmarks/gptoss_fp4_{h200,b200}_trt(_slurm).sh: --max_num_tokens 20000 and free_gpu_memory_fraction 0.85 for
    every H200 and B200 TensorRT-LLM gpt-oss row; the H200 rows measured 2025-11-02 ran --ep_size=$TP (experts spread
    whole over the tensor-parallel ranks), whatever their moe columns say, the B200 ones their columns' layout."""
    gpt = [r for r in partition(CSV, weight_only_rows=True)[0]
           if r["backend"] == "trtllm" and MODELS[r["model_path"]] == "gpt-oss-120b" and r["system"] == "h200_sxm"]
    assert gpt and all(deployment(r)["max_batch_tokens"] == 20000 and
                       deployment(r)["engine_settings"] == {"defaults.kv_memory_fraction": 0.85,
                                                            "defaults.stream_interval": 20} for r in gpt)
    november = [r for r in gpt if "measured=2025-11-02" in r["silicon_data_source"]]
    assert november and all(r["moe_ep_size"] == "1" and int(r["tp_size"]) > 1 for r in november)
    for row in november:
        spec = scenario_of(row)[1]
        assert spec.tp == spec.ep == int(row["tp_size"])
    assert all("parallel" not in deployment(r) for r in gpt if r not in november)
    b200 = [r for r in rows(BLACKWELL_CSV) if skip_reason(r) is None and r["backend"] == "trtllm"
            and MODELS[r["model_path"]] == "gpt-oss-120b" and r["system"] == "b200_sxm"]
    assert b200 and all(deployment(r) == {"max_batch_tokens": 20000,
                                          "engine_settings": {"defaults.kv_memory_fraction": 0.85,
                                                              "defaults.stream_interval": 20}} for r in b200)


def test_inferencex_b200_vllm_gpt_oss_rows_run_an_fp8_kv_cache_from_the_vllm_0_11_2_update() -> None:
    """benchmarks/gptoss_fp4_b200(_docker).sh set kv-cache-dtype fp8 from 2025-12-05 on: the B200 vLLM gpt-oss rows
    measured since state an FP8 KV cache, the earlier ones and the Hopper rows (whose scripts never set it) none."""
    gpt = [r for r in rows(BLACKWELL_CSV) + rows() if skip_reason(r) is None and r["backend"] == "vllm"
           and MODELS[r["model_path"]] == "gpt-oss-120b"]
    later = [r for r in gpt if r["system"] == "b200_sxm" and measured(r) >= "2025-12-05"]
    assert later and len(later) < len(gpt)
    assert all(deployment(r) == {"kv_precision": "fp8"} for r in later)
    assert all("kv_precision" not in deployment(r) for r in gpt if r not in later)
    assert scenario_of(later[0])[1].kv_precision == "fp8"


def test_unseen_models_b200_scripts_state_their_april_updates() -> None:
    """The unseen models' B200 vLLM scripts from their April 2026 updates (MiniMax-M2.5 FP8 2026-04-03, its NVFP4
    script 2026-04-08, Kimi-K2.5 NVFP4 2026-04-20) on: FP8 KV cache, memory fraction 0.90, 2 x ISL tokens an iteration,
    20 tokens a streamed event; their earlier rows keep the fraction their scripts set then, MiniMax's first NVFP4
    campaign (no script read) nothing."""
    unseen = [r for r in rows(BLACKWELL_CSV) if skip_reason(r) is None and MODELS[r["model_path"]] in UNSEEN_MODELS]
    late = [r for r in unseen if measured(r) >= UNSEEN_B200_UPDATE.get((MODELS[r["model_path"]], r["gemm_quant_mode"]),
                                                                      "9")]
    assert {(MODELS[r["model_path"]], r["gemm_quant_mode"]) for r in late} == set(UNSEEN_B200_UPDATE)
    for row in late:
        assert deployment(row) == {"kv_precision": "fp8", "max_batch_tokens": 2 * int(row["isl"]),
                                   "engine_settings": {"defaults.kv_memory_fraction": 0.90,
                                                       "defaults.stream_interval": 20}}
    early = [r for r in unseen if r not in late]
    assert early and all("kv_precision" not in deployment(r) for r in early)
    assert any(deployment(r) == {} for r in early if r["gemm_quant_mode"] == "nvfp4"
               and MODELS[r["model_path"]] == "minimax-m2.5")
    assert scenario_of(late[0])[1].kv_precision == "fp8"


def test_the_stated_deployments_admit_the_prompts_their_rows_measured() -> None:
    """Little's law on AIConfigurator's own closed-loop rows (`prompts_per_iteration`): every TensorRT-LLM row's
    iterations took no more whole prompts than its stated token budget leaves beside its decodes, and every SGLang
    row's no more prompt tokens than its chunk (the engine's 8192, less the decodes mixed in). The SGLang generator
    rule's --max-prefill-tokens isl + 1500 would have admitted one or two prompts an iteration: at least five of its
    0.5.6 rows took more, which is why it is not stated."""
    own = [r for r in _usable() if client(r) == "aiperf"]
    trt = [r for r in own if r["backend"] == "trtllm"]
    assert trt and all(prompts_per_iteration(r) <= max((deployment(r)["max_batch_tokens"] - int(r["batch_size"]))
                                                       // int(r["isl"]), 1) for r in trt)
    sgl = [r for r in own if r["backend"] == "sglang"]
    assert sgl and all(prompts_per_iteration(r) * int(r["isl"]) <= 8192 - int(r["batch_size"]) for r in sgl)

    def capped(r: dict[str, str]) -> int:  # whole prompts within isl + 1500 less the decodes, the first always
        return 1 + max(AIC_PROMPT_MARGIN - int(r["batch_size"]), 0) // int(r["isl"])

    mixed = [r for r in sgl if aic_mixed_chunk(r["backend_version"])]
    assert sum(prompts_per_iteration(r) > 1.1 * capped(r) for r in mixed) >= 5


def test_the_november_2025_deepseek_rows_ran_expert_parallel() -> None:
    """InferenceX's TensorRT-LLM DeepSeek-R1 H200 rows of 2025-11-02 ran their script's --ep_size=$TP whatever the
    rows' moe columns say, DP attention above 64 clients (32 at 8k/1k) with its balance at 60 iterations, its token
    budget and memory fraction."""
    usable = [r for r in rows() if skip_reason(r) is None]
    plain = [r for r in usable if r["backend"] == "trtllm" and MODELS[r["model_path"]] == "deepseek-v3"
             and r["system"] == "h200_sxm" and "measured=2025-11-02" in r["silicon_data_source"]]
    assert plain and all(r["moe_ep_size"] == "1" for r in plain)  # what the rows' columns say
    for row in plain:
        conc, isl = int(row["batch_size"]), int(row["isl"])
        out = deployment(row)
        dp = conc > (32 if (row["isl"], row["osl"]) == ("8192", "1024") else 64)
        assert out["parallel"] == {"tp": 8, "pp": 1, "ep": 8, **({"attention_dp": True} if dp else {})}
        assert out["max_batch_tokens"] == (conc + isl + 127) // 64 * 64
        assert out["engine_settings"] == {"defaults.kv_memory_fraction": 0.75, "defaults.stream_interval": 10,
                                          **({"scheduler.adp_balance_iters": 60} if dp else {})}
    row = next(r for r in plain if int(r["batch_size"]) <= 32)
    spec = scenario_of(row)[1]
    assert (spec.tp, spec.ep, spec.attention_dp) == (8, 8, False)


def test_blackwell_rows_are_a_held_out_test_with_fp4_native() -> None:
    """The same sample's B200 and GB200 aggregated rows ship beside the Hopper ones; nvfp4 is the fp4 precision
    there (fp4 matrix units) and the weight-only format on Hopper; the launch-script settings read
    from H200 scripts stay on H200 rows; a GB200 replica may span trays inside its 72-GPU NVLink domain; a small
    validation of the file predicts Blackwell systems."""
    blackwell = rows(BLACKWELL_CSV)
    assert len(blackwell) == 1771 and {r["system"] for r in blackwell} == {"b200_sxm", "gb200"}
    assert {r["mode"] for r in blackwell} == {"agg"}
    fp4 = next(r for r in blackwell if r["gemm_quant_mode"] == "nvfp4" and r["system"] == "b200_sxm")
    assert precision_of(fp4, "nvfp4") == "fp4" and precision_of(fp4, "fp8_block") == "fp8"
    hopper = next(r for r in rows() if r["gemm_quant_mode"] == "nvfp4")
    assert precision_of(hopper, "nvfp4") == "w4a16"
    llama = next(r for r in blackwell if r["backend"] == "trtllm" and r["model_path"] == "meta-llama/Llama-3.1-70B"
                 and client(r) == "inferencex")
    assert deployment(llama) == deployment({**llama, "system": "h200_sxm"}) and \
        deployment(llama)["max_batch_tokens"] == 16384  # the B200 scripts set what the H200 ones do
    assert deployment({**llama, "system": "gb200"}) == {}
    wide = {**fp4, "system": "gb200", "tp_size": "8", "moe_tp_size": "1", "moe_ep_size": "8", "pp_size": "1"}
    assert "NVLink domain" not in str(skip_reason(wide))
    out = validate_aic(4, path=BLACKWELL_CSV)
    assert out["cases"] and {c["system"] for c in out["cases"]} <= {"hgx-b200", "gb200-nvl72"}
    assert out["summary"]["file"] == BLACKWELL_CSV.name and BLACKWELL_CSV.name in render(out)


def test_blackwell_mtp_campaigns_state_their_drafts() -> None:
    """InferenceX's B200 TensorRT-LLM DeepSeek-R1 campaigns started by its MTP commits (2026-01-14, 2026-02-05,
    2026-02-06) run three chained drafts (one with DP attention) at the stated per-position rates, with their
    scripts' token budget and KV fraction; the same model's other B200 campaigns and other systems' rows state none."""
    ds = [r for r in rows(BLACKWELL_CSV) if skip_reason(r) is None and r["backend"] == "trtllm"
          and MODELS[r["model_path"]] == "deepseek-v3" and client(r) == "inferencex"]
    mtp = [r for r in ds if "speculative" in deployment(r)]
    assert mtp and all(r["system"] == "b200_sxm" for r in mtp)
    assert {r["silicon_data_source"].split("measured=")[1][:10] for r in mtp} == {"2026-01-14", "2026-02-05",
                                                                                 "2026-02-06"}
    plain = [r for r in ds if r not in mtp and measured(r) in DSR1_TRT_PLAIN[(r["system"], r["gemm_quant_mode"])]]
    assert plain and all("speculative" not in deployment(r) for r in plain)
    assert all(deployment(r) == {"engine_settings": {"defaults.stream_interval": 10}} for r in ds
               if r not in mtp and r not in plain)
    for row in mtp:
        k = 1 if attention_ranks(row) > 1 else 3
        out = deployment(row)
        assert out["speculative"] == {"draft_tokens": k, "acceptance_rate": [0.85, 0.63, 0.63][:k]}
        assert out["max_batch_tokens"] == ((k + 1) * int(row["batch_size"]) + int(row["isl"]) + 127) // 64 * 64
        fp8_dp = k == 1 and "measured=2026-02-05" in row["silicon_data_source"]
        assert out["engine_settings"]["defaults.kv_memory_fraction"] == (0.7 if fp8_dp else 0.8)
    assert scenario_of(mtp[0])[1].speculative[1] in ((0.85,), (0.85, 0.63, 0.63))


def test_blackwell_plain_deepseek_trtllm_campaigns_state_their_scripts() -> None:
    """InferenceX's plain B200 TensorRT-LLM DeepSeek-R1 campaigns (`DSR1_TRT_PLAIN`) carry their scripts' prompt
    budget (clients + ISL + 64 rounded up to 64; at least 8192 from the agg updates of 2026-01-29 and 2026-02-03),
    KV fraction and, on 2025-11-02, the scripts' own expert-parallel and DP-attention rules whatever the rows' moe
    columns say; DP attention brings its balance at 60 iterations, the fp8 update of 2026-01-29 batch waiting at
    1k/1k from 64 clients."""
    ds = [r for r in rows(BLACKWELL_CSV) if skip_reason(r) is None and r["backend"] == "trtllm"
          and MODELS[r["model_path"]] == "deepseek-v3" and r["system"] == "b200_sxm" and "speculative" not in
          deployment(r)]
    by_day = {day: [r for r in ds if measured(r) == day] for day in ("2025-11-02", "2025-12-15", "2026-01-29",
                                                                     "2026-02-03")}
    assert all(by_day.values())
    for day, rows_ in by_day.items():
        for row in rows_:
            out, conc, isl = deployment(row), int(row["batch_size"]), int(row["isl"])
            budget = (conc + isl + 127) // 64 * 64
            assert out["max_batch_tokens"] == (max(budget, 8192) if day >= "2026-01-29" else budget)
            assert out["engine_settings"]["defaults.stream_interval"] == 10
            dp = out.get("parallel", {}).get("attention_dp", False) or attention_ranks(row) > 1
            assert out["engine_settings"].get("scheduler.adp_balance_iters") == (60 if dp else None)
            assert ("parallel" in out) == (day == "2025-11-02")
    november = by_day["2025-11-02"]
    assert all(r["moe_ep_size"] == "1" for r in november)  # what the rows' columns say
    fp8 = [r for r in november if r["gemm_quant_mode"] == "fp8"]
    assert fp8 and all(deployment(r)["parallel"]["ep"] == int(r["tp_size"]) for r in fp8)
    fp4 = {(r["tp_size"], r["isl"], r["osl"], int(r["batch_size"])): deployment(r)["parallel"] for r in november
           if r["gemm_quant_mode"] == "nvfp4"}
    above = {("8", "1024", "1024"): 8, ("8", "1024", "8192"): 16}  # clients beyond which experts spread; else 32
    assert all(p["ep"] == (int(tp) if c > above.get((tp, i, o), 32) else 1) for (tp, i, o, c), p in fp4.items())
    assert {p["ep"] for p in fp4.values()} == {4, 8}  # every row beyond its threshold: none ran tensor-parallel experts
    assert all(p.get("attention_dp", False) == (c > 32 if i == "8192" else c >= 256) for (_, i, _, c), p in fp4.items())
    assert all(deployment(r)["engine_settings"]["defaults.kv_memory_fraction"] == 0.8 for r in november)
    update = by_day["2026-01-29"]
    waiting = [r for r in update if "scheduler.batch_wait_iters" in deployment(r)["engine_settings"]]
    assert waiting and all(r["isl"] == r["osl"] == "1024" and int(r["batch_size"]) * attention_ranks(r) >= 64
                           for r in waiting)
    assert {deployment(r)["engine_settings"]["defaults.kv_memory_fraction"] for r in update} <= {0.8, 0.75, 0.7}
    eight_k = next(r for r in update if r["isl"] == "8192")
    assert scenario_of(eight_k)[1].max_batch_tokens > 8192  # the whole prompt beside its clients' decodes


def test_blackwell_sglang_rows_state_their_scripts_receive_interval() -> None:
    """InferenceX's B200 SGLang DeepSeek-R1 rows of 2026-03-25 carry their scripts' settings: the scheduler takes new
    requests every 10 decode iterations below 16 clients and every 30 from 16 (fp8 at tp 4: 10), with the scripts'
    running cap, memory fraction and chunk; the recv interval reaches the simulation's scheduling. Its FP4 rows of
    November 2025 carry the same FP4 settings, those of 2025-11-02 experts spread over every tp rank."""
    rows_ = [r for r in rows(BLACKWELL_CSV) if r["backend"] == "sglang" and r["system"] == "b200_sxm"
             and "measured=2026-03-25" in r["silicon_data_source"] and skip_reason(r) is None]
    assert rows_
    for row in rows_:
        out, conc = deployment(row), int(row["batch_size"]) * attention_ranks(row)
        recv = out["engine_settings"]["scheduler.recv_interval_iters"]
        fp4, tp4 = row["gemm_quant_mode"] == "nvfp4", row["tp_size"] == "4"
        assert recv == (10 if tp4 and not fp4 or conc < 16 else 30)
        mtp = sglang_b200_mtp(row)
        assert (out["batch_size"], out["max_batch_tokens"]) == ((256, 16384) if fp4 else (32, 8192) if tp4 else
                                                                 (512, 16384) if mtp else (128, 32768))
        assert out["kv_precision"] == "fp8"  # every script's --kv-cache-dtype fp8_e4m3
        assert ("speculative" in out) == mtp
    # The MTP configuration's points beyond the plain one's search space: 128-512 clients, or 8k prompts at tp 8
    # beyond 4 clients; the plain configuration's own points keep its script
    assert {(r["isl"], r["batch_size"]) for r in rows_ if sglang_b200_mtp(r)} >= {("1024", "256"), ("8192", "8")}
    assert not any(sglang_b200_mtp(r) for r in rows_ if r["isl"] == "1024" and int(r["batch_size"]) <= 64)
    assert deployment(next(r for r in rows_ if sglang_b200_mtp(r)))["speculative"] == \
        {"draft_tokens": 2, "acceptance_rate": [0.85, 0.63]}
    spec = scenario_of(rows_[0])[1]
    assert ("scheduler.recv_interval_iters", deployment(rows_[0])["engine_settings"]["scheduler.recv_interval_iters"]) \
        in spec.engine_settings
    # The FP4 campaigns of November 2025 ran dsr1_fp4_b200_docker.sh's same settings; the first with --enable-ep-moe
    november = [r for r in rows(BLACKWELL_CSV) if r["backend"] == "sglang" and r["system"] == "b200_sxm"
                and measured(r) in ("2025-11-02", "2025-11-10") and skip_reason(r) is None]
    assert {measured(r) for r in november} == {"2025-11-02", "2025-11-10"}
    for row in november:
        out, conc = deployment(row), int(row["batch_size"]) * attention_ranks(row)
        assert (out["batch_size"], out["max_batch_tokens"], out["kv_precision"]) == (256, 16384, "fp8")
        assert out["engine_settings"]["scheduler.recv_interval_iters"] == (30 if conc >= 16 else 10)
        tp = int(row["tp_size"])
        assert out.get("parallel") == ({"tp": tp, "pp": 1, "ep": tp} if measured(row) == "2025-11-02" else None)


def test_a_campaign_stating_layouts_that_cannot_run_is_flagged_not_dropped() -> None:
    """vLLM 0.12's H200 aiperf campaign states Qwen3 235B-A22B FP8 rows at tp 1 (236 GB of weights on a 141 GB
    GPU): its rows carry `layout_suspect` (the fits leave them out), are predicted all the same, and the summary
    gives each engine's errors without them; no other campaign, Hopper or Blackwell, states such a layout."""
    tp1 = next(r for r in rows() if r["backend"] == "vllm" and "235B" in r["model_path"] and r["tp_size"] == "1")
    assert not holds_weights(tp1)
    assert all(holds_weights(r) for r in rows() if campaign(r) != campaign(tp1) and r["mode"] == "agg")
    assert list(layout_suspects()) == [("vllm", "0.12.0", "h200_sxm", "aiperf")] and not layout_suspects(BLACKWELL_CSV)
    assert "cannot hold their weights" in layout_suspects()[campaign(tp1)]
    sample = select(partition()[0])
    flagged = {r["id"] for r in sample if campaign(r) == campaign(tp1)}
    plain = {r["id"] for r in sample if r["backend"] == "vllm" and r["id"] not in flagged}
    picks = {sorted(flagged)[0], sorted(plain)[0]}
    out = validate_aic(only=lambda r: r["id"] in picks)
    assert {c["id"].rsplit(":", 1)[0] for c in out["cases"] if "layout_suspect" in c} == {sorted(flagged)[0]}
    screened = out["summary"]["without_layout_suspects"]
    assert screened["metrics"]["tpot_ms"]["vllm"]["num_cases"] == 1 == out["summary"]["metrics"]["tpot_ms"]["vllm"][
        "num_cases"] - 1
    assert screened["campaigns"][0]["campaign"] == ["vllm", "0.12.0", "h200_sxm", "aiperf"]
    assert "cannot hold their weights" in render(out)
