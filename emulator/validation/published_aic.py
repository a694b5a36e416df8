"""NVIDIA AIConfigurator's measured Hopper serving points (emulator/data/aic_silicon_hopper.csv) against the serving
model's closed loop, with one set of parameters (`efficiency_for(device)`; nothing tuned per row).

Each usable row is one engine deployment measured under a closed loop (`batch_size` = requests in flight) and
becomes a scenario:
- mode disagg: skipped (prefill and decode pools of different layouts and worker counts; the disaggregation model
  has one layout for both pools and no closed loop);
- served through NVIDIA Dynamo (source names a `*-runtime` image and `dynamo_version=`: its frontend, router and
  request handling in front of the engine, a serving stack the emulator does not model): skipped. These 13
  aggregated rows are also far from the engine's own server (gpt-oss-120b at tp 4 on TensorRT-LLM 1.3: TPOT 47-49
  ms at 40-96 clients; Qwen3-32B at tp 2 on vLLM: TPOT 11.6 ms at 48 clients with 4000-token prompts);
- InferenceX's GB200 rows (DeepSeek-R1 on TensorRT-LLM and SGLang, tp_size 12 to 72): skipped. InferenceX runs that
  model on GB200 only as Dynamo disaggregated deployments over several trays (its master config's
  dsr1-fp4-gb200-dynamo-* entries: multinode, disagg, prefill and decode workers with attention data parallelism),
  and the sample records them as agg rows whose tp_size is the deployment's GPU count (taken as one engine at tp 32
  or 64, two of them came out 9x slow in TPOT);
- model: the Hugging Face id's preset (`MODELS`); other models are skipped, and so is a preset that does not load.
  The models no fit has seen (`aic_deployments.UNSEEN_MODELS`: Kimi-K2.5 and MiniMax-M2.5, on vLLM only) are
  sampled apart, in their own held-out sections (`validate_aic(unseen_models=True)`, `UNSEEN_SAMPLE_ROWS` per
  file): the sample of the fitted models lists their rows as skipped, so it stays the one the stacks were fitted and
  cross-validated on (their 4-bit checkpoints' rows are in the weight-only section, where one vLLM item was fitted:
  `host.prompt_moe_layer_s`, scripts/fit_stacks.py moe-host, one model held out at a time);
- hardware: `SYSTEMS[system]` (one 8-GPU HGX node's profile; GB200 the NVL72 rack's) with tp x pp devices: the
  deployment is one replica;
- layout: tp = tp_size, pp = pp_size, at most the GPUs of one NVLink domain (29 DeepSeek rows give tp_size 64 with
  moe_tp_size 8 x moe_ep_size 8 on one 8-GPU node, while their ids say tp8_ep8: skipped), dividing the attention
  heads; MoE models take
  ep = moe_ep_size and need moe_tp_size x moe_ep_size = tp
  (the replica spreads experts over its tensor-parallel ranks: TensorRT-LLM's moe_tp x moe_ep = tp); dense models
  ignore the moe_* columns. attention_dp_size > 1 with tp_size 1 is attention data parallelism over that many
  ranks (TensorRT-LLM's enable_attention_dp, InferenceX's DeepSeek-R1 "dep8" runs): a replica of
  tp = attention_dp_size ranks with `attention_dp`, its batch_size per rank (concurrency = batch_size x
  attention_dp_size, as the ids' c<N> say); with tp_size > 1 too (attention tensor parallel inside each data-parallel
  rank) it is skipped;
- precision: gemm_quant_mode fp8 or fp8_block -> fp8, empty -> bf16, and moe_quant_mode must agree; nvfp4 -> fp4
  on B200 and GB200 (fp4 matrix units). nvfp4 on Hopper and int4_wo are 4-bit checkpoints run weight-only (`w4a16`:
  gpt-oss's MXFP4 experts, Kimi-K2.5's INT4 ones) as the engine's kernels widen their weights
  (`recipe.weight_only_*`, fitted on kernels): the Hopper rows are a held-out section of their own (`weight_only`),
  never fitted on, so no host item absorbs a kernel error; Blackwell's (Kimi-K2.5 int4_wo) stay skipped. The KV cache
  takes the engine's default for that precision (`defaults.kv_precision`): the rows do not state it;
- `engine` = backend; `concurrency` = batch_size (x attention_dp_size); the load as the row's benchmark client ran
  it (`aic_deployments.client` and `load`):
  - rows of the InferenceX campaign (source `db-dump/...` or `source_file=<date>.csv`; ISL/OSL 1k/1k, 1k/8k, 8k/1k,
    DeepSeek-R1, Llama 3.1 70B, gpt-oss) were measured by InferenceMAX's client (kimbochen/bench_serving
    benchmark_serving.py: `--random-range-ratio 0.8`, so each input and output length is drawn uniformly from
    [0.8 x isl, isl] and [0.8 x osl, osl]; `--num-prompts` 10 x concurrency; mean TTFT and TPOT over every request):
    uniform lengths, num_requests 10 x concurrency, `measured_requests: all`. Until 2026-01-21 that client sent no
    warm-up requests (SemiAnalysisAI/InferenceX benchmarks/benchmark_lib.sh, `--num-warmups 2 x concurrency` from
    #480), so a row measured before then carries whatever the server pays on first use in its first wave's TTFT,
    which the emulator's warm server does not: SGLang's DeepSeek-R1 rows on B200 from November 2025 took 0.4-8.8 s
    for a first token where 0.06-0.6 s is predicted, its March 2026 rows 0.2-2.1 s against 0.15-0.9 s; kept, not
    fitted around;
  - the others (AIConfigurator's own collection: its benchmark script's aiperf, fixed lengths, 2 x concurrency
    warm-up requests run to completion, then a profiling phase of 20 x concurrency requests that opens with every
    client's request at once, all of them measured): lengths fixed at isl and osl, num_requests 20 x concurrency
    (`aic_load.AIPERF_ROUNDS`), `measured_requests: all`. Measured over the steady state instead (the first
    and last waves left out), TTFT median |error| over every usable aiperf row is 46.5% (TensorRT-LLM), 25.9%
    (vLLM) and 22.1% (SGLang) against 41.6%, 24.9% and 22.1%; TPOT within 0.1 point (before TensorRT-LLM's rows
    took their generator's token budget and the fitted request path: 28.9% for it now, TPOT 11.6% -> 12.9%);
- the deployment's own engine settings where its launch script states them: `aic_deployments.deployment` (which
  scripts, what they set, and why the other rows keep their engine's defaults).
A campaign (engine, its version, system and benchmark client: `campaign`) one of whose aggregated rows states a
replica that cannot hold the model's weights at its precision (`holds_weights`; vLLM 0.12's H200 aiperf rows of Qwen3
235B-A22B FP8 at tp 1, 236 GB of weights on a 141 GB GPU) did not run the layouts its rows state: its cases carry
`layout_suspect` (`layout_suspects`), are predicted and summarised with the rest, summarised without them beside
(`summary.without_layout_suspects`), and the serving fits leave them out of their loss.
Skip reasons are checked in the order above. Each row gives two cases, `<row id>:tpot` (mean TPOT, ms) and
`<row id>:ttft` (mean TTFT, ms), error = predicted / published - 1.

Held out (`BLACKWELL_CSV`): the same sample's B200 and GB200 aggregated rows, mapped by the same rules (the
launch scripts `deployment` states are the H200 ones, so those rows keep their engine's defaults) and predicted
with the Hopper-fitted stack profiles and the H200 calibration moved to Blackwell: a test, never fitted on.

Sample (`select`): the usable rows are grouped by (engine, model, system); the `SAMPLE_ROWS` rows are shared
between groups as evenly as their sizes allow (a group smaller than its share gives all its rows, the rest is shared
again), and a group's share is taken at evenly spaced positions of its rows sorted by (concurrency, isl, osl, tp,
id): every engine, model and device, from the lowest concurrency to the highest. No randomness: the same file gives
the same sample. `validate_aic(limit=None)` runs every usable row.
"""

from __future__ import annotations

import csv
import functools
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from emulator.engine.memory import serving_weight_bytes
from emulator.errors import EmulatorError
from emulator.files import shipped
from emulator.hardware import load_system
from emulator.scenario import Scenario, ServingSpec, parse_inference
from emulator.serving import predict_serving
from emulator.validation.aic_deployments import (
    MODELS,
    UNSEEN_MODELS,
    attention_ranks,
    client,
    count,
    deployment,
)
from emulator.validation.aic_load import load
from emulator.validation.sources import error_summary
from emulator.workloads.config import TransformerConfig
from emulator.workloads.presets import preset

CSV = shipped("data") / "aic_silicon_hopper.csv"
# The same sample's B200 and GB200 aggregated rows: a held-out test of the transfer to Blackwell, never fitted on
BLACKWELL_CSV = shipped("data") / "aic_silicon_blackwell.csv"
SOURCE = "ai-dynamo/aiconfigurator silicon_sample.csv (Apache-2.0, snapshot 2026-08-21)"
SAMPLE_ROWS = 150
BLACKWELL_SAMPLE_ROWS = 100
UNSEEN_SAMPLE_ROWS = 40  # per file, of the models no fit has seen (`unseen`)
SYSTEMS = {"h100_sxm": "hgx-h100", "h200_sxm": "hgx-h200", "b200_sxm": "hgx-b200", "gb200": "gb200-nvl72"}
WEIGHT_ONLY = "w4a16"  # the precision of 4-bit checkpoints on chips without 4-bit matrix units
PRECISIONS = {"fp8": "fp8", "fp8_block": "fp8", "": "bf16", "int4_wo": WEIGHT_ONLY}
NATIVE_FP4 = {"nvfp4": "fp4"}  # native on chips with fp4 matrix units (Blackwell), elsewhere weight-only
WEIGHT_ONLY_SAMPLE_ROWS = 60  # of the Hopper rows run weight-only (`weight_only`)
BLACKWELL_SYSTEMS = ("b200_sxm", "gb200")  # the rows of BLACKWELL_CSV
METRICS = (("tpot", "tpot_ms"), ("ttft", "ttft_ms"))


@functools.lru_cache(maxsize=2)
def rows(path: Path = CSV) -> tuple[dict[str, str], ...]:
    """Every row of a shipped CSV (the Hopper one unless named), as text."""
    with open(path, encoding="utf-8", newline="") as f:
        return tuple(csv.DictReader(f))


def precision_of(row: dict[str, str], quant: str) -> str | None:
    """The emulator's precision of a row's quantisation mode on its chip: NVFP4 natively where the chip has fp4
    matrix units, else weight-only (None: a mode the emulator has no precision for)."""
    if quant in PRECISIONS:
        return PRECISIONS[quant]
    native = NATIVE_FP4.get(quant)
    if native is None:
        return None
    return native if native in load_system(SYSTEMS[row["system"]]).device.matrix_flops_per_s else WEIGHT_ONLY


def weight_only(row: dict[str, str]) -> bool:  # the row's checkpoint runs weight-only on its chip
    return precision_of(row, row["gemm_quant_mode"]) == WEIGHT_ONLY


@functools.lru_cache(maxsize=16)
def _preset(name: str) -> TransformerConfig | str:
    """The preset, or why it cannot be used."""
    try:
        model = preset(name)
    except EmulatorError as e:
        return f"preset '{name}' is not available ({e.message.split(';')[0]})"
    return model if isinstance(model, TransformerConfig) else f"preset '{name}' is not a transformer"


def skip_reason(row: dict[str, str]) -> str | None:
    """Why a row cannot be predicted (None: it maps to a scenario), checked in the module docstring's order."""
    if row["mode"] != "agg":
        return ("disaggregated (mode disagg): pools of different layouts and worker counts; the disaggregation model "
                "has one layout for both pools and no closed loop")
    if "dynamo_version=" in row["silicon_data_source"]:
        return ("served through NVIDIA Dynamo (its frontend, router and request handling in front of the engine): "
                "a serving stack the emulator does not model")
    if row["system"] == "gb200" and client(row) == "inferencex":
        return ("InferenceX's GB200 runs are Dynamo disaggregated deployments over several trays (dsr1-fp4-gb200-"
                "dynamo-*), recorded as agg rows whose tp_size is the deployment's GPU count")
    name = MODELS.get(row["model_path"])
    if name is None:
        return f"no preset for {row['model_path']}"
    model = _preset(name)
    if isinstance(model, str):
        return model
    gemm, moe = row["gemm_quant_mode"], row["moe_quant_mode"]
    if precision_of(row, gemm) is None:
        return f"gemm_quant_mode {gemm}: no precision of the emulator's runs it"
    if weight_only(row) and row["system"] in BLACKWELL_SYSTEMS:
        return f"gemm_quant_mode {gemm} on {row['system']}: weight-only (w4a16) rows are predicted on Hopper only"
    if model.is_moe and precision_of(row, moe) != precision_of(row, gemm):
        return f"moe_quant_mode {moe or 'none'} differs from gemm_quant_mode {gemm or 'none'}: one precision per model"
    if attention_ranks(row) > 1 and count(row["tp_size"]) > 1:
        return ("attention data parallelism over tensor-parallel groups (tp_size x attention_dp_size): the replica's "
                "attention ranks hold whole weights")
    tp = replica_tp(row)
    node = load_system(SYSTEMS[row["system"]]).scale_up.domain_size
    devices = tp * max(count(row["pp_size"]), 1)
    if devices > node:
        return (f"tp_size x pp_size = {devices} is more than the {node} GPUs of the one "
                f"{row['system']} NVLink domain the row names (a one-domain aggregated deployment cannot hold it)")
    if model.num_heads % tp:  # a GB200 rack's 72, 36, 28, ... ranks for DeepSeek's 128 heads
        return f"tp {tp} does not divide the model's {model.num_heads} attention heads"
    if model.is_moe and count(row["moe_tp_size"]) * count(row["moe_ep_size"]) != tp:
        return "moe_tp_size x moe_ep_size != tp_size: experts are spread over the tensor-parallel ranks only"
    if count(row["batch_size"]) < 1 or count(row["isl"]) < 1 or count(row["osl"]) < 1:
        return "no concurrency or lengths"
    return None


def campaign(row: dict[str, str]) -> tuple[str, str, str, str]:
    """The measurement campaign a row belongs to: its engine, the engine's version, the system and the client."""
    return row["backend"], row["backend_version"], row["system"], client(row)


def holds_weights(row: dict[str, str]) -> bool:
    """Whether an aggregated row's stated replica (tp_size x pp_size, times its attention data-parallel ranks) can
    hold its model's weights at its precision in the system's device memory (True where the row names no preset or
    precision: nothing to check)."""
    model = _preset(MODELS.get(row["model_path"], ""))
    precision = precision_of(row, row["gemm_quant_mode"])
    if isinstance(model, str) or precision is None:
        return True
    shards = count(row["tp_size"] or "1") * max(count(row["pp_size"] or "1"), 1) * attention_ranks(row)
    return serving_weight_bytes(model, precision, shards) <= load_system(SYSTEMS[row["system"]]).device.memory_bytes


@functools.lru_cache(maxsize=2)
def layout_suspects(path: Path = CSV) -> dict[tuple[str, str, str, str], str]:
    """Campaigns whose stated layouts cannot all have run: one of their rows names a replica that cannot hold its
    model's weights, so their tp, ep and pp columns are not what ran. campaign -> why."""
    out: dict[tuple[str, str, str, str], str] = {}
    for row in rows(path):
        if row["mode"] == "agg" and campaign(row) not in out and not holds_weights(row):
            out[campaign(row)] = (f"its campaign ({' '.join(x for x in campaign(row) if x)}) states layouts that "
                                  f"cannot hold their weights (row {row['id']}: {row['model_path']} at tp "
                                  f"{row['tp_size'] or 1} on {row['system']}): left out of the fits, reported")
    return out


def replica_tp(row: dict[str, str]) -> int:
    """The replica's ranks: tp_size, times the attention data-parallel ranks when the row runs them."""
    return count(row["tp_size"]) * attention_ranks(row)


def scenario_of(row: dict[str, str]) -> tuple[Scenario, ServingSpec]:
    """The scenario and serving spec a usable row describes."""
    model = _preset(MODELS[row["model_path"]])
    assert isinstance(model, TransformerConfig)  # skip_reason passed the row
    system = load_system(SYSTEMS[row["system"]])
    precision = precision_of(row, row["gemm_quant_mode"])
    assert precision is not None  # skip_reason passed the row
    tp, pp, ranks = replica_tp(row), max(count(row["pp_size"]), 1), attention_ranks(row)
    engine = row["backend"]
    where = f"{(BLACKWELL_CSV if row['system'] in BLACKWELL_SYSTEMS else CSV).name} row {row['id']}"
    parallel: dict[str, Any] = {"tp": tp, "pp": pp, "ep": count(row["moe_ep_size"]) if model.is_moe else 1}
    if ranks > 1:
        parallel["attention_dp"] = True
    inference: dict[str, Any] = {
        "engine": engine, "precision": precision, "parallel": parallel,
        "concurrency": count(row["batch_size"]) * ranks, **load(row), **deployment(row)}
    spec = parse_inference(inference, where)
    return Scenario(path=where, model=model, device=system.device, system=system, num_devices=tp * pp), spec


def select(usable: list[dict[str, str]], limit: int | None = SAMPLE_ROWS) -> list[dict[str, str]]:
    """The deterministic stratified sample of the module docstring (all rows when `limit` is None)."""
    if limit is None or limit >= len(usable):
        return list(usable)
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = defaultdict(list)
    for row in usable:
        groups[(row["backend"], MODELS[row["model_path"]], row["system"])].append(row)
    shares, left = {}, limit
    for n, key in enumerate(sorted(groups, key=lambda k: (len(groups[k]), k))):  # smallest first: water-filling
        shares[key] = min(len(groups[key]), left // (len(groups) - n))
        left -= shares[key]
    chosen: list[dict[str, str]] = []
    for key in sorted(groups):
        ordered = sorted(groups[key], key=lambda r: (count(r["batch_size"]), count(r["isl"]), count(r["osl"]),
                                                      count(r["tp_size"]), r["id"]))
        picks = sorted({int(round(x)) for x in np.linspace(0, len(ordered) - 1, shares[key])}) if shares[key] else []
        chosen += [ordered[i] for i in picks]
    return chosen


def unseen(row: dict[str, str]) -> bool:
    """Whether the row's model is one no fit has seen (`aic_deployments.UNSEEN_MODELS`)."""
    return MODELS.get(row["model_path"]) in UNSEEN_MODELS


def partition(path: Path = CSV, *, unseen_models: bool = False,
              weight_only_rows: bool = False) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The rows of `path` a prediction can be made for, and the others as {id, reason}: the fitted models' rows, or
    with `unseen_models` those of the models no fit has seen, or with `weight_only_rows` Hopper's weight-only ones
    (the fitted side lists the others as skipped; the other sides leave out what is not theirs). What `validate_aic`
    samples and the stack fits sample alike."""
    usable: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []
    for row in rows(path):
        if weight_only_rows:
            if not weight_only(row):
                continue
            reason = skip_reason(row)
        elif unseen_models and not unseen(row):
            continue
        elif not unseen_models and unseen(row):
            reason = "a model no fit has seen: its own held-out section"
        else:
            reason = skip_reason(row) or ("4-bit weights run weight-only (w4a16) on a chip without 4-bit matrix "
                                          "units: section aic_weight_only" if weight_only(row) else None)
        if reason is None:
            usable.append(row)
        else:
            skipped.append({"id": row["id"], "reason": reason})
    return usable, skipped


def validate_aic(limit: int | None = SAMPLE_ROWS, *, only: Callable[[dict[str, str]], bool] | None = None,
                 path: Path = CSV, unseen_models: bool = False, weight_only_rows: bool = False) -> dict[str, Any]:
    """Predicted vs measured TPOT and TTFT for the sampled rows of `path` (every usable row when `limit` is None;
    of those, the ones `only` keeps); the skipped rows with their reasons; per engine and overall, the median and
    maximum |error| and the mean error. The rows are those of the models the stacks were fitted on, or with
    `unseen_models` those of the models no fit has seen, or with `weight_only_rows` those of checkpoints run
    weight-only (each sampled apart, so none changes another)."""
    t0 = time.perf_counter()
    usable, skipped = partition(path, unseen_models=unseen_models, weight_only_rows=weight_only_rows)
    sample = [row for row in select(usable, limit) if only is None or only(row)]
    suspects = layout_suspects(path)
    cases: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for row in sample:
        try:
            scenario, spec = scenario_of(row)
            loop = predict_serving(scenario, spec).closed_loop
        except EmulatorError as e:  # the layout does not fit the model or the device: a fact about the row
            failed.append({"id": row["id"], "reason": f"not predictable: {e.message.split('. Fix')[0]}"})
            continue
        assert loop is not None  # a concurrency spec is always a closed loop
        predicted = {"tpot_ms": loop.tpot_mean_s * 1e3, "ttft_ms": loop.ttft_mean_s * 1e3}
        for suffix, metric in METRICS:
            published = float(row[f"silicon_{metric}"])
            cases.append({"id": f"{row['id']}:{suffix}", "metric": metric, "published": published,
                          "predicted": predicted[metric], "error": predicted[metric] / published - 1,
                          "stack": row["backend"], "source": f"{SOURCE}; {row['silicon_data_source']}",
                          "model": MODELS[row["model_path"]], "system": SYSTEMS[row["system"]],
                          "concurrency": count(row["batch_size"]),
                          **({"layout_suspect": suspects[campaign(row)]} if campaign(row) in suspects else {})})
    metrics: dict[str, dict[str, Any]] = {}
    by_model: dict[str, dict[str, dict[str, Any]]] = {}  # where a signed bias sits: engine -> model -> summary
    unsuspected: dict[str, dict[str, Any]] = {}  # metric -> engine -> summary without `layout_suspects`' rows
    for _, metric in METRICS:
        mine = [c for c in cases if c["metric"] == metric]
        engines = sorted({c["stack"] for c in mine})
        metrics[metric] = {"all": error_summary(mine)} | {e: error_summary([c for c in mine if c["stack"] == e])
                                                         for e in engines}
        screened = [c for c in mine if "layout_suspect" not in c]
        if len(screened) < len(mine):  # the engines' errors over the campaigns whose layouts could have run
            unsuspected[metric] = {e: error_summary([c for c in screened if c["stack"] == e]) for e in engines
                                   if any(c["stack"] == e for c in screened)}
        by_model[metric] = {e: {m: error_summary([c for c in mine if c["stack"] == e and c["model"] == m])
                                for m in sorted({c["model"] for c in mine if c["stack"] == e})} for e in engines}
    reasons = Counter(s["reason"] for s in skipped + failed)
    summary = {"file": path.name,
               "models": "weight-only" if weight_only_rows else "unseen" if unseen_models else "fitted",
               "num_rows": len(usable) + len(skipped), "num_usable": len(usable), "num_sampled": len(sample),
               "num_predicted": len(sample) - len(failed), "num_cases": len(cases),
               "sample": "all usable rows" if limit is None else f"stratified: up to {limit} rows over (engine, "
                         "model, system), evenly spaced in concurrency (published_aic.select)",
               "skipped_by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
               "metrics": metrics, "by_engine_model": by_model, "run_time_s": time.perf_counter() - t0,
               **({"without_layout_suspects": {"metrics": unsuspected, "campaigns": [
                   {"campaign": list(k), "why": v} for k, v in suspects.items()]}} if unsuspected else {}),
               "parameters": "one set: efficiency_for(device), replica.py and the engines' stack profiles"}
    return {"cases": cases, "skipped": skipped + failed, "summary": summary}


def render(result: dict[str, Any]) -> str:
    """A plain table of predicted versus measured, then the summaries and the skip counts."""
    width = max([len(c["id"]) for c in result["cases"]] + [4])
    lines = [f"{'case':{width}s} {'stack':7s} {'published':>10s} {'predicted':>10s} {'error':>8s}"]
    for c in result["cases"]:
        lines.append(f"{c['id']:{width}s} {c['stack']:7s} {c['published']:10.2f} {c['predicted']:10.2f} "
                     f"{c['error']:+8.1%}")
    s = result["summary"]
    lines.append(f"AIConfigurator points of {s['file']} ({s['models']}): {s['num_predicted']} of {s['num_usable']} "
                 f"usable rows predicted ({s['sample']}), {s['num_rows']} rows in all; {s['run_time_s']:.0f} s")
    for metric, groups in s["metrics"].items():
        for group, g in groups.items():
            if g["num_cases"]:
                lines.append(f"  {metric:8s} {group:7s} {g['num_cases']:4d} cases: median |error| "
                             f"{g['median_abs_error']:.1%}, max {g['max_abs_error']:.1%}, mean {g['mean_error']:+.1%}")
    if "without_layout_suspects" in s:
        lines.append("without the rows of campaigns whose stated layouts cannot hold their weights (left out of fits):")
        for metric, engines in s["without_layout_suspects"]["metrics"].items():
            lines += [f"  {metric:8s} {e:7s} {g['num_cases']:4d} cases: median |error| {g['median_abs_error']:.1%}, "
                      f"max {g['max_abs_error']:.1%}, mean {g['mean_error']:+.1%}" for e, g in engines.items()]
    lines.append("per engine and model (median |error|, signed mean):")
    for metric, engines in s["by_engine_model"].items():
        for engine, models in engines.items():
            lines.append(f"  {metric:8s} {engine:7s} " + "; ".join(
                f"{m} {g['median_abs_error']:.0%} ({g['mean_error']:+.0%})" for m, g in models.items()))
    lines += ["skipped rows:"] + [f"  {n:5d}  {reason}" for reason, n in s["skipped_by_reason"].items()]
    return "\n".join(lines)


__all__ = ["BLACKWELL_CSV", "BLACKWELL_SAMPLE_ROWS", "CSV", "MODELS", "SAMPLE_ROWS", "SYSTEMS", "UNSEEN_SAMPLE_ROWS",
           "WEIGHT_ONLY_SAMPLE_ROWS", "attention_ranks", "campaign", "client", "deployment", "holds_weights",
           "layout_suspects", "partition", "precision_of", "render", "rows", "scenario_of", "select", "skip_reason",
           "unseen", "validate_aic", "weight_only"]
