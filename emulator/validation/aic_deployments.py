"""How the rows of AIConfigurator's silicon sample were run, as `published_aic` maps them to scenarios: the benchmark
client that measured a row (`client`; the load it sent: `aic_load`), and the engine settings a deployment's own launch
script states where they differ from the engine's defaults (`deployment`):

InferenceX's TensorRT-LLM Llama 3.1 70B rows (SemiAnalysisAI/InferenceX benchmarks/70b_fp8_h200_trt_slurm.sh, unchanged
from 2025-09-18 to the model's removal on 2025-10-29, the rows' measured date) ran `--max_num_tokens 16384` and, at ISL
= OSL = 1024 below tp 8, batch waiting (`batch_wait_timeout_iters: 20`, `batch_wait_max_tokens_ratio: 0.9`: the engine's
`scheduler.batch_wait_*` items); its SGLang DeepSeek-R1 H200 rows (benchmarks/dsr1_fp8_h200.sh, unchanged from
2026-01-22 to 2026-03-27 around the rows' 2026-02-07 and 2026-03-25 runs) ran `--chunked-prefill-size 32768
--max-prefill-tokens 32768 --max-running-requests 512` (256 beyond 1k/1k) `--mem-fraction-static 0.82` (an explicit
fraction: no computed reserve); its TensorRT-LLM DeepSeek-R1 rows of 2026-01-14 (tp 8, ep 8, image 1.1.0rc2.post2) are
its `dsr1-fp8-h200-trt-mtp` configuration (.github/configs/nvidia-master.yaml at the time: "MTP=3", tp 8 ep 8 at 4-64
clients (1k/1k), 4-128 (1k/8k), 4-32 (8k/1k); the plain configuration stops at 64 clients for 1k/8k, and the rows
include 128), so they state speculative decoding with three drafted tokens, each kept at `MTP_ACCEPTANCE` (without it
their TPOT comes out +52%, the same model's November 2025 rows -17%), and that script's
(benchmarks/dsr1_fp8_h200_trt_mtp_slurm.sh from 2026-01-12) --max_num_tokens ((MTP + 1) x CONC + ISL + 64, rounded up to
64) and free_gpu_memory_fraction 0.75; its rows measured 2025-11-02 (plain, image unstated) ran
benchmarks/dsr1_fp8_h200_trt_slurm.sh as of 2025-10-29 (unchanged to 2025-11-21): `--ep_size=$TP` (expert parallel over
all 8 GPUs, where the rows' moe columns say tensor-parallel experts), DP attention above 64 clients (32 at 8k/1k) with
its balance at 60 iterations, --max_num_tokens CONC + ISL + 64 rounded up to 64 and free_gpu_memory_fraction 0.75,
stated so (with expert parallelism's busiest rank, `stats.busiest_rank_factor`, their TPOT -25..-6% -> -7..+1%); its
TensorRT-LLM gpt-oss-120b H200 rows (weight-only MXFP4, section aic_weight_only) ran
benchmarks/gptoss_fp4_h200_trt(_slurm).sh, which from 2025-10-29 to 2026-02-19 set --max_num_tokens 20000 and
free_gpu_memory_fraction 0.85 and, until 2025-11-21, `--ep_size=$TP` (the rows measured 2025-11-02 say tensor-parallel
experts): stated so (their TPOT median |error| 27.3% -> 19.9%, signed -26% -> -19%; TTFT 31.8% -> 34.5%, the larger
budget taking more prompts an iteration), its B200 rows (gptoss_fp4_b200_trt(_slurm|_docker).sh to 2026-02-19) the same
budget and fraction (over every usable B200 row TTFT 17.3% -> 18.4%, TPOT unchanged; their script of 2025-11-02 spread
the experts only from 256 clients). Its DP-attention DeepSeek-R1 rows (attention_dp_size 8) are that configuration's
`dp-attn: true` entries (1k/1k at 128-256 clients, 1k/8k at 256, 8k/1k at 64-256; the plain configuration has DP
attention only at 8k/1k with 64), whose script (benchmarks/dsr1_fp8_h200_trt_mtp.sh at 2026-01-27) runs MTP=1 with DP
attention, --max_batch_size CONC/TP and --max_num_tokens ((MTP + 1) x that + ISL + 64) rounded up to 64 per rank, and
free_gpu_memory_fraction 0.75, and attention_dp_config enable_balance with timeout_iters 60: stated as one drafted
token, that per-rank token budget, that KV fraction and `scheduler.adp_balance_iters` 60. Its B200 TensorRT-LLM
DeepSeek-R1 rows of the campaigns its MTP commits started (a row's measured stamp is the time of the commit that started
it: PR 392 on 2026-01-14, the fp8 and fp4 MTP updates 632 and 642 on 2026-02-05 and 2026-02-06) ran
benchmarks/dsr1_fp{8,4}_b200_trt_mtp(_slurm).sh at those commits: the same MTP=3 (MTP=1 with DP attention) and token
budget, free_gpu_memory_fraction 0.8 (0.7 for fp8 with DP attention), DP attention's balance at 60 iterations; its plain
B200 campaigns of 2025-11-02, 2025-12-15, 2026-01-29 (fp8) and 2026-02-03 (fp4) ran the plain scripts of those days,
stated as `DSR1_TRT_PLAIN` says (a prompt budget of the clients + ISL + 64 with no 8192 floor before the B200 updates of
2026-01-29 and 2026-02-03, whose 8k/1k rows it lets a whole prompt join a decode batch; on 2025-11-02 the scripts' own
expert- parallel and DP-attention rules: expert parallel over all 8 GPUs where the rows' moe columns say 1); its later
B200 campaigns keep the defaults. InferenceX's B200 TensorRT-LLM Llama 3.1 70B scripts (70b_fp{8,4}_b200_trt_*.sh at
2025-10-29, the rows' date) set what the H200 one does (--max_num_tokens 16384, batch waiting at 1k/1k below tp 8). Its
B200 SGLang DeepSeek-R1 rows of 2026-03-25 ran benchmarks/single_node/dsr1_fp{8,4}_b200.sh as of 2026-03-11: fp8 at tp 8
--max-running-requests 128, --mem-fraction-static 0.82, --chunked-prefill-size 32768, at tp 4 32, 0.95, 8192; fp4 256,
0.85, 16384; --kv-cache-dtype fp8_e4m3; and --scheduler-recv-interval 10 below 16 clients, 30 from 16 (fp8 at tp 4: 10),
stated as `scheduler.recv_interval_iters`. The FP8 rows beyond that configuration's search space (its master config at
the time, 12ba0ae07: tp 8 up to 64 clients at 1k/1k and 1k/8k, 4 at 8k/1k; tp 4 up to 32 at 8k/1k) are its
`dsr1-fp8-b200-sglang-mtp` configuration's (tp 8, 4-512 clients; the sample does not mark speculation, and the plain
script's cap of 128 would have queued its 256- and 512-client rows for minutes, where they measured 1.8-3 s), whose
script (dsr1_fp8_b200_mtp.sh, 2026-03-11) runs EAGLE with 2 steps of one draft each (two drafted tokens, each kept at
`mtp_acceptance`), --max-running-requests 512, chunks of 16384, the same memory fraction, FP8 cache and receive
intervals (`sglang_b200_mtp`); inside the plain space both configurations measured the same points, and those rows keep
the plain script. Its FP4 rows of 2025-11-02 and 2025-11-10 ran dsr1_fp4_b200_docker.sh's same settings (`NOV_2025`; the
first with --enable-ep-moe), stated so though their 5-9 s first tokens are a cold server's (TPOT over every usable row
10.1% -> 13.1%). AIConfigurator's own vLLM rows (aiperf, vLLM 0.12.0) ran servers its generator launched (its vLLM
support came with vLLM 0.11-0.12 templates on 2025-12-04; generator/rule_plugin/vllm.rule: `--max-num-batched-tokens`
max_batch_size + isl + 1500, `--max-num-seqs` 512 below 512 since 2026-01-30): stated as max_batch_tokens 512 + isl +
1500 and batch_size 512 (their TTFT median |error| 41% / 37% / 55% -> 28% / 20% / 30% for Qwen3-32B, Qwen3-235B-A22B and
Llama 3.1 8B, TPOT unchanged; the chosen batch in place of 512 gives the same within 2 points). Its TensorRT-LLM rows
(aiperf, TensorRT-LLM 1.0.0rc3, the same campaign) ran workers its generator launched too
(generator/rule_plugin/benchmark/trtllm.rule: an aggregated worker's max_num_tokens max_batch_size + isl + 1500 rounded
up to whole 32-token KV blocks, its max_batch_size the chosen batch;
backend_templates/trtllm/extra_engine_args.1.0.0rc3.yaml.j2: free_gpu_memory_fraction 0.80, chunked prefill off; the
rule keeps the overlap scheduler on for aggregated workers): stated as max_batch_tokens and
`defaults.kv_memory_fraction` 0.8 (`AIC_TRT_*`). Their TTFT grows with the prompt as that budget says: at 8 clients
Qwen3-32B at tp 1 measured 263-272, 502-509 and 1058-1133 ms for 1k, 2k and 4k prompts (x1.9, x2.1), a wave of 8 prompts
taken two, one and one per iteration (x1.8, x2.1), where 8192 tokens an iteration would take eight, three and one (x1.5,
x1.7). With the engine's own 8192 and no request path (`host.request_s`, fitted with it) their TTFT median |error| over
every usable row was 41.6%; the budget alone takes it to 54% (the waves dissolve into one prompt per iteration) and TPOT
11.6% -> 9.8%; with the fitted request path (40 ms), 28.9% (signed mean 0%) and 12.9%. Its SGLang servers mixed prefill
chunks into decode batches from the versions whose launch templates came after the rule set --enable-mixed-chunk
(`AIC_SGLANG_MIXED_FROM`, `aic_mixed_chunk`: 0.5.6.post2 and later, Llama 3.1 8B, Qwen3-235B-A22B and 10 of the
Qwen3-32B rows); the 0.5.1.post1 Qwen3-32B rows keep the default, which their TPOT bears out (median |error| 7% so, 19%
mixed). Stated so, the Llama 3.1 8B rows' TPOT median |error| goes 15.5% -> 8.8% and TTFT 144% -> 41% (signed +136% ->
-38%: their 512-client rows at tp 2-8 measured 1.4-8 s, growing with the output length, which no mechanism here gives);
leave-one-model-out TPOT 22.8% -> 21.4%, TTFT 23.7% unchanged (signed +6% -> -24%). The same rule's --max-prefill-tokens
isl + 1500 is not stated: SGLang honours it (`scheduler.max_prefill_tokens`: with mixed batches less the running
requests, so one prompt an iteration at these loads), but the measured rows cannot have run under it. By Little's law a
closed loop of C clients completes C / (TTFT + (OSL - 1) x TPOT) requests a second, and a mixed iteration takes about a
TPOT, so the cap bounds that at (prompts it admits) / TPOT (`aic_load.prompts_per_iteration`): 5 of the 46 Llama 3.1 8B
rows need 1.1-1.8 times as many (1000 or 2000-token prompts, 100 out, 128-448 clients at tp 2-8; e.g. 240 clients at tp
8, 2000/100: 58 requests a second at 30 ms a token, where the cap admits 33). Stated anyway, their leave-one-model-out
TTFT goes 23.7% -> 32.5% (Llama 3.1 8B -54% -> -66%, Qwen3-235B-A22B -22% -> -38%), TPOT 21.4% unchanged. The same
measure bears out the budgets stated: the TensorRT-LLM rows took at most 0.95 of the whole prompts theirs admits, the
vLLM and SGLang rows at most 0.65 and 0.55 of their chunks' tokens. Its B200 vLLM gpt-oss-120b rows measured from the
script's vLLM 0.11.2 update on (25506e87c, 2025-12-05: benchmarks/gptoss_fp4_b200_docker.sh, later
single_node/gptoss_fp4_b200.sh) ran `kv-cache-dtype: fp8`, stated so (their TPOT signed mean +14% -> +11%). The unseen
models' B200 scripts from their April 2026 updates on (`UNSEEN_B200_UPDATE`) ran an FP8 KV cache, 0.90 of the memory, 2
x ISL tokens an iteration and 20 tokens a streamed event, stated so (over every usable unseen-model B200 row TTFT 30.3%
-> 20.8%, signed +14% -> -7%, TPOT 13.5% -> 12.4%: MiniMax-M2.5's outliers, up to +19.5x, were a 16-bit cache's half
capacity queueing its requests). Other rows keep their engine's defaults: InferenceX's vLLM Llama 3.1 70B script also
sets `kv-cache-dtype: fp8` and `async-scheduling`, but its rows' KV capacity and decode speed match a 16-bit cache (tp 2
on H100 at 64 clients queues for 31 s, as a 16-bit cache's capacity predicts (26 s) and an 8-bit one's does not (0.3
s)), so when those runs took these settings is in doubt and they are not stated;
"""

from __future__ import annotations

import re
from typing import Any

MODELS = {
    "meta-llama/Llama-3.1-8B-Instruct": "llama3.1-8b",
    "nvidia/Llama-3.1-8B-Instruct-FP8": "llama3.1-8b",
    "meta-llama/Llama-3.1-70B": "llama3.1-70b",
    "Qwen/Qwen3-32B": "qwen3-32b",
    "Qwen/Qwen3-235B-A22B-FP8": "qwen3-235b-a22b",
    "deepseek-ai/DeepSeek-R1": "deepseek-v3",
    "deepseek-ai/DeepSeek-V3": "deepseek-v3",
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "MiniMaxAI/MiniMax-M2.5": "minimax-m2.5",
    "moonshotai/Kimi-K2.5": "kimi-k2.5",
}
# Models no fit has seen: their rows are a held-out section of their own (published_aic.validate_aic(unseen=True)),
# never in the sample the stacks were fitted and cross-validated on (Kimi-K2.5's INT4 rows sit in the weight-only
# section, which vLLM's host.prompt_moe_layer_s was fitted on, each model held out in turn)
UNSEEN_MODELS = frozenset({"minimax-m2.5", "kimi-k2.5"})
# InferenceX's vLLM scripts for them (SemiAnalysisAI/InferenceX benchmarks/single_node/minimaxm2.5_fp8_{h100,h200,
# b200}.sh and kimik2.5_fp4_b200.sh, 2026-03-01 to 2026-03-27, the rows' runs) set --gpu-memory-utilization and
# otherwise vLLM's defaults (their --max-num-seqs, 256 on H100 and the clients' count for Kimi, do not bind a closed
# loop of at most that many clients): (model, system, gemm_quant_mode) -> the KV memory fraction
UNSEEN_KV_FRACTION = {("minimax-m2.5", "h100_sxm", "fp8"): 0.90, ("minimax-m2.5", "h200_sxm", "fp8"): 0.95,
                      ("minimax-m2.5", "b200_sxm", "fp8"): 0.95, ("kimi-k2.5", "b200_sxm", "nvfp4"): 0.90}
# Their B200 scripts from the updates bddbf4031 (MiniMax FP8, 2026-04-03), 79bd988e9 (its new NVFP4 script, 2026-04-08)
# and 6c3acebfa (Kimi NVFP4, 2026-04-20) on: --gpu-memory-utilization 0.90, --kv-cache-dtype fp8,
# --max-num-batched-tokens 2 x ISL, --stream-interval 20: (model, gemm_quant_mode) -> the first day
UNSEEN_B200_UPDATE = {("minimax-m2.5", "fp8"): "2026-04-03", ("minimax-m2.5", "nvfp4"): "2026-04-08",
                      ("kimi-k2.5", "nvfp4"): "2026-04-20"}
# DeepSeek's MTP module drafts its first token as it was trained to: kept 85-90% of the time (DeepSeek-V3 technical
# report, arXiv 2412.19437, section 5.4.3; the low end). TensorRT-LLM runs more than one drafted token by calling the
# same module again on its own draft (MTP Eagle, its default path for DeepSeek-V3/R1: NVIDIA/TensorRT-LLM
# docs/source/blogs/tech_blog/blog2_DeepSeek_R1_MTP_Implementation_and_Optimization.md), and a module trained for the
# first position is kept less often after it: the original module chained seven times keeps 3.20 tokens a step at
# temperature 0 and 3.09 at 1 over MT-bench, HumanEval and GSM8K (Hugging Face model card nebius/MTP-DeepSeek-V3-0324,
# "Original MTP"), 0.63 for each later position given the one before (0.85 first); NVIDIA's AIConfigurator assumes
# fewer still (its V1 default rates [0.85, 0.3, 0, ...]: src/aiconfigurator/sdk/task_v1_compat.py)
MTP_ACCEPTANCE = 0.85
MTP_LATER_ACCEPTANCE = 0.63
# AIConfigurator's generator (src/aiconfigurator/generator/rule_plugin/vllm.rule): a vLLM server's
# --max-num-batched-tokens is its max_batch_size + isl + 1500, --max-num-seqs 512 (when the chosen batch is smaller)
AIC_PROMPT_MARGIN = 1500
AIC_VLLM_MAX_SEQS = 512
# rule_plugin/benchmark/trtllm.rule: an aggregated TensorRT-LLM worker's max_num_tokens is its max_batch_size + isl +
# 1500 rounded up to whole KV blocks of tokens_per_block (32 unless set); backend_templates/trtllm/
# extra_engine_args.1.0.0rc3.yaml.j2: kv_cache_config.free_gpu_memory_fraction 0.80 unless set
AIC_TRT_BLOCK_TOKENS = 32
AIC_TRT_KV_FRACTION = 0.8
# InferenceX's launch scripts' tokens per streamed event by (engine, model, system, GEMM format) (SemiAnalysisAI/
# InferenceX benchmarks/single_node/fixed_seq_len): trtllm-serve's stream_interval in its extra options
# (dsr1_fp{4,8}_{h200,b200}_trt(_mtp).sh 10, gptoss_fp4_{h200,b200}_trt.sh 20, 70b_fp{4,8}_{h200,b200}_trt_slurm.sh
# 10, the last since removed) and SGLang's --stream-interval (dsr1_fp8_h200(_mtp).sh and dsr1_fp4_b200(_mtp).sh 10,
# dsr1_fp8_b200(_mtp).sh 30); its vLLM scripts leave vLLM's default, one token per event
_SYSTEMS = ("h200_sxm", "b200_sxm")
INFERENCEX_STREAM_INTERVAL: dict[tuple[str, str, str, str], int] = {
    **{("trtllm", "deepseek-v3", system, fmt): 10 for system in _SYSTEMS for fmt in ("fp8", "nvfp4")},
    **{("trtllm", "gpt-oss-120b", system, "nvfp4"): 20 for system in _SYSTEMS},  # the sample's format for its MXFP4
    **{("trtllm", "llama3.1-70b", system, fmt): 10 for system in _SYSTEMS for fmt in ("fp8", "nvfp4")},
    ("sglang", "deepseek-v3", "h200_sxm", "fp8"): 10, ("sglang", "deepseek-v3", "b200_sxm", "nvfp4"): 10,
    ("sglang", "deepseek-v3", "b200_sxm", "fp8"): 30,
}
# InferenceX's plain TensorRT-LLM DeepSeek-R1 scripts by campaign (a row's measured stamp): (system, GEMM format) ->
# the campaigns whose scripts were read: benchmarks/dsr1_fp8_h200_trt_slurm.sh and dsr1_fp{8,4}_b200_trt_slurm.sh as
# of 2025-10-29 for the runs of 2025-11-02 (their own expert-parallel and DP-attention rules: before 17d5e204f moved
# both into the master config on 2025-11-03, whose entries the later rows' columns carry), the B200 ones as of
# 2025-12-15, dsr1_fp8_b200_trt.sh at ec7bafaae (2026-01-29) and dsr1_fp4_b200_trt.sh at 6eecc0e66 (2026-02-03).
# All set --max_num_tokens CONC + ISL + 64 rounded up to 64, at least 8192 from those two B200 agg updates on;
# free_gpu_memory_fraction 0.75 on H200 and 0.8 on B200 (0.75 at 8k/1k on tp 4 and 0.7 at 1k/8k from 256 clients in
# the fp8 script of 2026-01-29, which also holds context requests at 1k/1k from 64 clients: batch_wait_timeout_iters
# 40, batch_wait_max_tokens_ratio 0.8); attention_dp_config enable_balance with timeout_iters 60 with DP attention
DSR1_TRT_PLAIN = {("h200_sxm", "fp8"): ("2025-11-02",), ("b200_sxm", "fp8"): ("2025-11-02", "2025-12-15", "2026-01-29"),
                  ("b200_sxm", "nvfp4"): ("2025-11-02", "2025-12-15", "2026-02-03")}
DSR1_TRT_FLOOR_FROM, DSR1_TRT_FLOOR = "2026-01-29", 8192
# InferenceX's SGLang DeepSeek-R1 FP4 B200 campaigns of November 2025 (d8fe8f73e: --ep-size $EP_SIZE from 2025-11-10)
NOV_2025 = ("2025-11-02", "2025-11-10")
# generator/rule_plugin/sglang.rule (and benchmark/sglang.rule from 2026-01-30) sets `agg enable_mixed_chunk = true`
# from 2026-01-19 (commits fa895ffb1, 07a377923: the flag's name fixed the same day); its SGLang launch templates
# for 0.5.6.post2 (2026-01-23, Dynamo 0.8.0), 0.5.8 (2026-02-11) and 0.5.9 (2026-03-25) came after it, the
# 0.5.1.post1 one (2025-12-04) before. So servers of 0.5.6 and later mixed prefill chunks into decode batches.
AIC_SGLANG_MIXED_FROM = (0, 5, 6)


def aic_mixed_chunk(version: str) -> bool:
    """Whether AIConfigurator's generator launched an aggregated SGLang `version` server with --enable-mixed-chunk:
    the versions whose launch templates it added after it set the flag (`AIC_SGLANG_MIXED_FROM`)."""
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    return parts >= AIC_SGLANG_MIXED_FROM


def count(text: str) -> int:
    return int(text) if text.strip() else 0


def attention_ranks(row: dict[str, str]) -> int:
    """The row's attention data-parallel ranks (1: none)."""
    return max(count(row["attention_dp_size"]), 1)


def client(row: dict[str, str]) -> str:
    """The benchmark client that measured the row: `inferencex` or `aiperf` (see the module docstring)."""
    source = row["silicon_data_source"]
    return "inferencex" if source.startswith("db-dump/") or re.match(r"source_file=\d{4}-\d\d-\d\d\.csv", source) \
        else "aiperf"


def measured(row: dict[str, str]) -> str:
    """The day an InferenceX row's campaign started (its source's `measured=` stamp), "" where none is stated."""
    found = re.search(r"measured=(\d{4}-\d\d-\d\d)", row["silicon_data_source"])
    return found.group(1) if found else ""


def mtp_acceptance(draft_tokens: int) -> tuple[float, ...]:
    """The acceptance rate of each of `draft_tokens` chained MTP drafts, given the one before (see MTP_ACCEPTANCE)."""
    return (MTP_ACCEPTANCE,) + (MTP_LATER_ACCEPTANCE,) * (draft_tokens - 1)


def mtp_campaign(row: dict[str, str]) -> bool:
    """Whether an InferenceX TensorRT-LLM DeepSeek-R1 row ran its `-mtp` configuration: on H200 every DP-attention
    row and the campaign of 2026-01-14; on B200 the campaigns of 2026-01-14, 2026-02-05 (fp8) and 2026-02-06 (fp4),
    whose measured stamps are the times of the InferenceX commits that started them (PRs 392, 632, 642)."""
    if row["system"] == "h200_sxm":
        return attention_ranks(row) > 1 or measured(row) == "2026-01-14"
    return row["system"] == "b200_sxm" and measured(row) in ("2026-01-14", "2026-02-05", "2026-02-06")


# InferenceX's plain SGLang DeepSeek-R1 FP8 B200 configuration on 2026-03-25 (.github/configs/nvidia-master.yaml at
# 12ba0ae07, dsr1-fp8-b200-sglang): (isl, osl) -> {tp: highest concurrency}, from 4 clients
SGLANG_B200_FP8_PLAIN = {(1024, 1024): {8: 64}, (1024, 8192): {8: 64}, (8192, 1024): {8: 4, 4: 32}}


def sglang_b200_mtp(row: dict[str, str]) -> bool:
    """Whether an InferenceX SGLang DeepSeek-R1 FP8 B200 row of 2026-03-25 ran the `dsr1-fp8-b200-sglang-mtp`
    configuration (tp 8, 4-512 clients, every length pair): its point lies outside the plain configuration's search
    space (`SGLANG_B200_FP8_PLAIN`). Inside it both configurations measured the same points and the row keeps the
    plain script."""
    if row["gemm_quant_mode"] not in ("fp8", "fp8_block") or count(row["tp_size"]) != 8:
        return False
    highest = SGLANG_B200_FP8_PLAIN.get((count(row["isl"]), count(row["osl"])), {}).get(8, 0)
    return count(row["batch_size"]) * attention_ranks(row) > highest


def dsr1_trt_token_budget(row: dict[str, str], drafts: int) -> int:
    """InferenceX's TensorRT-LLM DeepSeek-R1 scripts' --max_num_tokens: ((drafts + 1) x the row's batch + ISL + 64)
    rounded up to 64 (the plain script's is the MTP scripts' at no drafts)."""
    return ((drafts + 1) * count(row["batch_size"]) + count(row["isl"]) + 64 + 63) // 64 * 64


def _dsr1_trt_plain(row: dict[str, str]) -> dict[str, Any]:
    """A plain (no MTP) TensorRT-LLM DeepSeek-R1 row's deployment as its campaign's script states it
    (`DSR1_TRT_PLAIN`)."""
    system, fmt, day = row["system"], row["gemm_quant_mode"], measured(row)
    tp, clients, lengths = count(row["tp_size"]), count(row["batch_size"]), (count(row["isl"]), count(row["osl"]))
    budget = dsr1_trt_token_budget(row, 0)
    if day >= DSR1_TRT_FLOOR_FROM:
        budget = max(budget, DSR1_TRT_FLOOR)
    fraction = 0.75 if system == "h200_sxm" else 0.8
    settings: dict[str, Any] = {}
    out: dict[str, Any] = {"max_batch_tokens": budget, "engine_settings": settings}
    ranks = attention_ranks(row)
    dp = ranks > 1
    if day == "2025-11-02":  # the scripts' own expert-parallel and DP-attention rules
        if fmt == "nvfp4":  # experts over every rank beyond 32 clients (8, 16 at tp 8's 1k/1k, 1k/8k), DP from 256
            ep = tp if clients > (32 if tp == 4 else {(1024, 1024): 8, (1024, 8192): 16}.get(lengths, 32)) else 1
            dp = clients > 32 if lengths == (8192, 1024) else clients >= 256
        else:  # fp8: experts over every rank; DP attention beyond 64 clients, 32 at H200's 8k/1k and B200's 1k/1k
            ep, short = tp, (8192, 1024) if system == "h200_sxm" else (1024, 1024)
            dp = clients > (32 if lengths == short else 64)
        out["parallel"] = {"tp": tp, "pp": 1, "ep": ep, **({"attention_dp": True} if dp else {})}
    if day == "2026-01-29":  # dsr1_fp8_b200_trt.sh at ec7bafaae
        fraction = 0.75 if lengths == (8192, 1024) and tp == 4 else \
            0.7 if lengths == (1024, 8192) and clients * ranks >= 256 else fraction
        if lengths == (1024, 1024) and clients * ranks >= 64:
            settings.update({"scheduler.batch_wait_iters": 40, "scheduler.batch_wait_tokens_ratio": 0.8})
    settings["defaults.kv_memory_fraction"] = fraction
    if dp:
        settings["scheduler.adp_balance_iters"] = 60
    return out


def deployment(row: dict[str, str]) -> dict[str, Any]:
    """The engine settings the row's deployment script states where they differ from the engine's defaults (the
    module docstring says which and from where): inference keys of its scenario. InferenceX's TensorRT-LLM and SGLang
    scripts stream `INFERENCEX_STREAM_INTERVAL` tokens per event (their vLLM ones every token, the default)."""
    own = _deployment(row)
    interval = INFERENCEX_STREAM_INTERVAL.get((row["backend"], MODELS.get(row["model_path"], ""), row["system"],
                                               row["gemm_quant_mode"])) if client(row) == "inferencex" else None
    if interval is None:
        return own
    return {**own, "engine_settings": {**own.get("engine_settings", {}), "defaults.stream_interval": interval}}


def _deployment(row: dict[str, str]) -> dict[str, Any]:
    if client(row) != "inferencex":
        if row["backend"] == "vllm":  # AIConfigurator's generator launched it
            return {"max_batch_tokens": AIC_VLLM_MAX_SEQS + count(row["isl"]) + AIC_PROMPT_MARGIN,
                    "batch_size": AIC_VLLM_MAX_SEQS}
        if row["backend"] == "trtllm":  # so did it these (its max_batch_size: the row's batch)
            tokens = count(row["batch_size"]) + count(row["isl"]) + AIC_PROMPT_MARGIN
            return {"max_batch_tokens": -(-tokens // AIC_TRT_BLOCK_TOKENS) * AIC_TRT_BLOCK_TOKENS,
                    "engine_settings": {"defaults.kv_memory_fraction": AIC_TRT_KV_FRACTION}}
        if row["backend"] == "sglang" and aic_mixed_chunk(row["backend_version"]):
            return {"engine_settings": {"scheduler.mixed_batches": True}}
        return {}
    model, engine = MODELS[row["model_path"]], row["backend"]
    if model in UNSEEN_MODELS:  # its script's memory fraction where it was read (MiniMax's first NVFP4 one was not)
        update = UNSEEN_B200_UPDATE.get((model, row["gemm_quant_mode"]))
        if update and row["system"] == "b200_sxm" and measured(row) >= update:
            return {"kv_precision": "fp8", "max_batch_tokens": 2 * count(row["isl"]),
                    "engine_settings": {"defaults.kv_memory_fraction": 0.90, "defaults.stream_interval": 20}}
        fraction = UNSEEN_KV_FRACTION.get((model, row["system"], row["gemm_quant_mode"]))
        return {} if fraction is None else {"engine_settings": {"defaults.kv_memory_fraction": fraction}}
    short = count(row["isl"]) == count(row["osl"]) == 1024
    ranks = attention_ranks(row)
    if (engine, model) == ("trtllm", "deepseek-v3") and mtp_campaign(row):
        # dsr1_fp8_h200_trt_mtp(_slurm).sh, dsr1_fp{4,8}_b200_trt_mtp(_slurm).sh: MTP=1 with DP attention, else 3;
        # --max_batch_size CONC/TP (CONC/8, CONC/4 on B200 from February), else CONC (the row's batch_size); and
        # --max_num_tokens ((MTP + 1) x that + ISL + 64) rounded up to 64
        mtp = 1 if ranks > 1 else 3
        fraction = 0.75 if row["system"] == "h200_sxm" else 0.7 if ranks > 1 and measured(row) == "2026-02-05" \
            else 0.8
        settings: dict[str, Any] = {"defaults.kv_memory_fraction": fraction}
        if ranks > 1:
            settings["scheduler.adp_balance_iters"] = 60
        return {"speculative": {"draft_tokens": mtp, "acceptance_rate": list(mtp_acceptance(mtp))},
                "max_batch_tokens": dsr1_trt_token_budget(row, mtp), "engine_settings": settings}
    if (engine, model) == ("trtllm", "deepseek-v3") and measured(row) in DSR1_TRT_PLAIN.get(
            (row["system"], row["gemm_quant_mode"]), ()):
        return _dsr1_trt_plain(row)
    if (engine, model) == ("trtllm", "gpt-oss-120b") and row["system"] in _SYSTEMS:
        # benchmarks/gptoss_fp4_{h200,b200}_trt(_slurm|_docker).sh from 2025-10-29 to 2026-02-19: --max_num_tokens
        # 20000, free_gpu_memory_fraction 0.85; on H200 until 2025-11-21 --ep_size=$TP whatever the row's moe columns
        # say (the B200 script of 2025-11-02 spread the experts only from 256 clients, beyond its rows)
        gpt: dict[str, Any] = {"max_batch_tokens": 20000, "engine_settings": {"defaults.kv_memory_fraction": 0.85}}
        if measured(row) == "2025-11-02" and row["system"] == "h200_sxm":
            gpt["parallel"] = {"tp": count(row["tp_size"]), "pp": 1, "ep": count(row["tp_size"])}
        return gpt
    if (engine, model) == ("trtllm", "llama3.1-70b") and row["system"] in ("h200_sxm", "b200_sxm"):
        out: dict[str, Any] = {"max_batch_tokens": 16384}
        if short and count(row["tp_size"]) < 8:
            out["engine_settings"] = {"scheduler.batch_wait_iters": 20, "scheduler.batch_wait_tokens_ratio": 0.9}
        return out
    if (engine, model, row["system"]) == ("sglang", "deepseek-v3", "b200_sxm") and (
            measured(row) == "2026-03-25" or row["gemm_quant_mode"] == "nvfp4" and measured(row) in NOV_2025):
        # benchmarks/single_node/dsr1_fp8_b200.sh and dsr1_fp4_b200.sh (2026-03-11, unchanged to 2026-03-27):
        # --max-running-requests, --mem-fraction-static, --chunked-prefill-size, --scheduler-recv-interval,
        # --kv-cache-dtype fp8_e4m3; the fp4 one's settings the same in benchmarks/dsr1_fp4_b200_docker.sh for the
        # campaigns of 2025-11-02 and 2025-11-10, the first with --enable-ep-moe (experts over all tp ranks)
        slow = 30 if count(row["batch_size"]) * ranks >= 16 else 10
        if sglang_b200_mtp(row):  # benchmarks/single_node/dsr1_fp8_b200_mtp.sh (2026-03-11): EAGLE, 2 steps
            return {"speculative": {"draft_tokens": 2, "acceptance_rate": list(mtp_acceptance(2))},
                    "max_batch_tokens": 16384, "batch_size": 512, "kv_precision": "fp8",
                    "engine_settings": {"defaults.kv_memory_fraction": 0.82, "defaults.kv_memory_reserve_bytes": 0,
                                        "scheduler.recv_interval_iters": slow}}
        running, fraction, chunk, recv = ((256, 0.85, 16384, slow) if row["gemm_quant_mode"] == "nvfp4" else
                                          (32, 0.95, 8192, 10) if count(row["tp_size"]) == 4 else
                                          (128, 0.82, 32768, slow))
        sgl: dict[str, Any] = {"max_batch_tokens": chunk, "batch_size": running, "kv_precision": "fp8",
                               "engine_settings": {"defaults.kv_memory_fraction": fraction,
                                                   "defaults.kv_memory_reserve_bytes": 0,
                                                   "scheduler.recv_interval_iters": recv}}
        if measured(row) == NOV_2025[0]:
            sgl["parallel"] = {"tp": count(row["tp_size"]), "pp": 1, "ep": count(row["tp_size"])}
        return sgl
    if (engine, model, row["system"]) == ("vllm", "gpt-oss-120b", "b200_sxm") and measured(row) >= "2025-12-05":
        # benchmarks/gptoss_fp4_b200(_docker).sh from 25506e87c (2025-12-05, vLLM 0.11.2 on): kv-cache-dtype fp8
        return {"kv_precision": "fp8"}
    if row["system"] != "h200_sxm":  # the scripts below are the H200 ones; other systems' were not read
        return {}
    if (engine, model) == ("sglang", "deepseek-v3"):
        return {"max_batch_tokens": 32768, "batch_size": 512 if short else 256,
                "engine_settings": {"defaults.kv_memory_fraction": 0.82, "defaults.kv_memory_reserve_bytes": 0,
                                    "scheduler.max_prefill_tokens": 32768}}
    return {}


__all__ = ["AIC_PROMPT_MARGIN", "AIC_SGLANG_MIXED_FROM", "AIC_TRT_BLOCK_TOKENS", "AIC_TRT_KV_FRACTION",
           "AIC_VLLM_MAX_SEQS", "DSR1_TRT_FLOOR", "DSR1_TRT_FLOOR_FROM", "DSR1_TRT_PLAIN", "INFERENCEX_STREAM_INTERVAL",
           "MODELS", "MTP_ACCEPTANCE", "MTP_LATER_ACCEPTANCE", "NOV_2025", "UNSEEN_B200_UPDATE", "UNSEEN_KV_FRACTION",
           "UNSEEN_MODELS", "aic_mixed_chunk", "attention_ranks", "client", "count", "deployment",
           "dsr1_trt_token_budget", "measured", "mtp_acceptance", "mtp_campaign", "sglang_b200_mtp"]
