"""LoRA and SFT as training kinds: the traced program, the optimizer, memory, the step and the scenario keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from emulator.cluster.plan import Plan
from emulator.cluster.shard import rank_program
from emulator.cluster.training import memory_of, predict_training, trained_model
from emulator.engine.roofline import call_dtype
from emulator.engine.stack import low_precision_casts
from emulator.engine.trace import trace_workload
from emulator.errors import EmulatorError
from emulator.hardware import load_system
from emulator.precision import KEEP_DTYPE
from emulator.scenario import Parallel, Scenario, Training, load_scenario
from emulator.workloads.adapters import apply_lora
from emulator.workloads.config import TransformerConfig
from emulator.workloads.lora import TARGETS, LoraConfig
from emulator.workloads.lora_params import adapter_params
from emulator.workloads.presets import preset
from emulator.workloads.program import build_program, build_step
from emulator.workloads.transformer import Block, make_rotary

LORA = LoraConfig(rank=8, alpha=16.0)


def _model(name: str = "llama3-8b", layers: int = 2) -> TransformerConfig:
    m = preset(name)
    assert isinstance(m, TransformerConfig)
    return m.scaled(num_layers=layers)


def _backward_gemms(model: TransformerConfig) -> dict[str, int]:
    """Backward GEMM calls per module of a traced training step (per layer)."""
    out: dict[str, int] = {}
    for c in trace_workload(model, "train", 1, 64, 0, torch.bfloat16).calls:
        if c.family == "gemm" and c.phase == "backward" and c.module.startswith("layers."):
            out[c.module] = out.get(c.module, 0) + 1
    return out


def test_lora_trace_has_adapter_gemms_and_no_base_weight_gradients() -> None:
    """Each adapted Linear keeps its base forward and activation gradient, loses its weight gradient, and gains
    adapter GEMMs forward and backward."""
    full = _model()
    lora = dataclasses.replace(full, lora=LORA)
    full_bwd, lora_bwd = _backward_gemms(full), _backward_gemms(lora)
    base = [m for m in full_bwd if m.endswith(("wq", "wk", "wv", "wo", "w1", "w2", "w3"))]
    assert len(base) == 7
    for module in base:
        assert full_bwd[module] == 2  # activation gradient + weight gradient
        assert lora_bwd[module] == 1  # activation gradient only
        assert lora_bwd[f"{module}.lora_a"] == 2 and lora_bwd[f"{module}.lora_b"] == 2  # dgrad + wgrad each
    forward = {c.module for c in trace_workload(lora, "train", 1, 64, 0, torch.bfloat16).calls
               if c.family == "gemm" and c.phase == "forward"}
    assert {f"{m}.lora_a" for m in base} <= forward and {f"{m}.lora_b" for m in base} <= forward


def test_lora_trace_has_no_embedding_or_head_weight_gradient() -> None:
    """The frozen embedding scatters no gradient, and the head computes only its activation gradient."""
    lora = dataclasses.replace(_model(), lora=LORA)
    calls = trace_workload(lora, "train", 1, 64, 0, torch.bfloat16).calls
    assert not [c for c in calls if c.phase == "backward" and c.family == "embedding"]
    assert len([c for c in calls if c.phase == "backward" and c.family == "gemm" and c.module == "head.output"]) == 1


def test_optimizer_updates_only_the_adapters() -> None:
    """The traced AdamW step covers exactly the closed-form adapter parameters: far fewer optimizer bytes."""
    full = _model()
    lora = dataclasses.replace(full, lora=LORA)

    def optimizer(model: TransformerConfig) -> tuple[int, float]:
        calls = [c for c in trace_workload(model, "train", 1, 64, 0, torch.bfloat16).calls if c.phase == "optimizer"]
        # The fused op's tensors: parameters, gradients and two moments of each (4 of every shape), then steps.
        params = sum(c.count * sum(torch.Size(s).numel() for s in c.shapes if s) // 4
                     for c in calls if c.module.startswith("layers"))
        return params, sum(c.total.bytes_read + c.total.bytes_written for c in calls)

    lora_params, lora_bytes = optimizer(lora)
    _, full_bytes = optimizer(full)
    assert lora_params == adapter_params(lora, LORA)
    assert lora_bytes < full_bytes / 100


@pytest.mark.parametrize("name", ["llama3-8b", "gpt3-175b", "qwen3-30b-a3b", "deepseek-v3", "nemotron4-340b"])
def test_adapter_count_matches_the_modules(name: str) -> None:
    """The closed-form adapter count equals the trainable parameters `apply_lora` leaves in one layer of each kind
    (GQA, GPT with biases, MoE, MLA with shared experts, non-gated MLP)."""
    model = _model(name, layers=4).scaled(num_dense_layers=1) if name == "deepseek-v3" else _model(name, layers=1)
    lora = LoraConfig(rank=4, targets=("qkv", "proj", "fc1", "fc2"))
    counted = 0
    rotary = make_rotary(model, 16, dtype=torch.bfloat16, device="meta")
    for i in range(model.num_layers):
        block = apply_lora(Block(model, rotary, moe=model.is_moe and i >= model.num_dense_layers,
                                 dtype=torch.bfloat16, device="meta"), lora)
        counted += sum(p.numel() for p in block.parameters() if p.requires_grad)
    assert counted == adapter_params(model, lora)


def test_targets_choose_the_adapted_linears() -> None:
    """Adapting only qkv leaves proj and the MLP without adapters."""
    block = apply_lora(Block(_model(), None, moe=False, dtype=torch.bfloat16, device="meta"),
                       LoraConfig(targets=("qkv",)))
    adapted = {n.rsplit(".", 1)[0] for n, p in block.named_parameters() if p.requires_grad}
    assert adapted == {"attention.wq.lora_a", "attention.wk.lora_a", "attention.wv.lora_a", "attention.wq.lora_b",
                       "attention.wk.lora_b", "attention.wv.lora_b"}


def test_served_lora_model_runs_its_base() -> None:
    """Inference of a LoRA model traces no adapters (they merge into the weights)."""
    lora = dataclasses.replace(_model(), lora=LORA)
    program = build_program(lora, "prefill", batch_size=1, seq_len=16)
    assert not [n for s in program.stages for n, _ in s.module.named_modules() if "lora" in n]


def test_lora_step_trains_only_adapters_for_real() -> None:
    """Run for real on CPU, one LoRA step changes the adapters and leaves every base weight as it was."""
    model = TransformerConfig(name="tiny", num_layers=2, hidden_size=32, num_heads=4, ffn_hidden_size=64,
                              vocab_size=64, max_seq_len=16, lora=LoraConfig(rank=2))
    step = build_step(model, "train", batch_size=2, seq_len=8, dtype=torch.float32, device="cpu")
    net = step.model  # type: ignore[attr-defined]
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    step()
    for n, p in net.named_parameters():
        assert torch.equal(p, before[n]) != p.requires_grad, n
    assert any("lora" in n for n, p in net.named_parameters() if p.requires_grad)


def _training(task: str, **extra: object) -> Scenario:
    system = load_system("hgx-h100")
    parallel = Parallel(dp=8)
    tr = Training(seq_len=4096, global_batch_size=32, precision="bf16", parallel=parallel, task=task, **extra)
    return Scenario(path="<test>", model=preset("llama3-8b"), device=system.device, system=system, num_devices=8,
                    training=tr)


def test_lora_needs_less_memory_than_full_fine_tuning() -> None:
    """Frozen weights keep no gradients, master weights or moments: the adapters' state is all that is left."""
    model = _model("llama3-70b", layers=80)
    plan = Plan(tp=2, pp=4, global_batch_size=32, seq_len=4096)
    full, lora = memory_of(model, plan, "bf16"), memory_of(dataclasses.replace(model, lora=LORA), plan, "bf16")
    assert sum(lora.values()) < sum(full.values())
    assert lora["optimizer_states"] < full["optimizer_states"] / 100
    assert lora["gradients"] < full["gradients"] / 100
    assert lora["weights"] >= full["weights"]  # the frozen base plus the adapters
    assert lora["activations"] == full["activations"]


def test_lora_step_is_faster_and_reduces_only_adapter_gradients() -> None:
    """In bf16, dropping the base weight gradients outweighs the adapters' GEMMs, and the data-parallel gradient
    reduction carries the adapters alone."""
    full, lora = predict_training(_training("pretrain")), predict_training(_training("lora"))
    assert lora.step_time_s < full.step_time_s
    assert lora.step.data_parallel_total_s < full.step.data_parallel_total_s / 100
    assert lora.step.optimizer_s < full.step.optimizer_s / 100
    assert lora.flops_per_step < full.flops_per_step
    model = trained_model(preset("llama3-8b"), _training("lora").training)  # type: ignore[arg-type]
    prog = rank_program(model, Plan(dp=8, global_batch_size=32, seq_len=4096), "bf16")
    reduce = [c for c in prog.collectives if c.params and dict(c.params)["group"] == "dp"]
    assert [c.op for c in reduce] == ["all_reduce"]
    assert reduce[0].cost.comm_bytes == 2 * adapter_params(model, LoraConfig())  # bf16 gradients


def test_sft_is_timed_as_pretraining() -> None:
    """Supervised fine-tuning trains every weight: the same step as pretraining, labelled."""
    sft, pretrain = predict_training(_training("sft", packed_sequences=True)), predict_training(_training("pretrain"))
    assert sft.step_time_s == pretrain.step_time_s
    assert any("sft" in n for n in sft.notes) and any("packed" in n for n in sft.notes)


def _write(tmp_path: Path, training: str, model: str = "llama3-8b") -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(f"model: {model}\nhardware: {{device: h100-sxm, system: hgx-h100, num_devices: 8}}\n"
                    f"training:\n  seq_len: 4096\n  global_batch_size: 32\n  parallel: {{dp: 8}}\n{training}")
    return path


def test_scenario_keys_set_the_task_and_the_adapters(tmp_path: Path) -> None:
    """task: lora with a lora section sets the scenario's adapters on its model; defaults fill what is left out."""
    s = load_scenario(_write(tmp_path, "  task: lora\n  lora: {rank: 8, targets: [qkv, fc2]}\n"
                                       "  packed_sequences: true\n"))
    assert s.training is not None and s.training.task == "lora" and s.training.packed_sequences
    assert s.training.lora == LoraConfig(rank=8, alpha=32.0, targets=("qkv", "fc2"))
    assert isinstance(s.model, TransformerConfig) and s.model.lora == s.training.lora
    plain = load_scenario(_write(tmp_path, "  task: lora\n"))
    assert plain.training is not None and plain.training.lora == LoraConfig() and LoraConfig().targets == TARGETS
    sft = load_scenario(_write(tmp_path, "  task: sft\n"))
    assert sft.training is not None and sft.training.lora is None
    assert isinstance(sft.model, TransformerConfig) and sft.model.lora is None


@pytest.mark.parametrize(("training", "field", "words"), [
    ("  task: lora\n  lora: {rnk: 8}\n", "training.lora.rnk", "did you mean 'rank'"),
    ("  task: lora\n  lora: {rank: 0}\n", "training.lora.rank", "whole number"),
    ("  task: lora\n  lora: {alpha: -1}\n", "training.lora.alpha", "number > 0"),
    ("  task: lora\n  lora: {targets: [qkv, mlp]}\n", "training.lora.targets", "'mlp' is not a LoRA target"),
    ("  task: lora\n  lora: {targets: [qkv, qkv]}\n", "training.lora.targets", "twice"),
    ("  task: lora\n  lora: {targets: []}\n", "training.lora.targets", "empty"),
    ("  task: lora\n  lora: {targets: qkv}\n", "training.lora.targets", "must be a list"),
    ("  lora: {rank: 8}\n", "training.lora", "task is pretrain"),
    ("  task: finetune\n", "training.task", "use one of pretrain, sft, lora"),
    ("  packed_sequences: true\n", "training.packed_sequences", "task is pretrain"),
])
def test_bad_lora_keys_say_the_file_field_and_fix(tmp_path: Path, training: str, field: str, words: str) -> None:
    """Each bad task, lora or packed_sequences value is one error naming the file, the field and a fix."""
    path = _write(tmp_path, training)
    with pytest.raises(EmulatorError) as e:
        load_scenario(path)
    assert e.value.field == field and str(path) in str(e.value) and "Fix:" in str(e.value)
    assert words in str(e.value)


def test_lora_on_a_recommender_is_refused(tmp_path: Path) -> None:
    """LoRA adapts a transformer's linear layers; a DLRM with task: lora is an error that says so."""
    path = tmp_path / "dlrm.yaml"
    path.write_text("model: dlrm-small\nhardware: {device: h100-sxm}\ntraining:\n  seq_len: 1\n  task: lora\n")
    with pytest.raises(EmulatorError, match="not a transformer") as e:
        load_scenario(path)
    assert e.value.field == "training.task" and "Fix:" in str(e.value)


def test_adapter_gemms_stay_16_bit_under_an_fp8_recipe() -> None:
    """NeMo's adapters are plain 16-bit GEMMs outside Transformer Engine's fp8: an fp8 recipe casts only the base
    GEMMs' operands, and the roofline runs only the base GEMMs in fp8."""
    device = load_system("hgx-h100").device
    step = trace_workload(dataclasses.replace(_model(), lora=LORA), "train", 1, 64, 0, torch.bfloat16)
    adapters = [c for c in step.calls if c.family == "gemm" and c.module.endswith((".lora_a", ".lora_b"))]
    base = [c for c in step.calls if c.family == "gemm" and c.phase == "forward" and c.module.endswith(".wq")]
    assert adapters and base and all(KEEP_DTYPE in c.params for c in adapters) and KEEP_DTYPE not in base[0].params
    assert {call_dtype(c, "fp8", device) for c in adapters} == {"bf16"}
    assert call_dtype(base[0], "fp8", device) == "fp8"
    casts = [c for c in low_precision_casts(step, "fp8", 3.0).calls if c.op == "cast_fp8"]
    assert {c.module for c in casts} >= {base[0].module}
    assert not [c for c in casts if c.module.endswith((".lora_a", ".lora_b"))]
