"""Serving launch files for one replica layout: `vllm serve`, `trtllm-serve` (with its extra LLM API options YAML)
or SGLang's `python -m sglang.launch_server`, with the values the prediction assumed: tensor, pipeline and expert
parallel sizes, the running-sequence cap the simulation used, the iteration token budget, the KV-cache precision,
the longest request and the engine's memory fraction (its stack profile's defaults unless the scenario set them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from emulator.errors import EmulatorError
from emulator.launch.files import LaunchFile, header, model_repo, shell_command, shell_script
from emulator.launch.flags import SGLANG, TRTLLM, TRTLLM_OPTIONS, VLLM, Tool
from emulator.scenario import Scenario
from emulator.scenario.inference import Distribution
from emulator.stacks import StackProfile
from emulator.workloads.config import TransformerConfig

PORT = 8000
_TORCH_DTYPE = {"fp16": "float16"}  # everything else runs its activations in bf16


@dataclass(frozen=True, slots=True)
class Replica:
    """What one replica's launch command sets, resolved from the scenario, its engine and the prediction."""

    tp: int
    pp: int
    ep: int
    max_batch: int
    max_batch_tokens: int
    max_seq_len: int
    kv_precision: str
    precision: str
    memory_fraction: float
    replicas: int
    attention_dp: bool = False  # the tp ranks run attention data parallel; max_batch is then all ranks' together


def replica_of(s: Scenario, stack: StackProfile, max_batch: int, replicas: int) -> Replica:
    """The launch values of a serving scenario, with the simulation's running-sequence cap `max_batch`."""
    spec, m = s.serving, s.model
    assert spec is not None
    if not isinstance(m, TransformerConfig):
        raise EmulatorError(f"{m.name} is a recommender; launch files are written for LLM serving engines (vLLM, "
                            "TensorRT-LLM, SGLang). Fix: drop --launch for this scenario.", file=s.path,
                            field="--launch")

    def longest(d: Distribution) -> float:
        return d.mean if d.kind == "fixed" else (d.maximum if math.isfinite(d.maximum) else m.max_seq_len)

    length = min(m.max_seq_len, math.ceil(longest(spec.input_tokens) + longest(spec.output_tokens)))
    return Replica(tp=spec.tp, pp=spec.pp, ep=spec.ep, max_batch=max_batch,
                   max_batch_tokens=spec.max_batch_tokens or stack.count_for("defaults.max_batch_tokens",
                                                                             s.device.family, s.device.memory_bytes),
                   max_seq_len=length, kv_precision=spec.kv, precision=spec.precision,
                   memory_fraction=float(stack.get("defaults.kv_memory_fraction")), replicas=replicas,
                   attention_dp=spec.attention_dp)


def _head(s: Scenario, r: Replica, stack: StackProfile, tool: Tool, predicted: list[str], notes: list[str]
          ) -> list[str]:
    if s.serving is not None and s.serving.speculative:
        k, a = s.serving.speculative
        rates = ", ".join(f"{r:g}" for r in a) if isinstance(a, tuple) else f"{a:g}"
        notes = [*notes, f"the prediction assumes speculative decoding ({k} drafted token(s) per step, acceptance "
                         f"{rates}): configure the engine's drafter (MTP or EAGLE) as the deployment runs it"]
    return [f"{s.model.name}: {r.replicas} replica(s) of tp {r.tp} x pp {r.pp} on {s.device.name}, from {s.path}.",
            f"Targets: {tool.name} ({stack.title}; stack profile {stack.name}: {stack.versions}); flags checked "
            f"against {tool.source}.", *predicted, *[f"Note: {n}." for n in notes],
            f"Start one per replica, each on its own {r.tp * r.pp} device(s) (CUDA_VISIBLE_DEVICES, PORT), behind a "
            "load balancer."]


def _per_rank(r: Replica) -> int:
    """The running-sequence cap the engine takes: per attention rank under attention data parallelism (vLLM's
    --max-num-seqs and TensorRT-LLM's --max_batch_size hold per data-parallel rank), else the replica's."""
    return max(r.max_batch // r.tp, 1) if r.attention_dp else r.max_batch


def _quantized(r: Replica, notes: list[str]) -> bool:
    """Whether the engine quantizes bf16 weights itself (fp8); other low precisions need a quantized checkpoint."""
    if r.precision in ("fp4", "int8"):
        notes.append(f"{r.precision} weights: point MODEL at a {r.precision} checkpoint (e.g. one quantized with "
                     "NVIDIA ModelOpt); the engine reads its format from it")
    return r.precision == "fp8"


def vllm_files(s: Scenario, r: Replica, stack: StackProfile, predicted: list[str]) -> tuple[LaunchFile, ...]:
    notes: list[str] = []
    flags: list[tuple[str, object | None]] = [("--tensor-parallel-size", 1 if r.attention_dp else r.tp)]
    if r.attention_dp:  # attention data parallel over the ranks, experts over all of them
        flags.append(("--data-parallel-size", r.tp))
    if r.pp > 1:
        flags.append(("--pipeline-parallel-size", r.pp))
    if r.ep > 1:
        flags.append(("--enable-expert-parallel", None))
        if r.ep != r.tp:
            notes.append(f"vLLM's expert parallelism spans all {r.tp} tensor-parallel ranks, not ep {r.ep}")
    if r.kv_precision == "int8":
        notes.append("vLLM has no int8 KV cache: the model's dtype is used ('auto')")
    flags += [("--max-num-seqs", _per_rank(r)), ("--max-num-batched-tokens", r.max_batch_tokens),
              ("--max-model-len", r.max_seq_len), ("--gpu-memory-utilization", r.memory_fraction),
              ("--kv-cache-dtype", "fp8" if r.kv_precision == "fp8" else "auto"),
              ("--dtype", _TORCH_DTYPE.get(r.precision, "bfloat16"))]
    if _quantized(r, notes):
        flags.append(("--quantization", "fp8"))
    if not stack.get("defaults.prefix_caching"):  # on by default in V1
        flags.append(("--no-enable-prefix-caching", None))
    flags += [("--host", "0.0.0.0"), ("--port", "$PORT")]
    text = shell_script(_head(s, r, stack, VLLM, predicted, notes), {"MODEL": model_repo(s.model), "PORT": PORT},
                        shell_command(["vllm", "serve", "$MODEL"], flags))
    return (LaunchFile("serve_vllm.sh", text, VLLM.name),)


def trtllm_files(s: Scenario, r: Replica, stack: StackProfile, predicted: list[str]) -> tuple[LaunchFile, ...]:
    notes: list[str] = []
    if r.precision == "fp8":
        notes.append("fp8 weights: point MODEL at an FP8 checkpoint (TensorRT-LLM reads the quantization from it)")
    _quantized(r, notes)
    if r.kv_precision == "int8":
        notes.append("kv_cache_config.dtype takes auto or fp8: the int8 KV cache comes from an int8 checkpoint")
    flags: list[tuple[str, object | None]] = [
        ("--backend", "pytorch"), ("--tp_size", r.tp), ("--pp_size", r.pp)]
    if isinstance(s.model, TransformerConfig) and s.model.is_moe:
        flags.append(("--ep_size", r.ep))
    flags += [("--max_batch_size", _per_rank(r)), ("--max_num_tokens", r.max_batch_tokens),
              ("--max_seq_len", r.max_seq_len), ("--kv_cache_free_gpu_memory_fraction", r.memory_fraction),
              ("--extra_llm_api_options", "$OPTIONS"), ("--host", "0.0.0.0"), ("--port", "$PORT")]
    text = shell_script(_head(s, r, stack, TRTLLM, predicted, notes),
                        {"MODEL": model_repo(s.model), "PORT": PORT,
                         "OPTIONS": '$(dirname "$0")/trtllm_options.yaml'},
                        shell_command(["trtllm-serve", "$MODEL"], flags))
    options = header([f"trtllm-serve --extra_llm_api_options for {s.model.name} (serve_trtllm.sh); keys checked "
                      f"against {TRTLLM_OPTIONS.source}."]) + (
        "kv_cache_config:\n"
        f"  dtype: {'fp8' if r.kv_precision == 'fp8' else 'auto'}\n"
        f"  free_gpu_memory_fraction: {r.memory_fraction}\n"
        f"  enable_block_reuse: {str(bool(stack.get('defaults.prefix_caching'))).lower()}\n"
        f"disable_overlap_scheduler: {str(not stack.get('host.overlap')).lower()}\n"
        f"enable_chunked_prefill: {str(bool(stack.get('scheduler.chunked_prefill'))).lower()}\n")
    if stack.get("scheduler.batch_wait_iters"):
        options += (f"batch_wait_timeout_iters: {stack.get('scheduler.batch_wait_iters')}\n"
                    f"batch_wait_max_tokens_ratio: {stack.get('scheduler.batch_wait_tokens_ratio')}\n")
    if r.attention_dp:
        options += "enable_attention_dp: true\n"
        if stack.get("scheduler.adp_balance_iters"):
            options += ("attention_dp_config:\n  enable_balance: true\n"
                        f"  timeout_iters: {stack.get('scheduler.adp_balance_iters')}\n")
    return (LaunchFile("serve_trtllm.sh", text, TRTLLM.name),
            LaunchFile("trtllm_options.yaml", options, TRTLLM_OPTIONS.name))


def sglang_files(s: Scenario, r: Replica, stack: StackProfile, predicted: list[str]) -> tuple[LaunchFile, ...]:
    notes: list[str] = []
    flags: list[tuple[str, object | None]] = [("--model-path", "$MODEL"), ("--tp-size", r.tp)]
    if r.pp > 1:
        flags.append(("--pp-size", r.pp))
    if r.ep > 1:
        flags.append(("--ep-size", r.ep))
    if r.attention_dp:
        flags += [("--enable-dp-attention", None), ("--dp-size", r.tp)]
    if r.kv_precision == "int8":
        notes.append("SGLang has no int8 KV cache: the model's dtype is used ('auto')")
    flags += [("--max-running-requests", r.max_batch), ("--chunked-prefill-size", r.max_batch_tokens),
              ("--context-length", r.max_seq_len), ("--mem-fraction-static", r.memory_fraction),
              ("--kv-cache-dtype", "fp8_e4m3" if r.kv_precision == "fp8" else "auto"),
              ("--dtype", _TORCH_DTYPE.get(r.precision, "bfloat16"))]
    if _quantized(r, notes):
        flags.append(("--quantization", "fp8"))
    if not stack.get("defaults.prefix_caching"):  # the radix cache is on by default
        flags.append(("--disable-radix-cache", None))
    flags += [("--host", "0.0.0.0"), ("--port", "$PORT")]
    text = shell_script(_head(s, r, stack, SGLANG, predicted, notes), {"MODEL": model_repo(s.model), "PORT": PORT},
                        shell_command(["python", "-m", "sglang.launch_server"], flags))
    return (LaunchFile("serve_sglang.sh", text, SGLANG.name),)


ENGINES = {"vllm": vllm_files, "trtllm": trtllm_files, "sglang": sglang_files}

__all__ = ["ENGINES", "Replica", "replica_of", "sglang_files", "trtllm_files", "vllm_files"]
