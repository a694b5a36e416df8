"""Predicted versus published training runs (emulator/data/published_training.yaml).

Each case becomes a scenario: a GPT model (LayerNorm, GeLU MLP, learned positions, biases, tied embeddings:
Megatron-LM's GPT), the case's device and the first shipped system built from it, and the case's plan. The
same device parameters (`efficiency_for(device)`) serve every case; nothing is tuned per case. What a case
leaves out is filled by one rule for all: ffn = 4 * hidden, vocab 51,200, micro-batch size 1, one model chunk
per stage unless `interleave_stages` is given, and gradient-reduction overlap unless the case says it was off.
All of these runs predate fused attention in Megatron-LM, so their attention is modelled unfused (batched
GEMMs, a scale-mask-softmax kernel over the s x s scores, attention dropout): a property of the software the
published runs used, applied to every case alike.

The predicted value is computed with the published metric's own definition from the predicted iteration time:
- achieved_tflops_per_gpu: Narayanan et al. 2021 Eq. 3 (with recompute), 96 B s l h^2 (1 + s/6h + V/16lh)
  / (time * GPUs);
- mfu: Korthikanti et al. 2022's model FLOPs, 72 B s l h^2 (1 + s/6h + V/12lh) / (time * GPUs * peak);
- iteration_time: the step time;
- layer_fwd_plus_bwd_time: one layer's forward and backward on a rank (ms), with its exposed TP communication.
error = predicted / published - 1.
"""

from __future__ import annotations

from typing import Any

from emulator.cluster.training import predict_training
from emulator.engine.calibration import efficiency_for
from emulator.hardware import default_system, load_device
from emulator.published import load_cases, profile_name
from emulator.scenario import Parallel, Scenario, Training
from emulator.stacks import load_stack
from emulator.stats import median
from emulator.workloads.config import TransformerConfig

# The published runs (Megatron-LM 2021, Korthikanti et al. 2022) predate fused (Flash) attention in Megatron-LM:
# they ran QK^T and PV as batched GEMMs around a fused scale-mask-softmax kernel, with attention dropout.
RUN_ATTENTION = "unfused"
# Megatron-LM of 2021-22 ran its own fused kernels, but none of Transformer Engine's, no communication overlap beyond
# the gradient all-reduce and no distributed optimizer: the eager stack's schedule, which these cases were fitted on.
RUN_STACK = "eager"
METRICS = ("achieved_tflops_per_gpu", "mfu", "iteration_time", "layer_fwd_plus_bwd_time")
_PRECISIONS = {"fp16": "fp16", "bf16": "bf16"}


def _gpt(case: dict[str, Any]) -> TransformerConfig:
    m = case["model"]
    h = int(m["hidden"])
    return TransformerConfig(
        name=str(m["name"]), num_layers=int(m.get("layers", 1)), hidden_size=h, num_heads=int(m["heads"]),
        ffn_hidden_size=int(m.get("ffn", 4 * h)), vocab_size=int(m.get("vocab", 51200)),
        max_seq_len=int(case["config"]["seq_len"]), norm="layernorm", mlp="gelu", positions="learned",
        tie_embeddings=True, qkv_bias=True, out_bias=True, mlp_bias=True)


def case_scenario(case: dict[str, Any]) -> tuple[Scenario, bool]:
    """The scenario a published case describes, and whether its gradient reduction overlapped backward."""
    cfg = case["config"]
    par = cfg.get("parallelism", {})
    device = load_device(profile_name(case["hardware"]["device"]) or case["hardware"]["device"])
    tp, pp, dp = int(par.get("tp", 1)), int(par.get("pp", 1)), int(par.get("dp", 1))
    precision = next((v for k, v in _PRECISIONS.items() if k in str(cfg.get("precision", "")).lower()), "fp16")
    recompute = str(cfg.get("activation_recomputation", "none")).lower()
    parallel = Parallel(tp=tp, pp=pp, dp=dp, microbatch_size=int(cfg.get("micro_batch_size", 1)),
                        virtual_stages=int(cfg.get("interleave_stages", 1)),
                        sequence_parallel=bool(par.get("sequence_parallel", False)))
    training = Training(seq_len=int(cfg["seq_len"]), global_batch_size=int(cfg.get("global_batch_size", 1)),
                        precision=precision, parallel=parallel,
                        recompute=recompute if recompute in ("none", "selective", "full") else "none")
    scenario = Scenario(path=str(case["id"]), model=_gpt(case), device=device, system=default_system(device),
                        num_devices=tp * pp * dp, training=training)
    return scenario, bool(cfg.get("grad_allreduce_overlap", True))


def predict_case(case: dict[str, Any]) -> float:
    """The predicted value of a case's published metric."""
    scenario, overlap = case_scenario(case)
    pred = predict_training(scenario, efficiency_for(scenario.device), overlap_grad_reduce=overlap,
                            attention=RUN_ATTENTION, stack=load_stack(RUN_STACK, "training"))
    model, tr = scenario.model, scenario.training
    assert isinstance(model, TransformerConfig) and tr is not None
    b, s, l, h, v = tr.global_batch_size, tr.seq_len, model.num_layers, model.hidden_size, model.vocab_size
    t, n = pred.step_time_s, pred.num_devices
    metric = case["metric"]["name"]
    if metric == "achieved_tflops_per_gpu":
        return 96 * b * s * l * h * h * (1 + s / (6 * h) + v / (16 * l * h)) / (t * n) / 1e12
    if metric == "mfu":
        peak = scenario.device.mfu_peak(tr.precision)
        return 72 * b * s * l * h * h * (1 + s / (6 * h) + v / (12 * l * h)) / (t * n * peak)
    if metric == "iteration_time":
        return t
    if metric == "layer_fwd_plus_bwd_time":
        st = pred.step
        per_layer = (st.layers_forward_s + st.layers_backward_s) / pred.num_layers
        tp_per_layer = st.tensor_parallel_s / pred.plan.num_microbatches / pred.num_layers
        return (per_layer + tp_per_layer) * 1e3
    raise ValueError(f"unknown metric {metric!r}")


def _layer_case(case: dict[str, Any]) -> dict[str, Any]:
    """A one-layer kernel case (Korthikanti Table 4) as a one-layer model with the case's plan."""
    c = {**case, "model": {**case["model"], "layers": 1}, "config": {**case["config"], "global_batch_size":
                                                                    case["config"].get("micro_batch_size", 1)}}
    c["config"].setdefault("activation_recomputation", "selective")
    c["config"]["parallelism"] = {"sequence_parallel": True, **c["config"].get("parallelism", {})}
    return c


def validate_published(*, json_only: bool = False) -> dict[str, Any]:
    """Every published training case: id, metric, published, predicted, error; and the error summary."""
    cases = []
    for case in load_cases("training"):
        metric = case["metric"]["name"]
        if metric not in METRICS:
            continue
        run = _layer_case(case) if metric == "layer_fwd_plus_bwd_time" else case
        predicted = predict_case(run)
        published = float(case["value"])
        cases.append({"id": case["id"], "metric": metric, "unit": case["metric"].get("unit", ""),
                      "published": published, "predicted": predicted, "error": predicted / published - 1})
    errors = [abs(c["error"]) for c in cases]
    summary = {"num_cases": len(cases), "median_abs_error": median(errors) if errors else None,
               "max_abs_error": max(errors) if errors else None,
               "device_parameters": "efficiency_for(device): one table for every case (spec defaults for A100)"}
    return {"cases": cases, "summary": summary}


def render(result: dict[str, Any]) -> str:
    """A plain table of predicted versus published."""
    lines = [f"{'case':50s} {'metric':26s} {'published':>10s} {'predicted':>10s} {'error':>8s}"]
    for c in result["cases"]:
        lines.append(f"{c['id']:50s} {c['metric']:26s} {c['published']:10.4g} {c['predicted']:10.4g} "
                     f"{c['error']:+8.1%}")
    s = result["summary"]
    lines.append(f"median |error| {s['median_abs_error']:.1%}, max |error| {s['max_abs_error']:.1%} "
                 f"over {s['num_cases']} cases")
    return "\n".join(lines)
