"""The command-line flags and config keys each launcher documents, with where they are documented.

A generated launch file uses only these (tests/test_launch.py checks every flag of every file against them), so a
flag that a tool renamed shows up here, at one place, with its source. Megatron-LM flags carry the first
Megatron-Core release whose `megatron/training/arguments.py` has them (checked on the core_r0.8.0 ... core_v0.15.0
tags): a launch script states the oldest release its flags need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Tool:
    """One launcher: the flags (or config keys) it documents and where."""

    name: str
    source: str
    flags: Mapping[str, str] = field(default_factory=dict)  # flag or dotted key -> note (Megatron: since which core)


def _frozen(names: str, note: str = "") -> dict[str, str]:
    return {n: note for n in names.split()}


TORCHRUN = Tool(
    "torchrun", "https://docs.pytorch.org/docs/stable/elastic/run.html (torch/distributed/run.py, torch 2.4-2.13)",
    MappingProxyType(_frozen("--nnodes --nproc-per-node --node-rank --master-addr --master-port --rdzv-backend "
                             "--rdzv-endpoint --rdzv-id -m")))

_MEGATRON_SINCE_0_8 = (
    "--tensor-model-parallel-size --pipeline-model-parallel-size --context-parallel-size --expert-model-parallel-size "
    "--num-layers-per-virtual-pipeline-stage --sequence-parallel --use-distributed-optimizer --overlap-grad-reduce "
    "--overlap-param-gather --micro-batch-size --global-batch-size --seq-length --max-position-embeddings "
    "--num-layers --hidden-size --ffn-hidden-size --num-attention-heads --group-query-attention --num-query-groups "
    "--kv-channels --normalization --norm-epsilon --swiglu --position-embedding-type --rotary-base "
    "--untie-embeddings-and-output-weights --disable-bias-linear --add-qkv-bias --qk-layernorm --bf16 --fp16 "
    "--fp8-format --recompute-granularity --recompute-method --recompute-num-layers --num-experts --moe-router-topk "
    "--moe-grouped-gemm --train-iters --lr --min-lr --lr-decay-style --lr-warmup-iters --weight-decay --clip-grad "
    "--adam-beta1 --adam-beta2 --tokenizer-type --tokenizer-model --data-path --split --save --load --save-interval "
    "--log-interval --eval-interval --eval-iters --transformer-impl")
_MEGATRON_SINCE_0_10 = (
    "--expert-tensor-parallel-size --use-torch-fsdp2 --moe-ffn-hidden-size --moe-shared-expert-intermediate-size "
    "--moe-layer-freq --multi-latent-attention --q-lora-rank --kv-lora-rank --qk-head-dim --qk-pos-emb-head-dim "
    "--v-head-dim")
MEGATRON = Tool(
    "Megatron-LM pretrain_gpt.py",
    "https://github.com/NVIDIA/Megatron-LM/blob/core_v0.15.0/megatron/training/arguments.py (each flag checked on "
    "the core_r0.8.0 to core_v0.15.0 tags)",
    MappingProxyType({**_frozen(_MEGATRON_SINCE_0_8, "0.8"), **_frozen(_MEGATRON_SINCE_0_10, "0.10"),
                      "--moe-router-score-function": "0.11", "--recompute-modules": "0.12", "--window-size": "0.15",
                      "--window-attn-skip-freq": "0.15"}))

# torchtitan's TOML: section.key, as the dataclasses of torchtitan/config/job_config.py name them.
TORCHTITAN = Tool(
    "torchtitan TOML",
    "https://github.com/pytorch/torchtitan/blob/v0.2.0/torchtitan/config/job_config.py (JobConfig; example: "
    "torchtitan/models/llama3/train_configs/llama3_8b.toml)",
    MappingProxyType(_frozen(
        "job.dump_folder job.description model.name model.flavor model.hf_assets_path model.converters "
        "optimizer.name optimizer.lr optimizer.eps optimizer.weight_decay lr_scheduler.warmup_steps "
        "training.local_batch_size training.global_batch_size training.seq_len training.max_norm training.steps "
        "training.dataset training.dataset_path training.mixed_precision_param "
        "parallelism.data_parallel_replicate_degree parallelism.data_parallel_shard_degree "
        "parallelism.tensor_parallel_degree parallelism.pipeline_parallel_degree "
        "parallelism.pipeline_parallel_schedule parallelism.pipeline_parallel_microbatch_size "
        "parallelism.context_parallel_degree parallelism.expert_parallel_degree "
        "parallelism.expert_tensor_parallel_degree activation_checkpoint.mode "
        "activation_checkpoint.selective_ac_option "
        "compile.enable compile.components checkpoint.enable checkpoint.folder checkpoint.interval metrics.log_freq "
        "quantize.linear.float8.enable_fsdp_float8_all_gather "
        "quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp quantize.linear.float8.filter_fqns")))
TORCHTITAN_RUN = Tool(
    "python -m torchtitan.train", "https://github.com/pytorch/torchtitan/blob/v0.2.0/run_train.sh",
    MappingProxyType(_frozen("--job.config_file")))

VLLM = Tool(
    "vllm serve",
    "https://docs.vllm.ai/en/v0.8.5/serving/engine_args.html; --enable-expert-parallel: "
    "https://docs.vllm.ai/en/v0.10.1.1/serving/expert_parallel_deployment.html (--data-parallel-size with "
    "--enable-expert-parallel: data-parallel attention, experts spread over every rank)",
    MappingProxyType(_frozen(
        "--tensor-parallel-size --pipeline-parallel-size --data-parallel-size --enable-expert-parallel --max-num-seqs "
        "--max-num-batched-tokens --max-model-len --gpu-memory-utilization --kv-cache-dtype --dtype --quantization "
        "--no-enable-prefix-caching --host --port")))

TRTLLM = Tool(
    "trtllm-serve",
    "https://nvidia.github.io/TensorRT-LLM/1.0.0rc6/commands/trtllm-serve/trtllm-serve.html and "
    "tensorrt_llm/commands/serve.py (click options)",
    MappingProxyType(_frozen(
        "--backend --tp_size --pp_size --ep_size --max_batch_size --max_num_tokens --max_seq_len "
        "--kv_cache_free_gpu_memory_fraction --extra_llm_api_options --host --port")))
# Keys of the YAML that --extra_llm_api_options merges into the LLM API's arguments.
TRTLLM_OPTIONS = Tool(
    "trtllm-serve --extra_llm_api_options YAML",
    "TensorRT-LLM LLM API arguments and KvCacheConfig (tensorrt_llm/llmapi/llm_args.py: disable_overlap_scheduler, "
    "enable_chunked_prefill, batch_wait_timeout_iters, batch_wait_max_tokens_ratio, enable_attention_dp, "
    "attention_dp_config: AttentionDpConfig enable_balance, timeout_iters; KvCacheConfig enable_block_reuse); 'The two "
    "valid values for "
    "kv_cache_config.dtype are auto and fp8' (TensorRT-LLM docs, quantization)",
    MappingProxyType(_frozen("kv_cache_config.dtype kv_cache_config.free_gpu_memory_fraction "
                             "kv_cache_config.enable_block_reuse disable_overlap_scheduler "
                             "enable_chunked_prefill batch_wait_timeout_iters batch_wait_max_tokens_ratio "
                             "enable_attention_dp attention_dp_config.enable_balance "
                             "attention_dp_config.timeout_iters")))

SGLANG = Tool(
    "python -m sglang.launch_server",
    "https://docs.sglang.io/advanced_features/server_arguments.html (python/sglang/srt/server_args.py)",
    MappingProxyType(_frozen(
        "--model-path --tp-size --pp-size --ep-size --max-running-requests --chunked-prefill-size --context-length "
        "--mem-fraction-static --kv-cache-dtype --dtype --quantization --enable-dp-attention --dp-size "
        "--disable-radix-cache --host --port")))

TOOLS: Mapping[str, Tool] = MappingProxyType({t.name: t for t in (TORCHRUN, MEGATRON, TORCHTITAN, TORCHTITAN_RUN,
                                                                  VLLM, TRTLLM, TRTLLM_OPTIONS, SGLANG)})


def megatron_since(flags: list[str]) -> str:
    """The oldest Megatron-Core release that has every one of `flags`."""
    return max((MEGATRON.flags[f] for f in flags if f in MEGATRON.flags), key=lambda v: tuple(map(int, v.split("."))),
               default="0.8")


__all__ = ["MEGATRON", "SGLANG", "TOOLS", "TORCHRUN", "TORCHTITAN", "TORCHTITAN_RUN", "TRTLLM", "TRTLLM_OPTIONS",
           "VLLM", "Tool", "megatron_since"]
