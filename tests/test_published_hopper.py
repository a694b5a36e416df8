"""Published Megatron-Core runs on H100 as validation cases: how each case maps to a scenario and how the published
metric is computed from a predicted step (never how close the predictions are)."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

import emulator.validation.published_hopper as published_hopper
from emulator.cli import main
from emulator.errors import EmulatorError
from emulator.published import load_cases
from emulator.validation.published_hopper import (
    BLACKWELL,
    KIND,
    MODEL_PRESETS,
    STACK,
    Unmodelled,
    case_model,
    case_scenario,
    counts_causal,
    known_regressions,
    model_flops_per_token,
    number,
    render,
    validate_published,
)
from emulator.validation.sources import error_summary
from emulator.workloads.config import TransformerConfig
from emulator.workloads.hf import from_hf_config
from emulator.workloads.presets import preset

CASES = load_cases("training_hopper")
IDS = [c["id"] for c in CASES]


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return validate_published()


def _case(case_id: str) -> dict[str, Any]:
    return next(c for c in CASES if c["id"] == case_id)


def test_the_shipped_file_holds_forty_distinct_cases() -> None:
    """The package ships the 40 H100 cases, each id once."""
    assert len(CASES) == 40 and len(set(IDS)) == 40


def test_every_case_is_predicted_or_skipped_with_a_reason(result: dict[str, Any]) -> None:
    """Each case id appears exactly once, as a prediction or as a skip that says why."""
    seen = [c["id"] for c in result["cases"]] + [s["id"] for s in result["skipped"]]
    assert sorted(seen) == sorted(IDS)
    assert all(s["reason"] for s in result["skipped"])


def test_case_records_carry_the_asked_fields(result: dict[str, Any]) -> None:
    """Every record names its id, metric, published and predicted values, error, stack and source."""
    for c in result["cases"]:
        assert {"id", "metric", "published", "predicted", "error", "stack", "source"} <= set(c)
        assert c["stack"] == STACK
        assert c["error"] == pytest.approx(c["predicted"] / c["published"] - 1)


@pytest.mark.parametrize("case_id", IDS)
def test_plan_sizes_multiply_to_the_gpu_count(case_id: str) -> None:
    """tp * pp * dp * cp is the case's GPU count; a dp the case states is the one used."""
    case = _case(case_id)
    s = case_scenario(case)
    assert s.training is not None
    p = s.training.parallel
    count = case["hardware"]["count"]
    assert p.tp * p.pp * p.dp * p.cp == count == s.num_devices
    stated = number(case["config"]["parallelism"].get("dp"))
    assert stated in (None, p.dp)
    assert s.training.framework == "megatron-core"
    assert s.system is not None and s.system.name == "hgx-h100" and s.device.name == "h100-sxm"


@pytest.mark.parametrize("case_id", IDS)
def test_case_fields_map_to_the_scenario(case_id: str) -> None:
    """vp becomes virtual stages ('n/a' is 1), fsdp > 0 turns FSDP on, FP8 variants are fp8 and BF16 bf16, and the
    task and micro-batch are the case's."""
    case = _case(case_id)
    cfg, par = case["config"], case["config"]["parallelism"]
    tr = case_scenario(case).training
    assert tr is not None
    assert tr.parallel.virtual_stages == (number(par.get("vp")) or 1)
    assert tr.parallel.ep == (number(par.get("ep")) or 1)
    assert tr.parallel.fsdp == bool(number(par.get("fsdp")))
    assert tr.parallel.microbatch_size == (cfg.get("micro_batch_size") or 1)
    assert tr.precision == ("fp8" if str(cfg["precision"]).startswith("FP8") else "bf16")
    assert tr.task == str(cfg.get("task", "pretrain")).lower()
    assert (tr.lora is not None) == (tr.task == "lora")
    assert tr.seq_len == number(cfg["seq_len"]) and tr.global_batch_size == cfg["global_batch_size"]


@pytest.mark.parametrize("case_id", IDS)
def test_case_models_are_their_presets_at_the_stated_sizes(case_id: str) -> None:
    """A case's model is its preset; only GPT-3's padded vocabulary and long contexts change a size."""
    case = _case(case_id)
    model, changes = case_model(case)
    assert set(changes) <= {"vocab_size", "max_seq_len"}
    base = preset(MODEL_PRESETS[case["model"]["name"]])
    assert isinstance(base, TransformerConfig)
    assert model.vocab_size == (number(case["model"].get("vocab")) or base.vocab_size)
    assert model.max_seq_len >= (number(case["config"]["seq_len"]) or 0)
    for key, field in (("layers", "num_layers"), ("hidden", "hidden_size"), ("heads", "num_heads")):
        assert getattr(model, field) == case["model"][key]


def test_an_unknown_model_or_task_is_unmodelled_with_a_reason() -> None:
    """A case the emulator has no preset or task for raises `Unmodelled` saying which."""
    case = CASES[0]
    with pytest.raises(Unmodelled, match="no preset"):
        case_scenario({**case, "model": {**case["model"], "name": "Mystery 1T"}})
    with pytest.raises(Unmodelled, match="task"):
        case_scenario({**case, "config": {**case["config"], "task": "distillation"}})


def test_tokens_per_gpu_is_the_global_batch_over_step_and_gpus(result: dict[str, Any]) -> None:
    """tokens/s/GPU = global_batch * seq_len / (step_time * GPUs)."""
    for c in result["cases"]:
        if c["metric"] != "tokens_per_sec_per_gpu":
            continue
        plan = c["plan"]
        expected = plan["global_batch_size"] * plan["seq_len"] / (c["step_time_s"] * plan["num_devices"])
        assert c["predicted"] == pytest.approx(expected)


def test_model_tflops_use_the_flops_per_token_of_the_source(result: dict[str, Any]) -> None:
    """Model TFLOP/s/GPU = model FLOPs per token (the source's convention) x tokens/s/GPU."""
    for c in result["cases"]:
        if c["metric"] != "model_tflops_per_gpu":
            continue
        case = _case(c["id"])
        model, _ = case_model(case)
        plan = c["plan"]
        tokens = plan["global_batch_size"] * plan["seq_len"] / (c["step_time_s"] * plan["num_devices"])
        flops = model_flops_per_token(model, plan["seq_len"], causal=counts_causal(case))
        assert c["predicted"] == pytest.approx(tokens * flops / 1e12)


def test_flops_per_token_counts_weights_three_times_and_attention_over_the_keys() -> None:
    """The count on a tiny model, term by term."""
    m = TransformerConfig(name="tiny", num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2,
                          ffn_hidden_size=96, vocab_size=100, max_seq_len=128)
    s, h, d, kv = 32, 64, 16, 2
    weights = 2 * (h * h + 2 * h * kv * d + h * h + 3 * h * 96) + h * 100  # q, k, v, o, SwiGLU; logits
    attention = 2 * 6 * s * 4 * (d + d)  # per layer: 3 passes x 2 FLOPs x keys x heads x (qk + v widths)
    assert model_flops_per_token(m, s, causal=False) == 6 * weights + attention
    assert model_flops_per_token(m, s, causal=True) == 6 * weights + attention / 2


def test_flops_per_token_leaves_out_the_router_and_counts_routed_top_k() -> None:
    """A MoE token passes through its top-k experts, not all of them, and the router is not counted."""
    m = preset("qwen3-30b-a3b")
    assert isinstance(m, TransformerConfig)
    router = m.num_moe_layers * m.hidden_size * m.num_experts
    expected = 6 * (m.num_active_matmul_params() - router)
    assert model_flops_per_token(m, 1, causal=True) == pytest.approx(expected, rel=1e-3)


_TFLOPS_NOTE = re.compile(r"Model TFLOP/s/GPU = ([\d.]+)")
# Pretraining cases whose table counts differently: Megatron-Bridge counts GPT-OSS's gated experts as two GEMMs,
# and DeepSeek-V3's figure includes its multi-token-prediction module.
_OTHER_COUNTS = ("gpt-oss", "deepseek")


@pytest.mark.parametrize("case", [c for c in CASES if _TFLOPS_NOTE.search(c.get("notes", ""))
                                  and str(c["config"].get("task", "pretrain")) == "pretrain"
                                  and not any(k in c["id"] for k in _OTHER_COUNTS)], ids=lambda c: c["id"])
def test_flops_per_token_reproduces_each_tables_own_tflops(case: dict[str, Any]) -> None:
    """The published tokens/s times our count gives the table's own model TFLOP/s (NeMo's square attention,
    Megatron-Bridge's causal half) within the tables' rounding; one 26.04.01 pair differs by 2.3%."""
    model, _ = case_model(case)
    flops = model_flops_per_token(model, number(case["config"]["seq_len"]) or 0, causal=counts_causal(case))
    published_tflops = float(_TFLOPS_NOTE.search(case["notes"]).group(1))  # type: ignore[union-attr]
    assert case["value"] * flops / 1e12 == pytest.approx(published_tflops, rel=0.03)


def test_summary_groups_every_case_by_task_and_family(result: dict[str, Any]) -> None:
    """Per-task and per-family counts add up to all cases; each group's figures are its cases' own."""
    s = result["summary"]
    assert set(s["by_task"]) <= {"pretrain", "sft", "lora"}
    assert sum(g["num_cases"] for g in s["by_task"].values()) == s["num_cases"] == len(result["cases"])
    assert sum(g["num_cases"] for g in s["by_family"].values()) == s["num_cases"]
    for task, group in s["by_task"].items():
        assert group == error_summary([c for c in result["cases"] if c["task"] == task])
    assert "all" in render(result) and result["cases"][0]["id"] in render(result)


@pytest.mark.parametrize("text, field", [
    ("ids: [a]\n", "(top level)"),
    ("- ids: [a]\n  issue: x\n  why: y\n", "[0].why"),
    ("- ids: []\n  issue: x\n", "[0].ids"),
    ("- ids: [a]\n", "[0].issue"),
])
def test_a_bad_regressions_file_is_an_error_naming_its_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              text: str, field: str) -> None:
    path = tmp_path / "known_regressions.yaml"
    path.write_text(text)
    monkeypatch.setattr(published_hopper, "REGRESSIONS", path)
    known_regressions.cache_clear()
    try:
        with pytest.raises(EmulatorError) as err:
            known_regressions()
    finally:
        known_regressions.cache_clear()
    assert err.value.file == str(path) and err.value.field == field and "Fix:" in err.value.message


def test_documented_regressions_are_reported_with_the_rest_and_apart(result: dict[str, Any]) -> None:
    """A case whose software had a documented regression stays in every summary, carries its issue, and the summary
    without such cases is the rest's; every listed id is a shipped case."""
    listed = known_regressions()
    shipped_ids = {c["id"] for kind in (KIND, BLACKWELL) for c in load_cases(kind)}
    assert listed and set(listed) <= shipped_ids
    assert all(re.search(r"NVIDIA-NeMo/Megatron-Bridge#\d+", issue) for issue in listed.values())
    flagged = [c for c in result["cases"] if "known_regression" in c]
    assert {c["id"] for c in flagged} == set(listed) & {c["id"] for c in result["cases"]} != set()
    s = result["summary"]
    assert s["num_cases"] == len(result["cases"])  # nothing dropped
    assert s["without_known_regressions"] == error_summary([c for c in result["cases"] if c["id"] not in listed])
    assert "documented regression" in render(result) and "without regressions" in render(result)


def test_error_summary_is_median_max_and_signed_mean() -> None:
    """Median and max of |error| and the signed mean, on three known errors."""
    s = error_summary([{"error": -0.2}, {"error": 0.1}, {"error": 0.4}])
    assert s == {"num_cases": 3, "median_abs_error": pytest.approx(0.2), "max_abs_error": pytest.approx(0.4),
                 "mean_error": pytest.approx(0.1)}


def test_cli_adds_the_section_and_keeps_the_others() -> None:
    """`emulator validate --published --json` keeps its cases and summary and adds `megatron_core_h100`."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["validate", "--published", "--json"]) == 0
    data = json.loads(out.getvalue())
    assert set(data) == {"cases", "summary", "megatron_core_h100", "megatron_core_blackwell", "torchtitan_h100", "aic",
                         "mlperf_heldout", "mlperf_server_latency", "h200_stack", "aic_gemm", "aic_gemm_vllm",
                         "aic_gemm_sglang", "aic_attention", "aic_moe", "aic_moe_sglang", "aic_moe_vllm",
                         "aic_blackwell", "aic_unseen", "aic_unseen_blackwell", "aic_weight_only", "baselines",
                         "all_cases", "by_source", "aic_reference", "validated_records"}
    # The shipped validated.json is this run's (else: rerun scripts/accuracy.py)
    assert data["validated_records"] == {"checked": True, "differ": []}
    assert set(data["summary"]) == {"median_abs_error", "max_abs_error", "num_cases", "training", "inference"}
    assert len(data["cases"]) == data["summary"]["num_cases"]
    assert {c["id"] for c in data["megatron_core_h100"]["cases"]} <= set(IDS)


def test_new_presets_have_their_published_sizes() -> None:
    """nemotron4-340b has 341B parameters; gpt-oss-120b 116.8B, 5.1B active without the embedding table."""
    nemotron, oss = preset("nemotron4-340b"), preset("gpt-oss-120b")
    assert isinstance(nemotron, TransformerConfig) and isinstance(oss, TransformerConfig)
    assert nemotron.num_params() == pytest.approx(341e9, rel=0.01)
    assert (nemotron.norm, nemotron.mlp, nemotron.num_kv_heads) == ("layernorm", "gelu", 8)
    assert oss.num_params() == pytest.approx(116.8e9, rel=0.01)
    assert oss.num_active_params() - oss.vocab_size * oss.hidden_size == pytest.approx(5.13e9, rel=0.01)
    assert (oss.head_dim, oss.num_experts, oss.num_experts_per_token, oss.qkv_bias) == (64, 128, 4, True)


def test_importers_take_hugging_face_defaults_for_nemotron_and_gpt_oss() -> None:
    """Left-out keys take the config class's defaults and are recorded as assumed."""
    sizes = {"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 512,
             "vocab_size": 1000}
    nemotron = from_hf_config({"model_type": "nemotron", **sizes}, origin="test")
    assert isinstance(nemotron, TransformerConfig)
    assert nemotron.max_seq_len == 4096 and nemotron.norm == "layernorm" and "norm_eps" in nemotron.assumed
    oss = from_hf_config({"model_type": "gpt_oss", "num_local_experts": 8, "num_experts_per_tok": 2, **sizes},
                         origin="test")
    assert isinstance(oss, TransformerConfig)
    assert (oss.head_dim, oss.rope_theta, oss.moe_ffn_hidden_size) == (64, 150000.0, 512)
    assert oss.assumed["head_dim"] == 64


def test_lora_cases_train_their_softwares_adapters() -> None:
    """A NeMo 24.x table's LoRA ran the NeMo 1.0 launcher recipe (rank 32 on the qkv projection only); a
    Megatron-Bridge one Megatron-Bridge's LoRA() (rank 32, alpha 32 on qkv, proj, fc1 and fc2), except the Llama 3
    70B performance configurations from 26.02 on, which adapt linear_qkv alone."""
    from emulator.validation.published_hopper import lora_of

    loras = {case_id: lora_of(_case(case_id)) for case_id in IDS if "lora" in case_id}
    assert loras  # the file has LoRA cases
    for case_id, lora in loras.items():
        assert (lora.rank, lora.alpha) == (32, 32)
        assert lora.targets == ("qkv",), case_id  # NeMo 24.07's and Megatron-Bridge 26.06's
        tr = case_scenario(_case(case_id)).training
        assert tr is not None and tr.lora == lora
    bridge = next(case_id for case_id in loras if case_id.startswith("train-mbridge"))
    before = _case(bridge) | {"config": _case(bridge)["config"] | {"container": "NeMo 25.11"}}
    assert lora_of(before).targets == ("qkv", "proj", "fc1", "fc2")  # before PR #2181: LoRA()'s defaults


def test_runs_whose_recipe_overlapped_the_expert_all_to_all_state_it() -> None:
    """The H100 runs whose Megatron-Bridge recipe set overlap_moe_expert_parallel_comm (DeepSeek-V3 in 25.09, Qwen3
    MoE in 25.11, Qwen3 235B-A22B in 26.04.01) state defaults.ep_overlap; every other case keeps the profile's."""
    from emulator.validation.published_hopper import recipe_settings

    on = {case_id for case_id in IDS if dict(recipe_settings(_case(case_id))).get("defaults.ep_overlap")}
    assert on == {i for i in IDS if ("deepseekv3" in i and "2509" in i) or ("qwen3" in i and "2511" in i)
                  or ("qwen3-235b" in i and "260401" in i)}
    for case_id in on:
        tr = case_scenario(_case(case_id)).training
        assert tr is not None and dict(tr.framework_settings)["defaults.ep_overlap"] is True


def test_runs_whose_recipe_chose_the_flex_dispatcher_state_it() -> None:
    """DeepSeek-V3 in 25.09 (DeepEP) and Qwen3 30B-A3B in 26.04.01 (HybridEP) ran Megatron-Core's flex token
    dispatcher; every other MoE case the recipes' alltoall (the profile's)."""
    from emulator.validation.published_hopper import recipe_settings

    flex = {case_id for case_id in IDS if dict(recipe_settings(_case(case_id))).get("moe.token_dispatcher") == "flex"}
    assert flex == {i for i in IDS if ("deepseekv3" in i and "2509" in i) or ("qwen3-30b" in i and "260401" in i)}
    for case_id in flex:
        tr = case_scenario(_case(case_id)).training
        assert tr is not None and dict(tr.framework_settings)["moe.token_dispatcher"] == "flex"


BLACKWELL_CASES = load_cases("training_blackwell")


def test_blackwell_cases_are_b200_and_gb200_runs_of_known_models() -> None:
    """The held-out file holds Megatron-Bridge's DGX B200, GB200, B300 and GB300 rows of models with a preset, ids
    unique, each with its source and the row as published."""
    ids = [c["id"] for c in BLACKWELL_CASES]
    assert len(ids) == len(set(ids)) >= 170
    assert {c["hardware"]["device"] for c in BLACKWELL_CASES} == {"B200-SXM", "GB200", "B300-SXM", "GB300"}
    assert all(c["model"]["name"] in MODEL_PRESETS for c in BLACKWELL_CASES)
    assert all("Megatron-Bridge" in c["source"] and "As published: | " in c["notes"] for c in BLACKWELL_CASES)


@pytest.mark.parametrize(("precision", "ours"), [("MXFP8", "fp8"), ("FP8-MX", "fp8"), ("FP8-CS", "fp8"),
                                                 ("NVFP4", "fp4"), ("BF16", "bf16")])
def test_blackwell_precisions_and_systems(precision: str, ours: str) -> None:
    """MXFP8 and both FP8 recipes run the fp8 GEMMs, NVFP4 the fp4 ones; B200 runs on hgx-b200 nodes, GB200 in
    NVL72 racks; a run the recipes file does not list keeps the profile's items."""
    from emulator.validation.published_hopper import recipe_settings

    for device, system in (("B200-SXM", "hgx-b200"), ("GB200", "gb200-nvl72"), ("B300-SXM", "hgx-b300"),
                           ("GB300", "gb300-nvl72")):
        case = next(c for c in BLACKWELL_CASES if c["hardware"]["device"] == device
                    and c["model"]["name"] == "Qwen3-30B-A3B")
        case = {**case, "id": "not-listed", "config": {**case["config"], "precision": precision,
                                                       "container": "NeMo 26.04.01"}}
        scenario = case_scenario(case)
        assert scenario.training is not None and scenario.training.precision == ours
        assert scenario.system is not None and scenario.system.name == system
        assert recipe_settings(case) == ()


def test_every_moe_run_states_its_recipe_switches() -> None:
    """Each published Megatron-Bridge MoE run (H100 and Blackwell) has its release's switches in
    megatron_bridge_recipes.yaml, each listed run is a published case, and the switches are ones the profile knows."""
    from emulator.stacks import GRAPH_SCOPES
    from emulator.stacks.values import DISPATCHERS
    from emulator.validation.published_hopper import GRAPH_IMPLS, recipe_runs

    runs = recipe_runs()
    moe = {c["id"] for c in [*load_cases("training_hopper"), *BLACKWELL_CASES]
           if c["model"]["name"].startswith(("Qwen3", "DeepSeek", "GPT-OSS"))}
    assert set(runs) == moe and len(moe) >= 100
    for run in runs.values():
        assert run["cuda_graph_impl"] in GRAPH_IMPLS and run["token_dispatcher"] in DISPATCHERS
        assert set(run["cuda_graph_scope"]) <= set(GRAPH_SCOPES) and run["sources"] and run["tag"].startswith("v")
        assert bool(run["cuda_graph_scope"]) == (run["cuda_graph_impl"] == "transformer_engine")


def test_recipe_switches_become_stack_items() -> None:
    """A2A overlap, the dispatcher, the CUDA-graph capture and the fused grouped MLP become the run's megatron-core
    items: 26.06's Qwen3 30B-A3B on GB300 captures the whole iteration and runs one grouped expert kernel, 26.04's
    the router only, 25.09's per-layer graphs every layer, H100 runs none."""
    from emulator.validation.published_hopper import recipe_runs, recipe_settings

    def items(case_id: str) -> dict[str, object]:
        return dict(recipe_settings(next(c for c in [*CASES, *BLACKWELL_CASES] if c["id"] == case_id)))

    assert items("train-mbridge2606-qwen3-30b-a3b-gb300-8gpu-mxfp8-pretrain") == {
        "defaults.ep_overlap": True, "moe.token_dispatcher": "flex", "host.graph_scopes": ("full_iteration",),
        "moe.expert_gemm_streams": 0}
    assert items("train-mbridge2604-qwen3-30b-a3b-gb300-8gpu-mxfp8-pretrain")["host.graph_scopes"] == (
        "moe_router", "moe_preprocess")
    assert items("train-mbridge2509-qwen3-30b-a3b-tokendrop-b200-8gpu-fp8-pretrain")["host.graph_scopes"] == ("layer",)
    assert all(items(i)["host.graph_scopes"] == () for i in IDS if i in recipe_runs())


def test_recipe_recompute_modules_become_a_selective_plan() -> None:
    """A run whose recipe recomputes modules is planned `recompute: selective` with those modules as its policy,
    in Megatron-Core's order; one that recomputes none (null or an empty list) keeps `recompute: none`."""
    from emulator.validation.published_hopper import case_scenario, recipe_recompute, recipe_runs

    cases = {c["id"]: c for c in [*CASES, *BLACKWELL_CASES]}
    gpt_oss = cases["train-mbridge260401-gpt-oss-120b-dgx-h100-64gpu-bf16-pretrain"]
    assert recipe_recompute(gpt_oss) == ("layernorm", "moe_act")
    tr = case_scenario(gpt_oss).training
    assert tr is not None and tr.recompute == "selective"
    assert dict(tr.framework_settings)["recompute.selective"] == ("layernorm", "moe_act")
    for case_id, run in recipe_runs().items():
        if not run.get("recompute_modules") and case_id in cases:
            tr = case_scenario(cases[case_id]).training
            assert tr is not None and tr.recompute == "none"
            assert "recompute.selective" not in dict(tr.framework_settings)


def test_blackwell_validation_predicts_or_says_why() -> None:
    """Every held-out case is predicted or skipped with a reason (a pipeline of more chunks than layers is refused
    by the plan model, not an exception); the render names the file."""
    out = validate_published(kind="training_blackwell")
    assert len(out["cases"]) + len(out["skipped"]) == len(BLACKWELL_CASES)
    assert all(s["reason"] for s in out["skipped"]) and out["summary"]["file"] == "published_training_blackwell.yaml"
    assert "published_training_blackwell.yaml" in render(out)
    llama = out["summary"]["by_family"]["llama3"]
    assert llama["num_cases"] >= 20 and llama["median_abs_error"] <= 0.2  # a loose guard; validate reports it
