"""Memory per device under a plan: sharded model state, activations in flight, temporaries, allocator allowance.

Model state follows the one memory model (`engine.memory`) for the parameters on the rank (its tensor-parallel
shard of its stage, its experts split etp ways): ZeRO-1 divides the optimizer states by the data-parallel size
(dp*cp; experts by the expert-data-parallel size tp*cp*dp/(ep*etp)), ZeRO-2 also the gradients, ZeRO-3 and FSDP
also the weights (plus two layers' gathered weights: the one running and the one prefetched). Under LoRA only the
adapters train: they carry gradients, fp32 master weights and moments, and the frozen base weights are weights
alone (sharded by ZeRO-3/FSDP like the rest). LoRA activations are counted as full training's: the default
targets' adapters keep every adapted Linear's input, as its weight gradient would.

Activations of one layer and one micro-batch, Korthikanti et al. 2022 ("Reducing Activation Recomputation in
Large Transformer Models", Sec. 4), written per saved tensor so that it covers GQA and SwiGLU (16-bit
activations, 1-byte dropout masks; s sequence, b micro-batch, h hidden, a heads, t tensor parallel):
    attention: LayerNorm input 2sbh, QKV input 2sbh, Q and K 2sb(q+k), softmax output 2as^2b, its dropout mask
               as^2b and output 2as^2b, V 2sb*v, projection input 2sb*q, dropout mask sbh
    MLP:       LayerNorm input 2sbh, first linear input 2sbh, GeLU input and output 2sbf each (SwiGLU: gate, up
               and their product 2sbf each), dropout mask sbh
For GPT (q = k = v = h, f = 4h, dropout) this is exactly the paper's sbh(34 + 5as/h). Tensor parallelism
divides everything but the LayerNorm inputs, the linear inputs and the dropout masks (10sbh) by t; sequence
parallelism divides those too. Selective recompute drops the 5as^2b attention-core term; the traced models use
fused attention (FlashAttention keeps no s^2 tensor), so for them that term is always zero. Megatron-Core's recompute
modules (`cluster.recompute`) drop what their forward made: `layernorm` the norm outputs that are modules' inputs
(an MoE layer's first linear input, an MLA layer's QKV input), `mla_up_proj` Q, K and V, `moe_act` the routed
experts' activation output, `moe` every routed and shared expert tensor, `shared_experts` the shared ones, `mlp` a
dense MLP's (each keeps its module's input, which the layer keeps anyway). Full recompute keeps
only each layer's input (2sbh, /t with sequence parallelism). The workloads have no dropout.
In flight (1F1B): the first stage holds min(pp, micro-batches) micro-batches; interleaving with v chunks
multiplies that by 1 + (pp-1)/(pp*v) (Korthikanti Sec. 4.2.3).
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.cluster.plan import Plan, Policy, recomputed_modules
from emulator.engine.memory import training_memory
from emulator.workloads.config import TransformerConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerShape:
    """What the activation formula needs of one layer."""

    hidden: int
    heads: int
    q_width: int  # heads * qk head dim
    kv_width: int  # kv heads * head dim (each of K and V)
    ffn: int  # per token through the MLP (MoE: top-k expert widths plus shared)
    swiglu: bool
    dropout: bool = False
    routed_ffn: int = 0  # of `ffn`, the top-k routed experts' widths (0: a dense MLP)
    mla: bool = False  # multi-latent attention (its input norm a module of its own)


def layer_shape(model: TransformerConfig, *, dropout: bool = False) -> LayerShape:
    ffn, routed = model.ffn_hidden_size, 0
    if model.is_moe:
        routed = model.moe_ffn_hidden_size * model.num_experts_per_token
        ffn = routed + model.moe_ffn_hidden_size * model.num_shared_experts
    return LayerShape(hidden=model.hidden_size, heads=model.num_heads, q_width=model.num_heads * model.qk_head_dim,
                      kv_width=model.num_kv_heads * model.head_dim, ffn=ffn, swiglu=model.mlp == "swiglu",
                      dropout=dropout, routed_ffn=routed, mla=model.attention == "mla")


def layer_activation_bytes(shape: LayerShape, seq: int, micro: int, *, tp: int = 1, sequence_parallel: bool = False,
                           recompute: str = "none", fused_attention: bool = True,
                           modules: tuple[str, ...] = ()) -> float:
    """Bytes one layer keeps for backward for one micro-batch (Korthikanti et al. 2022, generalised); `modules`:
    Megatron-Core's recompute modules under `recompute: selective`."""
    s, b, h, t = seq, micro, shape.hidden, tp
    sbh = s * b * h
    if recompute == "full":
        return 2 * sbh / (t if sequence_parallel else 1)
    mods = modules if recompute == "selective" else ()
    moe = shape.routed_ffn > 0
    mask = 1 if shape.dropout else 0
    norm_out = "layernorm" in mods  # the norms' outputs, where the norm is a module of its own
    replicated = 2 * sbh + 2 * sbh * (not (norm_out and shape.mla)) + mask * sbh  # LayerNorm input, QKV input, mask
    replicated += 2 * sbh + 2 * sbh * (not (norm_out and moe)) + mask * sbh  # LayerNorm input, first linear input, mask
    qkv = 0 if shape.mla and "mla_up_proj" in mods else 2 * s * b * shape.q_width + 4 * s * b * shape.kv_width
    sharded = qkv + 2 * s * b * shape.q_width  # Q, K, V; projection input
    per_width = (3 if shape.swiglu else 2) * 2 * s * b  # gate/up/product or GeLU input/output, per unit of width
    shared = shape.ffn - shape.routed_ffn
    if not moe:
        sharded += 0 if "mlp" in mods else per_width * shape.ffn
    elif "moe" not in mods:
        sharded += per_width * shape.routed_ffn - ("moe_act" in mods) * 2 * s * b * shape.routed_ffn
        sharded += 0 if "shared_experts" in mods else per_width * shared
    if recompute == "none" and not fused_attention:
        sharded += (2 + mask + 2 * mask) * shape.heads * s * s * b if mask else 2 * shape.heads * s * s * b
    return (replicated / (t if sequence_parallel else 1)) + sharded / t


def korthikanti_layer_bytes(seq: int, micro: int, hidden: int, heads: int, *, tp: int = 1,
                            sequence_parallel: bool = False, recompute: str = "none") -> float:
    """The paper's closed forms (Eqs. 1-6), for checking the generalised formula."""
    s, b, h, a, t = seq, micro, hidden, heads, tp
    if recompute == "full":
        return 2 * s * b * h / (t if sequence_parallel else 1)
    core = 0.0 if recompute == "selective" else 5 * a * s / h
    if sequence_parallel:
        return s * b * h / t * (34 + core)
    return s * b * h * (10 + (24 + core) / t)


def microbatches_in_flight(plan: Plan) -> float:
    """Micro-batches whose activations the first pipeline stage holds at its peak (1F1B, interleaved)."""
    held = float(min(plan.pp, plan.num_microbatches))
    if plan.virtual_stages > 1:
        held *= 1 + (plan.pp - 1) / (plan.pp * plan.virtual_stages)
    return max(held, 1.0)


def plan_memory(model: TransformerConfig, plan: Plan, *, stage_params: float, expert_params: float,
                precision: str, num_layers: int, trainable: tuple[float, float] | None = None,
                selective: Policy = "attention_core") -> dict[str, float]:
    """Bytes per device by component (the busiest pipeline rank), through the one memory model
    (`engine.memory.training_memory`) with this plan's sharding, activations in flight and temporaries.

    `trainable`: (parameters, routed-expert parameters) trained when they are LoRA adapters, which come on top of
    the frozen `stage_params` (None: the stage's parameters all train)."""
    seq = plan.seq_len // plan.cp
    per_layer = layer_activation_bytes(layer_shape(model), seq, plan.microbatch_size, tp=plan.tp,
                                       sequence_parallel=plan.sequence_parallel, recompute=plan.recompute,
                                       modules=recomputed_modules(plan.recompute, selective))
    activations = per_layer * num_layers * microbatches_in_flight(plan)
    if plan.recompute == "full":  # the layer being recomputed holds its full working set once
        activations += layer_activation_bytes(layer_shape(model), seq, plan.microbatch_size, tp=plan.tp,
                                              sequence_parallel=plan.sequence_parallel)
    # Temporaries: the last stage's fp32 logits and their gradient for one micro-batch (vocab-parallel).
    vocab = -(-model.vocab_size // plan.tp)
    zero = plan.shard_stage
    dp = plan.dp * plan.cp
    trained, trained_experts, frozen, weights = stage_params, expert_params, 0.0, stage_params
    if trainable is not None:
        trained, trained_experts = trainable
        weights += trained
        # Frozen weights keep no gradient or optimizer state: the memory model's weights-only parameters.
        sharded = zero >= 3
        frozen = (stage_params - expert_params) / (dp if sharded else 1) + expert_params / (plan.edp if sharded else 1)
    return training_memory(
        dense_params=trained - trained_experts, expert_params=trained_experts, sparse_params=frozen,
        precision=precision, activations=activations, zero=zero, dp=dp, edp=plan.edp,
        gathered_params=2 * weights / max(num_layers, 1) if zero >= 3 else 0.0,  # running + prefetched layer
        temporaries=2 * 4.0 * plan.microbatch_size * seq * vocab)
