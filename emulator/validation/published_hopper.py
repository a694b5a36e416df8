"""Predicted versus published Megatron-Core training runs on H100 (emulator/data/published_training_hopper.yaml).

The cases are NVIDIA's performance tables for NeMo (24.07, 25.02, the long-context table of 24.03) and
Megatron-Bridge (25.09 to 26.06): Llama 2/3/3.1, GPT-3 175B, Nemotron-4 340B, Qwen3 MoE, GPT-OSS and DeepSeek-V3
on 4 to 1,024 H100 SXM; FP8 and BF16; pretraining, SFT and LoRA. Each case becomes a scenario by one rule for all,
nothing tuned per case:
- model: the shipped preset of the case's model (`MODEL_PRESETS`: the architecture: norms, MLP kind, positions,
  attention) with the sizes the case states where it states them (layers, hidden, heads, KV heads, ffn, vocab,
  experts, top-k, expert width, dense layers; GPT-3's vocabulary is Megatron's padded 51,200). A context shorter
  than the case's seq_len is stretched to it (the long-context runs extend Llama 2's RoPE positions).
- hardware: `count` h100-sxm devices in hgx-h100 nodes (`SYSTEMS`: B200 and B300 in HGX nodes, GB200 and GB300 in
  NVL72 racks).
- plan: tp, pp, cp, ep as given, vp -> virtual_stages, 'n/a' or absent -> 1, dp = count / (tp*pp*cp) (a case's own
  dp must agree), fsdp > 0 -> FSDP over the data-parallel ranks, micro-batch 1 where the case gives none. A
  case's `ga` (gradient accumulation) is not read: global batch / (micro-batch * dp) is the accumulation.
- precision: FP8 (delayed or current scaling, 'FP8-CS'; Blackwell's block-scaled MXFP8, 'FP8-MX') -> fp8; NVFP4 -> fp4;
  BF16 -> bf16.
- task: pretrain, sft (full fine-tuning) or lora, whose adapters are the LoRA defaults of the software that ran
  the table (`lora_of`): NeMo 24.x containers ran the NeMo Framework Launcher's NeMo 1.0 PEFT recipe
  (launcher_scripts/conf/peft/llama/squad.yaml sets adapter_dim 32 and no target_modules, so NeMo 1.0's default
  ['attention_qkv'] applies: examples/nlp/language_modeling/tuning/conf/megatron_gpt_finetuning_config.yaml), rank
  32 on qkv; Megatron-Bridge's LoRA() (megatron/bridge/peft/lora.py: dim 32, alpha 32 on linear_qkv,
  linear_proj, linear_fc1 and linear_fc2) elsewhere, except that its performance configurations for Llama 3 70B LoRA
  adapt linear_qkv alone from 26.02 on (PR #2181, 2026-02-10, scripts/performance/configs/llama/
  llama3_llm_finetune.py: `cfg.peft.target_modules = ["linear_qkv"]`, kept by every chip's recipe in
  src/megatron/bridge/perf_recipes/llama/*/llama3.py). Fine-tuning runs pack SQuAD samples into seq_len sequences.
- stack: `Training.framework = "megatron-core"`. What the recipes set without the tables stating it (sequence
  parallelism with tp, the distributed optimizer, communication overlap, fusions) is that stack profile's to apply;
  the switches Megatron-Bridge's performance recipes set per model and GPU are each MoE run's own
  (emulator/data/megatron_bridge_recipes.yaml: read at the tag of the run's container, with sources), stated as
  `framework_settings` (`recipe_settings`), H100 and Blackwell runs alike: the expert-parallel all-to-all
  overlapped with another micro-batch's compute (`defaults.ep_overlap`, overlap_moe_expert_parallel_comm), the
  token dispatcher (`moe.token_dispatcher`: alltoall, or flex for DeepEP and HybridEP), the CUDA-graph capture
  (`host.graph_scopes`: Transformer Engine graphs of the listed cuda_graph_scope, `layer` for 25.09's per-layer
  graphs, `full_iteration` for 26.06's whole-step graphs; no graph on any H100 run) and Transformer Engine's fused
  grouped MLP (cutedsl_fused_grouped_mlp: one grouped expert kernel, `moe.expert_gemm_streams` 0) and the modules
  it recomputes (recompute_modules: `recompute: selective` with `recompute.selective` the module list). Its other
  switches (FP8 attention, expert capacity) are recorded there, not modelled.
The predicted value is the published metric computed from the predicted step time:
- tokens_per_sec_per_gpu = global_batch * seq_len / (step_time * GPUs);
- model_tflops_per_gpu = `model_flops_per_token` * global_batch * seq_len / (step_time * GPUs) / 1e12, with the
  source's convention (NeMo's tables count attention over the full square, Megatron-Bridge's the causal half).
error = predicted / published - 1. A case the emulator cannot model yet is listed under `skipped` with the reason.
A case whose software had a performance regression its maintainers documented (emulator/data/known_regressions.yaml:
Megatron-Bridge 25.11's dropless Qwen3 30B-A3B on H100 and B200 and Qwen3 235B-A22B on B200, 26.06.01's GPT-OSS)
carries the issue as `known_regression`; it stays in every summary, and `without_known_regressions` summarises the
rest beside it.

The same rules run Megatron-Bridge's DGX B200, GB200, B300 and GB300 rows (`BLACKWELL`, emulator/data/
published_training_blackwell.yaml) with the profile fitted on H100 and the H200 calibration moved to Blackwell: a
held-out test, never fitted on (each run's recipe switches stated as above).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from emulator.cluster.training import predict_training
from emulator.engine.calibration import efficiency_for
from emulator.errors import EmulatorError
from emulator.fields import Fields
from emulator.files import TOP, read_yaml, shipped
from emulator.hardware import load_device, load_system
from emulator.published import load_cases, profile_name
from emulator.scenario import Parallel, Scenario, Training
from emulator.stacks import RECOMPUTE_MODULES
from emulator.validation.sources import error_summary
from emulator.workloads.config import TransformerConfig
from emulator.workloads.lora import LoraConfig
from emulator.workloads.presets import preset

KIND = "training_hopper"
REGRESSIONS = shipped("data") / "known_regressions.yaml"
BLACKWELL = "training_blackwell"
STACK = "megatron-core"
SYSTEMS = {"h100-sxm": "hgx-h100", "b200": "hgx-b200", "gb200": "gb200-nvl72", "b300": "hgx-b300",
           "gb300": "gb300-nvl72"}  # device profile -> its system
PRECISIONS = (("NVFP4", "fp4"), ("MXFP8", "fp8"), ("FP8", "fp8"), ("BF16", "bf16"))  # published prefix -> ours
METRICS = ("tokens_per_sec_per_gpu", "model_tflops_per_gpu")
TASKS = {"pretrain": "pretrain", "sft": "sft", "lora": "lora"}
# The case's model name -> the shipped preset of its architecture.
MODEL_PRESETS = {
    "GPT-3 175B": "gpt3-175b", "Llama 2 7B": "llama2-7b", "Llama 2 13B": "llama2-13b", "Llama 2 70B": "llama2-70b",
    "Llama 3 / 3.1 8B": "llama3-8b", "Llama 3 / 3.1 / 3.3 70B": "llama3-70b", "Llama 3.1 405B": "llama3.1-405b",
    "Nemotron-4 340B": "nemotron4-340b", "Qwen3-30B-A3B": "qwen3-30b-a3b", "Qwen3-235B-A22B": "qwen3-235b-a22b",
    "GPT-OSS 120B": "gpt-oss-120b", "DeepSeek-V3 (671B MoE, MLA)": "deepseek-v3",
}
FAMILIES = {"gpt3-175b": "gpt3", "llama2-7b": "llama2", "llama2-13b": "llama2", "llama2-70b": "llama2",
            "llama3-8b": "llama3", "llama3-70b": "llama3", "llama3.1-405b": "llama3", "nemotron4-340b": "nemotron4",
            "qwen3-30b-a3b": "qwen3-moe", "qwen3-235b-a22b": "qwen3-moe", "gpt-oss-120b": "gpt-oss",
            "deepseek-v3": "deepseek-v3"}
# Case model keys -> TransformerConfig fields they size.
SIZE_FIELDS = {"layers": "num_layers", "hidden": "hidden_size", "heads": "num_heads", "kv_heads": "num_kv_heads",
               "ffn": "ffn_hidden_size", "ffn_dense": "ffn_hidden_size", "vocab": "vocab_size",
               "moe_experts": "num_experts", "moe_top_k": "num_experts_per_token", "moe_ffn": "moe_ffn_hidden_size",
               "dense_layers": "num_dense_layers"}


class Unmodelled(Exception):
    """A case the emulator cannot model yet; the message says why."""


def number(value: Any) -> int | None:
    """The leading whole number of a case value ('4096 (packed SQuAD v1.1)' -> 4096); None for 'n/a' or absent."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    found = re.match(r"\s*(\d+)", str(value))
    return int(found.group(1)) if found else None


def task_of(case: dict[str, Any]) -> str:
    task = str(case["config"].get("task", "pretrain")).lower()
    if task not in TASKS:
        raise Unmodelled(f"task '{task}' is none of {', '.join(TASKS)}")
    return TASKS[task]


def preset_of(case: dict[str, Any]) -> str:
    name = str(case["model"]["name"])
    if name not in MODEL_PRESETS:
        raise Unmodelled(f"no preset for the model '{name}'")
    return MODEL_PRESETS[name]


def case_model(case: dict[str, Any]) -> tuple[TransformerConfig, dict[str, int]]:
    """The case's model: its preset sized by the case, and the sizes that differ from the preset."""
    base = preset(preset_of(case))
    assert isinstance(base, TransformerConfig)  # every MODEL_PRESETS entry is a transformer
    changes: dict[str, int] = {}
    for key, field in SIZE_FIELDS.items():
        value = number(case["model"].get(key))
        if value is not None and value != getattr(base, field):
            changes[field] = value
    seq = number(case["config"]["seq_len"]) or 0
    if seq > base.max_seq_len:
        changes["max_seq_len"] = seq
    return base.scaled(**changes), changes


def _size(par: dict[str, Any], key: str) -> int:
    return number(par.get(key)) or 1


RECIPES = shipped("data") / "megatron_bridge_recipes.yaml"
# A run's CUDA-graph capture (Megatron-Core's cuda_graph_impl) -> what `host.graph_scopes` names beside its
# cuda_graph_scope (which only transformer_engine graphs have)
GRAPH_IMPLS = {"none": (), "transformer_engine": (), "local": ("layer",), "full_iteration": ("full_iteration",)}


@functools.cache
def recipe_runs() -> dict[str, dict[str, Any]]:
    """The performance switches of each published MoE run, by case id (emulator/data/megatron_bridge_recipes.yaml)."""
    runs = read_yaml(RECIPES).get("runs") or []
    return {str(r["id"]): r for r in runs}


def recipe_settings(case: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The run's own values of megatron-core stack items, from its release's performance recipe (module
    docstring); () for a run the recipes file does not list (the profile's values hold)."""
    run = recipe_runs().get(str(case["id"]))
    if run is None:
        return ()
    impl = str(run["cuda_graph_impl"])
    scopes = GRAPH_IMPLS[impl] + tuple(run["cuda_graph_scope"])
    out: tuple[tuple[str, Any], ...] = (("defaults.ep_overlap", bool(run["moe_a2a_overlap"])),
                                        ("moe.token_dispatcher", str(run["token_dispatcher"])),
                                        ("host.graph_scopes", scopes))
    # Transformer Engine's fused grouped MLP (cutedsl_fused_grouped_mlp): one grouped kernel over the experts
    out += (("moe.expert_gemm_streams", 0),) if run["fused_grouped_mlp"] else ()
    modules = recipe_recompute(case)
    return out + ((("recompute.selective", modules),) if modules else ())


def recipe_recompute(case: dict[str, Any]) -> tuple[str, ...]:
    """The Megatron-Core modules the run's recipe recomputes (recompute_modules, with recompute_granularity
    selective), in Megatron-Core's order; () when it recomputes none (the plan's `recompute: none`)."""
    run = recipe_runs().get(str(case["id"])) or {}
    return tuple(m for m in RECOMPUTE_MODULES if m in (run.get("recompute_modules") or ()))


def lora_of(case: dict[str, Any]) -> LoraConfig:
    """The adapters a LoRA case trained: its software's defaults (see the module docstring)."""
    software = f"{case['config'].get('container', '')} {case.get('source', '')}"
    if re.search(r"NeMo 24\.", software):
        return LoraConfig(rank=32, alpha=32, targets=("qkv",))
    container = re.search(r"NeMo (\d+)\.(\d+)", str(case["config"].get("container", "")))
    if preset_of(case).startswith("llama3") and container and (int(container[1]), int(container[2])) >= (26, 2):
        return LoraConfig(rank=32, alpha=32, targets=("qkv",))  # the performance configs' linear_qkv only
    return LoraConfig(rank=32, alpha=32)


def case_scenario(case: dict[str, Any]) -> Scenario:
    """The scenario a published case describes (see the module docstring); `Unmodelled` when it cannot be built."""
    cfg, par = case["config"], case["config"].get("parallelism", {})
    model, _ = case_model(case)
    count = int(case["hardware"]["count"])
    tp, pp, cp = _size(par, "tp"), _size(par, "pp"), _size(par, "cp")
    if count % (tp * pp * cp):
        raise Unmodelled(f"{count} GPUs are not a multiple of tp*pp*cp = {tp * pp * cp}")
    dp = count // (tp * pp * cp)
    if number(par.get("dp")) not in (None, dp):
        raise Unmodelled(f"the case's dp {par['dp']} differs from GPUs / (tp*pp*cp) = {dp}")
    published = str(cfg["precision"]).upper()
    precision = next((ours for prefix, ours in PRECISIONS if published.startswith(prefix)), None)
    if precision is None:
        raise Unmodelled(f"precision '{cfg['precision']}' is none of {', '.join(p for p, _ in PRECISIONS)}")
    parallel = Parallel(tp=tp, pp=pp, cp=cp, dp=dp, ep=_size(par, "ep"), virtual_stages=_size(par, "vp"),
                        microbatch_size=number(cfg.get("micro_batch_size")) or 1,
                        fsdp=bool(number(par.get("fsdp"))))
    task = task_of(case)
    training = Training(seq_len=number(cfg["seq_len"]) or 0, global_batch_size=int(cfg["global_batch_size"]),
                        precision=precision, parallel=parallel,
                        recompute="selective" if recipe_recompute(case) else "none",
                        framework=STACK, framework_settings=recipe_settings(case), task=task,
                        lora=lora_of(case) if task == "lora" else None,
                        packed_sequences=task != "pretrain", path=str(case["id"]))
    device = load_device(profile_name(case["hardware"]["device"]) or case["hardware"]["device"])
    if device.name not in SYSTEMS:
        raise Unmodelled(f"no system of {device.name} nodes among {', '.join(SYSTEMS.values())}")
    system = load_system(SYSTEMS[device.name])
    return Scenario(path=str(case["id"]), model=model, device=device, system=system, num_devices=count,
                    training=training)


def counts_causal(case: dict[str, Any]) -> bool:
    """Whether the case's source counts causal attention as half the square: Megatron-Bridge's tables do
    (Megatron-Core's num_floating_point_operations: seq_len / 2); NeMo 2's formulas (flops_formulas.py) count the
    square. Checked against each table's tokens/s and TFLOP/s pairs (tests/test_published_hopper.py)."""
    return "Megatron-Bridge" in str(case.get("source", ""))


def model_flops_per_token(model: TransformerConfig, seq_len: int, *, causal: bool) -> float:
    """Model FLOPs per trained token, as NeMo and Megatron-Core count them for pretraining (Narayanan et al. 2021,
    App. A): 3 passes (forward, activation and weight gradients) x 2 FLOPs per multiply-add over every GEMM weight
    a token passes through (attention projections, the dense MLP or the top-k routed and shared experts, the
    logits; not the router), plus per layer the scores QK^T and the values PV over all seq_len keys,
    3 x 2 x seq_len x heads x (qk head dim + v head dim), halved when `causal`.

    Megatron-Bridge's GPT-OSS figures count the experts as non-gated (2 GEMMs): its TFLOP/s are about 0.79 of this
    count; those cases publish tokens/s, which is what they are compared on. The fine-tuning tables' TFLOP/s count
    attention per packed document (and LoRA at 2/3); they too are compared on tokens/s.
    """
    weights = model.num_active_matmul_params() - model.num_moe_layers * model.hidden_size * model.num_experts
    width = model.qk_head_dim + (model.v_head_dim if model.attention == "mla" else model.head_dim)
    attention = 3 * 2 * seq_len * model.num_heads * width * model.num_layers
    return 6.0 * weights + attention * (0.5 if causal else 1.0)


def predict_case(case: dict[str, Any]) -> dict[str, Any]:
    """A case's record: id, metric, published, predicted, error, stack, source (and what the mapping chose)."""
    metric = case["metric"]["name"]
    if metric not in METRICS:
        raise Unmodelled(f"metric '{metric}' is not one of {', '.join(METRICS)}")
    scenario = case_scenario(case)
    model, tr = scenario.model, scenario.training
    assert isinstance(model, TransformerConfig) and tr is not None
    pred = predict_training(scenario, efficiency_for(scenario.device))
    tokens_per_s_per_gpu = tr.global_batch_size * tr.seq_len / (pred.step_time_s * pred.num_devices)
    predicted = tokens_per_s_per_gpu
    if metric == "model_tflops_per_gpu":
        predicted *= model_flops_per_token(model, tr.seq_len, causal=counts_causal(case)) / 1e12
    published = float(case["value"])
    _, changes = case_model(case)
    return {"id": case["id"], "metric": metric, "unit": case["metric"].get("unit", ""), "published": published,
            "predicted": predicted, "error": predicted / published - 1, "stack": STACK, "source": case["source"],
            "task": tr.task, "family": FAMILIES[preset_of(case)], "model": preset_of(case),
            "model_overrides": changes, "precision": tr.precision, "plan": pred.plan.as_dict(),
            "step_time_s": pred.step_time_s, "fits": pred.memory.fits}


def _grouped(cases: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {g: error_summary([c for c in cases if c[key] == g]) for g in sorted({c[key] for c in cases})}


@functools.lru_cache(maxsize=1)
def known_regressions() -> dict[str, str]:
    """Case id -> the documented regression of the software that measured it (emulator/data/known_regressions.yaml)."""
    file, entries = str(REGRESSIONS), read_yaml(REGRESSIONS)
    if not isinstance(entries, list):
        raise EmulatorError("must be a list of {ids, issue} entries. Fix: write one '- ids: [...]' entry per issue.",
                            file=file, field=TOP)
    out: dict[str, str] = {}
    for i, entry in enumerate(entries):
        f = Fields(entry, file=file, allowed=("ids", "issue"), prefix=f"[{i}]")
        ids = f.required("ids", "ids: [train-...]")
        if not isinstance(ids, list) or not ids or not all(isinstance(x, str) for x in ids):
            raise f.error("ids", "must be a non-empty list of case ids. Fix: list the ids as in "
                                 "emulator/data/published_training_*.yaml.")
        issue = " ".join(f.text("issue", hint="issue: 'owner/repo#N, title: what it states'").split())
        out |= dict.fromkeys(ids, issue)
    return out


def validate_published(*, only: Callable[[dict[str, Any]], bool] | None = None, kind: str = KIND) -> dict[str, Any]:
    """Every case of `kind` (the H100 ones unless named; or those `only` keeps): cases, skipped cases with reasons,
    and the error summary overall, per task and per model family; and overall without the cases whose software had a
    documented regression (`known_regressions`, each such case carrying its issue)."""
    cases, skipped = [], []
    for case in load_cases(kind):
        if only is not None and not only(case):
            continue
        try:
            cases.append(predict_case(case))
        except Unmodelled as why:
            skipped.append({"id": case["id"], "reason": str(why)})
        except EmulatorError as why:  # a layout the plan model refuses (e.g. more pipeline chunks than layers)
            skipped.append({"id": case["id"], "reason": f"not predictable: {why.message.split('. Fix')[0]}"})
    regressions = known_regressions()
    for c in cases:
        if c["id"] in regressions:
            c["known_regression"] = regressions[c["id"]]
    summary = {**error_summary(cases), "by_task": _grouped(cases, "task"), "by_family": _grouped(cases, "family"),
               "without_known_regressions": error_summary([c for c in cases if "known_regression" not in c]),
               "num_skipped": len(skipped), "stack": STACK, "file": f"published_{kind}.yaml",
               "device_parameters": "efficiency_for(device): one table for every case"}
    return {"cases": cases, "skipped": skipped, "summary": summary}


def _line(name: str, s: dict[str, Any]) -> str:
    if not s["num_cases"]:
        return f"{name:24s} no cases"
    return (f"{name:24s} {s['num_cases']:3d} cases  median |error| {s['median_abs_error']:6.1%}  max |error| "
            f"{s['max_abs_error']:6.1%}  mean error {s['mean_error']:+6.1%}")


def render(result: dict[str, Any]) -> str:
    """A plain table of predicted versus published, then the summary by task and by family."""
    lines = [f"Megatron-Core, {result['summary']['file']} (stack: {result['summary']['stack']})",
             f"{'case':70s} {'metric':22s} {'published':>10s} {'predicted':>10s} {'error':>8s}"]
    for c in result["cases"]:
        lines.append(f"{c['id']:70s} {c['metric']:22s} {c['published']:10.4g} {c['predicted']:10.4g} "
                     f"{c['error']:+8.1%}" + ("  (documented regression)" if "known_regression" in c else ""))
    for s in result["skipped"]:
        lines.append(f"{s['id']:70s} skipped: {s['reason']}")
    summary = result["summary"]
    lines.append(_line("all", summary))
    lines.append(_line("without regressions", summary["without_known_regressions"]))
    lines += [_line(f"task {k}", v) for k, v in summary["by_task"].items()]
    lines += [_line(f"family {k}", v) for k, v in summary["by_family"].items()]
    return "\n".join(lines)
