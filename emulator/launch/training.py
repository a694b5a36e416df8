"""Training launch files for a plan: Megatron-LM's `pretrain_gpt.py` under torchrun (stack `megatron-core`), or a
torchtitan TOML and its torchrun command (stack `torchtitan`).

What the plan fixes (parallel sizes, micro- and global batch, sequence length, recompute, precision, the stack's
defaults the prediction assumed such as sequence parallelism and the distributed optimizer) becomes flags; what a
prediction does not know (data, tokenizer, learning rate, checkpoints, the master node) becomes shell variables.
"""

from __future__ import annotations

import math

from emulator.cluster.plan import Plan, recomputed_modules
from emulator.errors import EmulatorError
from emulator.launch.files import HF_REPOS, LaunchFile, header, model_repo, shell_command, shell_script
from emulator.launch.flags import MEGATRON, TORCHRUN, TORCHTITAN, megatron_since
from emulator.scenario import Scenario
from emulator.stacks import StackProfile
from emulator.workloads.config import TransformerConfig

# torchtitan 0.2's model flavors (torchtitan/models/<name>/__init__.py) with the same dimensions as a preset.
TORCHTITAN_FLAVORS = {
    "llama3-8b": ("llama3", "8B"), "llama3.1-8b": ("llama3", "8B"), "llama3-70b": ("llama3", "70B"),
    "llama3.1-70b": ("llama3", "70B"), "llama3.1-405b": ("llama3", "405B"), "deepseek-v3": ("deepseek_v3", "671B"),
    "qwen3-32b": ("qwen3", "32B"), "qwen3-30b-a3b": ("qwen3", "30B-A3B"), "qwen3-235b-a22b": ("qwen3", "235B-A22B"),
}
MASTER_PORT = 29500


def _nodes(s: Scenario) -> tuple[int, int]:
    """(nodes, processes per node) of the scenario's devices."""
    per_node = s.system.devices_per_node if s.system else min(8, s.num_devices)
    per_node = min(per_node, s.num_devices)
    return math.ceil(s.num_devices / per_node), per_node


def _train_iters(s: Scenario) -> int:
    tr = s.training
    assert tr is not None
    tokens_per_step = tr.global_batch_size * tr.seq_len
    return math.ceil(tr.total_tokens / tokens_per_step) if tr.total_tokens else 1000


def _architecture(m: TransformerConfig) -> list[tuple[str, object | None]]:
    flags: list[tuple[str, object | None]] = [
        ("--num-layers", m.num_layers), ("--hidden-size", m.hidden_size), ("--ffn-hidden-size", m.ffn_hidden_size),
        ("--num-attention-heads", m.num_heads)]
    if m.attention == "mla":
        flags += [("--multi-latent-attention", None), ("--kv-lora-rank", m.kv_lora_rank),
                  ("--qk-head-dim", m.qk_nope_head_dim), ("--qk-pos-emb-head-dim", m.qk_rope_head_dim),
                  ("--v-head-dim", m.v_head_dim)]
        if m.q_lora_rank:
            flags.append(("--q-lora-rank", m.q_lora_rank))
    else:
        if m.num_kv_heads < m.num_heads:
            flags += [("--group-query-attention", None), ("--num-query-groups", m.num_kv_heads)]
        if m.head_dim * m.num_heads != m.hidden_size:
            flags.append(("--kv-channels", m.head_dim))
    flags += [("--normalization", "RMSNorm" if m.norm == "rmsnorm" else "LayerNorm"), ("--norm-epsilon", m.norm_eps)]
    if m.mlp == "swiglu":
        flags.append(("--swiglu", None))
    if m.positions == "rope":
        flags += [("--position-embedding-type", "rope"), ("--rotary-base", int(m.rope_theta))]
    else:
        flags.append(("--position-embedding-type", "learned_absolute"))
    if not m.tie_embeddings:
        flags.append(("--untie-embeddings-and-output-weights", None))
    if not (m.qkv_bias or m.out_bias or m.mlp_bias):
        flags.append(("--disable-bias-linear", None))
    elif m.qkv_bias:
        flags.append(("--add-qkv-bias", None))
    if m.qk_norm:
        flags.append(("--qk-layernorm", None))
    if m.sliding_window:  # Transformer Engine's (left, right) window: the key itself and w - 1 before it
        flags.append(("--window-size", f"{m.sliding_window - 1},0"))
        if m.full_attention_every:  # N: (N - 1) windowed layers, then one full
            flags.append(("--window-attn-skip-freq", m.full_attention_every))
    if m.is_moe:
        flags += [("--num-experts", m.num_experts), ("--moe-router-topk", m.num_experts_per_token),
                  ("--moe-ffn-hidden-size", m.moe_ffn_hidden_size)]
        if m.num_shared_experts:
            flags.append(("--moe-shared-expert-intermediate-size", m.num_shared_experts * m.moe_ffn_hidden_size))
        if m.num_dense_layers:
            flags.append(("--moe-layer-freq", f"([0]*{m.num_dense_layers}+[1]*{m.num_moe_layers})"))
        if m.router == "sigmoid":
            flags.append(("--moe-router-score-function", "sigmoid"))
    return flags


def _parallel(plan: Plan, stack: StackProfile, m: TransformerConfig) -> tuple[list[tuple[str, object | None]],
                                                                                list[str]]:
    flags: list[tuple[str, object | None]] = [
        ("--tensor-model-parallel-size", plan.tp), ("--pipeline-model-parallel-size", plan.pp),
        ("--context-parallel-size", plan.cp)]
    notes = []
    if plan.ep > 1:
        flags.append(("--expert-model-parallel-size", plan.ep))
    if plan.etp > 1:
        flags.append(("--expert-tensor-parallel-size", plan.etp))
    if plan.virtual_stages > 1:
        flags.append(("--num-layers-per-virtual-pipeline-stage", m.num_layers // (plan.pp * plan.virtual_stages)))
    if plan.sequence_parallel and plan.tp > 1:
        flags.append(("--sequence-parallel", None))
    if plan.shard_stage >= 3:
        flags.append(("--use-torch-fsdp2", None))
    elif plan.shard_stage >= 1:
        flags.append(("--use-distributed-optimizer", None))
        if plan.shard_stage == 2:
            notes.append("ZeRO-2: Megatron's distributed optimizer reduce-scatters gradients (its closest mode)")
        if stack.get("overlap.dp_grad_reduce") > 0:
            flags.append(("--overlap-grad-reduce", None))
        if stack.get("overlap.dp_param_gather") > 0:
            flags.append(("--overlap-param-gather", None))
    if m.is_moe and stack.get("moe.grouped_gemm"):
        flags.append(("--moe-grouped-gemm", None))
    return flags, notes


def megatron_files(s: Scenario, plan: Plan, stack: StackProfile, predicted: list[str]) -> tuple[LaunchFile, ...]:
    """`train_megatron.sh`: torchrun over the plan's nodes running Megatron-LM's pretrain_gpt.py."""
    tr, m = s.training, s.model
    assert tr is not None and isinstance(m, TransformerConfig)
    nodes, per_node = _nodes(s)
    flags, notes = _parallel(plan, stack, m)
    flags += [("--micro-batch-size", plan.microbatch_size), ("--global-batch-size", tr.global_batch_size),
              ("--seq-length", tr.seq_len), ("--max-position-embeddings", m.max_seq_len), *_architecture(m)]
    if tr.precision in ("fp8", "bf16"):
        flags.append(("--bf16", None))
        if tr.precision == "fp8":
            flags.append(("--fp8-format", "hybrid"))
    elif tr.precision == "fp16":
        flags.append(("--fp16", None))
    else:
        notes.append(f"precision {tr.precision}: no pretrain_gpt.py flag; the script trains in fp32")
    if tr.recompute == "full":
        flags += [("--recompute-granularity", "full"), ("--recompute-method", "uniform"), ("--recompute-num-layers", 1)]
    elif tr.recompute == "selective":
        flags.append(("--recompute-granularity", "selective"))
        modules = recomputed_modules(tr.recompute, stack.get("recompute.selective"))
        if modules:  # Megatron-Core's own names; its default is core_attn alone
            flags.append(("--recompute-modules", modules))
    flags += [("--transformer-impl", "transformer_engine"), ("--train-iters", "$TRAIN_ITERS"),
              ("--lr", "$LR"), ("--min-lr", "$MIN_LR"), ("--lr-decay-style", "cosine"),
              ("--lr-warmup-iters", "$WARMUP_ITERS"), ("--weight-decay", 0.1), ("--clip-grad", 1.0),
              ("--adam-beta1", 0.9), ("--adam-beta2", 0.95), ("--tokenizer-type", "HuggingFaceTokenizer"),
              ("--tokenizer-model", "$TOKENIZER"), ("--data-path", "$DATA_PATH"), ("--split", "99,1,0"),
              ("--save", "$CHECKPOINTS"), ("--load", "$CHECKPOINTS"), ("--save-interval", 1000),
              ("--log-interval", 10), ("--eval-interval", 1000), ("--eval-iters", 10)]
    names = [f for f, _ in flags]
    unknown = [f for f in names if f not in MEGATRON.flags]
    if unknown:  # a bug here, not the user's: every flag must be one the tool documents
        raise EmulatorError(f"the Megatron launcher wrote undocumented flags {unknown}.", field="launch")
    torchrun = ["torchrun", "--nnodes", nodes, "--nproc-per-node", per_node, "--node-rank", "$NODE_RANK",
                "--master-addr", "$MASTER_ADDR", "--master-port", MASTER_PORT, "pretrain_gpt.py"]
    head = [f"{s.model.name} on {s.num_devices} x {s.device.name} ({nodes} node(s) of {per_node}), from {s.path}.",
            f"Targets: Megatron-LM pretrain_gpt.py with Megatron-Core >= {megatron_since(names)} "
            f"(stack profile {stack.name}: {stack.versions}).",
            f"Flags checked against {MEGATRON.source}; torchrun: {TORCHRUN.source}.",
            *predicted, *[f"Note: {n}." for n in notes],
            "Run in a Megatron-LM checkout on every node, NODE_RANK set (0 .. nodes - 1), MASTER_ADDR the first."]
    variables = {"NODE_RANK": 0, "MASTER_ADDR": "localhost", "TOKENIZER": model_repo(m),
                 "DATA_PATH": "/data/my-corpus_text_document", "CHECKPOINTS": "./checkpoints",
                 "TRAIN_ITERS": _train_iters(s), "LR": "3.0e-4", "MIN_LR": "3.0e-5", "WARMUP_ITERS": 2000}
    return (LaunchFile("train_megatron.sh", shell_script(head, variables, shell_command(torchrun, flags)),
                       MEGATRON.name),)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def torchtitan_files(s: Scenario, plan: Plan, stack: StackProfile, predicted: list[str]) -> tuple[LaunchFile, ...]:
    """`torchtitan.toml` (the plan as torchtitan's job config) and `train_torchtitan.sh` (torchrun over the nodes)."""
    tr, m = s.training, s.model
    assert tr is not None and isinstance(m, TransformerConfig)
    nodes, per_node = _nodes(s)
    name, flavor = TORCHTITAN_FLAVORS.get(m.name, ("llama3", m.name))
    notes = [] if m.name in TORCHTITAN_FLAVORS else [
        f"torchtitan ships no flavor with {m.name}'s dimensions: register '{m.name}' in "
        f"torchtitan/models/{name}/__init__.py (layers {m.num_layers}, dim {m.hidden_size}, heads {m.num_heads})"]
    shard = plan.dp if plan.shard_stage >= 1 else 1
    if 0 < plan.shard_stage < 3:
        notes.append(f"ZeRO-{plan.shard_stage} has no torchtitan mode: FSDP over the {plan.dp} data-parallel ranks")
    sections: dict[str, dict[str, object]] = {
        "job": {"dump_folder": "./outputs", "description": f"{m.name} planned by emulator ({s.path})"},
        "model": {"name": name, "flavor": flavor, "hf_assets_path": f"./assets/hf/{HF_REPOS.get(m.name, m.name)}"},
        "optimizer": {"name": "AdamW", "lr": 3e-4, "eps": 1e-8, "weight_decay": 0.1},
        "lr_scheduler": {"warmup_steps": 2000},
        # Without pipelining a rank runs micro-batches of local_batch_size and accumulates to the global batch; with
        # it, the local batch is what the pipeline splits into micro-batches.
        "training": {"local_batch_size": tr.global_batch_size // plan.dp if plan.pp > 1 else plan.microbatch_size,
                     "global_batch_size": tr.global_batch_size,
                     "seq_len": tr.seq_len, "max_norm": 1.0, "steps": _train_iters(s), "dataset": "c4"},
        "parallelism": {"data_parallel_replicate_degree": plan.dp // shard, "data_parallel_shard_degree": shard,
                        "tensor_parallel_degree": plan.tp, "pipeline_parallel_degree": plan.pp,
                        "context_parallel_degree": plan.cp, "expert_parallel_degree": plan.ep,
                        "expert_tensor_parallel_degree": plan.etp},
        "activation_checkpoint": {"mode": tr.recompute},
        "compile": {"enable": bool(stack.get("fusion.families")), "components": ["model", "loss"]},
        "checkpoint": {"enable": False, "folder": "checkpoint", "interval": 500},
        "metrics": {"log_freq": 10},
    }
    if tr.recompute == "selective":
        sections["activation_checkpoint"]["selective_ac_option"] = "op"
    if plan.pp > 1:
        sections["parallelism"] |= {"pipeline_parallel_microbatch_size": plan.microbatch_size,
                                    "pipeline_parallel_schedule": "Interleaved1F1B" if plan.virtual_stages > 1
                                    else "1F1B"}
    if tr.precision == "fp8":
        sections["model"]["converters"] = ["quantize.linear.float8"]
        sections["quantize.linear.float8"] = {"enable_fsdp_float8_all_gather": shard > 1,
                                              "precompute_float8_dynamic_scale_for_fsdp": shard > 1,
                                              "filter_fqns": ["output"]}
    keys = [f"{sec}.{k}" for sec, body in sections.items() for k in body]
    unknown = [k for k in keys if k not in TORCHTITAN.flags]
    if unknown:
        raise EmulatorError(f"the torchtitan launcher wrote undocumented keys {unknown}.", field="launch")
    head = [f"{m.name} on {s.num_devices} x {s.device.name} ({nodes} node(s) of {per_node}), from {s.path}.",
            f"Targets: torchtitan 0.2 job config (stack profile {stack.name}: {stack.versions}); keys checked "
            f"against {TORCHTITAN.source}.", *predicted, *[f"Note: {n}." for n in notes]]
    toml = header(head) + "".join(
        f"\n[{sec}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in body.items()) for sec, body in sections.items())
    torchrun = ["torchrun", "--nnodes", nodes, "--nproc-per-node", per_node, "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"$MASTER_ADDR:{MASTER_PORT}", "--rdzv-id", "$JOB_ID", "-m", "torchtitan.train"]
    script = shell_script(
        [f"torchrun of torchtitan.toml (beside this script) on every node; {TORCHRUN.source}.", *predicted],
        {"MASTER_ADDR": "localhost", "JOB_ID": "emulator-plan", "CONFIG": '$(dirname "$0")/torchtitan.toml'},
        shell_command(torchrun, [("--job.config_file", "$CONFIG")]))
    return (LaunchFile("torchtitan.toml", toml, TORCHTITAN.name),
            LaunchFile("train_torchtitan.sh", script, "python -m torchtitan.train"))


__all__ = ["TORCHTITAN_FLAVORS", "megatron_files", "torchtitan_files"]
