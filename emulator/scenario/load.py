"""Scenario files: the unit a user saves, shares and re-runs (model, hardware, training or inference settings).

```yaml
model: llama3-70b                 # preset | path to a config.json | inline mapping with config.json keys
hardware: {device: h100-sxm, system: hgx-h100, num_devices: 1}   # power_limit_w: 500 (below the TDP; optional)
training:                         # or `inference:`
  seq_len: 8192
  global_batch_size: 1            # sequences (or global_batch_tokens)
  precision: bf16                 # bf16 | fp16 | fp8 | fp4 (where the device has it)
  framework: megatron-core        # training stack of stack_profiles/training (default; eager matches `run`)
  framework_settings: {defaults.ep_overlap: true}   # the run's own values of stack items (stack_profiles/README.md)
  task: lora                      # pretrain (default) | sft (full fine-tuning) | lora (adapters, frozen base)
  lora: {rank: 16, alpha: 32, targets: [qkv, proj, fc1, fc2]}   # task: lora only; these are the defaults
  packed_sequences: true          # sft/lora samples packed into seq_len sequences (timed as whole sequences)
  parallel: {tp: 1, pp: 1, dp: 1}
```
The file is read by the strict file layer (`emulator.files`: YAML 1.2 numbers such as `15e12`, duplicate keys
refused) and every key is checked through `Fields`: unknown keys are errors with the nearest known key, sizes must
be positive integers, and each error names the file, the field and the fix.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.errors import EmulatorError
from emulator.fields import Fields
from emulator.files import read_yaml
from emulator.hardware import DeviceProfile, SystemProfile, list_devices, load_device, load_system
from emulator.precision import TRAIN_PRECISIONS
from emulator.scenario.inference import MAX_DEVICES, parse_inference
from emulator.scenario.plausibility import domain_of, group_warnings, serving_warnings
from emulator.stacks import list_stacks, load_stack, parse_settings, stack_for
from emulator.workloads.config import ModelConfig, TransformerConfig
from emulator.workloads.load import load_model
from emulator.workloads.lora import DEFAULT_ALPHA, DEFAULT_RANK, MAX_RANK, TARGETS, LoraConfig, check_targets

# A global batch far past any published one (Llama 3: 2,048 sequences), so that only a typo such as 1e300 meets it;
# the sizing search enumerates every data-parallel size that divides it. Devices: `inference.MAX_DEVICES`.
MAX_BATCH_SEQUENCES = 2**24
MAX_TOTAL_TOKENS = 1e18  # tokens to train on: a thousand times any corpus yet assembled (Llama 3: 15e12)
PARALLEL_KEYS = ("tp", "pp", "dp", "cp", "ep", "etp", "virtual_stages", "microbatch_size", "sequence_parallel",
                 "zero", "fsdp")
RECOMPUTE = ("none", "selective", "full")
# What a training step trains: everything from scratch, everything from a checkpoint (supervised fine-tuning: timed
# as pretraining), or LoRA adapters on a frozen base (emulator/workloads/lora.py).
TASKS = ("pretrain", "sft", "lora")
LORA_KEYS = ("rank", "alpha", "targets")


@dataclass(frozen=True, slots=True, kw_only=True)
class Parallel:
    """A parallel layout (the cluster model of a later stage reads every key; validated here)."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    etp: int = 1  # expert tensor parallel (Megatron-Core's --expert-tensor-parallel-size, default 1)
    virtual_stages: int = 1
    microbatch_size: int = 1
    sequence_parallel: bool | None = None  # None: the training stack's default
    zero: int | None = None  # None: the training stack's default
    fsdp: bool = False

    @property
    def num_devices(self) -> int:
        return self.tp * self.pp * self.dp * self.cp


@dataclass(frozen=True, slots=True, kw_only=True)
class Training:
    seq_len: int
    global_batch_size: int  # sequences
    precision: str = "bf16"
    parallel: Parallel = field(default_factory=Parallel)
    recompute: str = "none"
    total_tokens: float | None = None
    framework: str | None = None  # a training stack of stack_profiles/ (None: stacks.DEFAULT_STACK)
    task: str = "pretrain"  # one of TASKS
    lora: LoraConfig | None = None  # the adapters of task: lora (None there: LoraConfig's defaults)
    packed_sequences: bool = False  # fine-tuning samples packed into each seq_len sequence (a label for timing)
    framework_settings: tuple[tuple[str, Any], ...] = ()  # (stack item, value): the run's, over the framework's
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Inference:
    input_tokens: int
    output_tokens: int
    batch_size: int = 1
    precision: str = "bf16"
    kv_precision: str | None = None
    parallel: Parallel = field(default_factory=Parallel)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    path: str
    model: ModelConfig
    device: DeviceProfile
    system: SystemProfile | None
    num_devices: int
    training: Training | None = None
    inference: Inference | None = None
    serving: Any = None  # emulator.serving.scenario.ServingSpec of an `inference:` section
    raw: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what loading decided for the user (a data-parallel size inferred)
    warnings: tuple[str, ...] = ()  # plausibility: settings that run but are probably not meant (`plausibility.py`)


def _parallel(r: Fields, key: str) -> Parallel:
    p = r.section(key, PARALLEL_KEYS)
    zero = p.integer("zero", 0, minimum=0, maximum=3, why="the ZeRO stage") if p.has("zero") else None

    def size(name: str, why: str = "devices in the largest plan") -> int:
        return p.integer(name, 1, maximum=MAX_DEVICES, why=why)

    return Parallel(
        tp=size("tp"),
        pp=size("pp"),
        dp=size("dp"),
        cp=size("cp"),
        ep=size("ep"),
        etp=size("etp"),
        virtual_stages=size("virtual_stages", "more pipeline chunks than any model has layers"),
        microbatch_size=p.integer("microbatch_size", 1, maximum=MAX_BATCH_SEQUENCES, why="sequences in the largest "
                                  "global batch"),
        sequence_parallel=p.boolean("sequence_parallel", False) if p.has("sequence_parallel") else None,
        zero=zero,
        fsdp=p.boolean("fsdp", False),
    )


def global_batch_sequences(r: Fields, seq_len: int, *, required: bool) -> int:
    """Sequences per step from `global_batch_size` or `global_batch_tokens` (a multiple of seq_len); one
    sequence when neither is given and the section does not require it."""
    if r.has("global_batch_size") and r.has("global_batch_tokens"):
        raise r.error("global_batch_tokens", "give global_batch_size or global_batch_tokens, not both. Fix: delete "
                                             "one.")
    if r.has("global_batch_tokens"):
        tokens = r.integer("global_batch_tokens", maximum=MAX_BATCH_SEQUENCES * seq_len,
                           why=f"{MAX_BATCH_SEQUENCES:,} sequences of seq_len {seq_len}")
        if tokens % seq_len:
            raise r.error("global_batch_tokens", f"{tokens} is not a multiple of seq_len {seq_len}. Fix: use "
                                                 f"{max(tokens // seq_len, 1) * seq_len} (whole sequences).")
        return tokens // seq_len
    if required and not r.has("global_batch_size"):
        raise r.error("global_batch_tokens", "needs global_batch_size (sequences) or global_batch_tokens. Fix: "
                                             "e.g. global_batch_tokens: 16777216.")
    return r.integer("global_batch_size", 1, maximum=MAX_BATCH_SEQUENCES, why="sequences in the largest global "
                     "batch")


def check_seq_len(model: ModelConfig, seq_len: int, path: str, field: str) -> None:
    """A training sequence longer than a transformer's context (max_position_embeddings) is an error."""
    if isinstance(model, TransformerConfig) and seq_len > model.max_seq_len:
        raise EmulatorError(f"is {seq_len:,}, longer than {model.name}'s context of {model.max_seq_len:,} tokens "
                            f"(max_position_embeddings). Fix: use seq_len <= {model.max_seq_len}, or a model with a "
                            "longer context.", file=path, field=field)


def infer_dp(parallel: Parallel, data: Any, num_devices: int, model: ModelConfig) -> tuple[Parallel, str | None]:
    """A transformer plan that leaves out `dp` takes num_devices / (tp x pp x cp) when that is whole (the data
    parallelism Megatron-LM derives from the world size), with a note saying so; otherwise it stays as given."""
    given = isinstance(data, Mapping) and isinstance(data.get("parallel"), Mapping) and "dp" in data["parallel"]
    others = parallel.tp * parallel.pp * parallel.cp
    if given or not isinstance(model, TransformerConfig) or num_devices <= others or num_devices % others:
        return parallel, None
    dp = num_devices // others
    return dataclasses.replace(parallel, dp=dp), (
        f"dp {dp} inferred from hardware.num_devices {num_devices} / (tp {parallel.tp} x pp {parallel.pp} x cp "
        f"{parallel.cp}) (training.parallel gives no dp)")


def _training(data: Any, path: str, model: ModelConfig) -> Training:
    r = Fields(data, file=path, prefix="training", allowed=("seq_len", "global_batch_size", "global_batch_tokens",
                                                            "precision", "parallel", "recompute", "total_tokens",
                                                            "framework", "framework_settings", "task", "lora",
                                                            "packed_sequences"))
    seq_len = r.integer("seq_len", hint="seq_len: 4096")
    check_seq_len(model, seq_len, path, "training.seq_len")
    batch = global_batch_sequences(r, seq_len, required=False)
    task = r.choice("task", TASKS, "pretrain")
    packed = r.boolean("packed_sequences", False)
    if packed and task == "pretrain":
        raise r.error("packed_sequences", "packs fine-tuning samples into sequences, but task is pretrain (whose "
                                          "sequences are always full). Fix: set task: sft or task: lora, or delete "
                                          "packed_sequences.")
    return Training(
        seq_len=seq_len,
        global_batch_size=batch,
        precision=r.choice("precision", TRAIN_PRECISIONS, "bf16"),
        parallel=_parallel(r, "parallel"),
        recompute=r.choice("recompute", RECOMPUTE, "none"),
        total_tokens=r.number("total_tokens", maximum=MAX_TOTAL_TOKENS, why="more than any corpus"),
        framework=_stack(r, "framework", "training"),
        task=task,
        lora=_lora(r, task, model),
        packed_sequences=packed,
        framework_settings=(parse_settings(r.get("framework_settings"), "training", path,
                                           "training.framework_settings") if r.has("framework_settings") else ()),
        path=path,
    )


def _lora(r: Fields, task: str, model: ModelConfig) -> LoraConfig | None:
    """The `lora:` section of task: lora (its defaults when absent); an error with any other task."""
    if task != "lora":
        if r.has("lora"):
            raise r.error("lora", f"sets adapters but task is {task}. Fix: set task: lora, or delete the lora "
                                  "section.")
        return None
    if not isinstance(model, TransformerConfig):
        raise r.error("task", f"is lora, but {model.name} is not a transformer (LoRA adapts a transformer's linear "
                              "layers). Fix: use task: pretrain or sft for this model.")
    lo = r.section("lora", LORA_KEYS)
    rank = lo.integer("rank", DEFAULT_RANK, maximum=MAX_RANK, why="wider than any model's hidden size")
    alpha = lo.number("alpha", DEFAULT_ALPHA, maximum=1e6, why="a scale of alpha / rank past any recipe's")
    targets = lo.get("targets", list(TARGETS))
    if not isinstance(targets, list):
        raise lo.error("targets", f"is {targets!r}; it must be a list of target names. Fix: write e.g. targets: "
                                  f"[{', '.join(TARGETS)}].")
    try:
        check_targets(targets)
    except EmulatorError as e:
        raise lo.error("targets", e.message) from None
    return LoraConfig(rank=rank, alpha=DEFAULT_ALPHA if alpha is None else alpha, targets=tuple(targets))


def _stack(r: Fields, key: str, kind: str) -> str | None:
    """A stack name, checked against the shipped profiles of its kind (None: the kind's default)."""
    if not r.has(key):
        return None
    name = r.choice(key, list_stacks(kind))
    load_stack(name, kind, file=r.file)  # a broken shipped profile fails here, naming its file
    return name


def _inference(data: Any, path: str) -> tuple[Inference, Any]:
    """The `inference:` section, validated by the serving model's parser (it owns the serving keys: scenario,
    arrival rate or trace, SLOs, length distributions); the batch view of it uses the mean lengths."""
    try:
        spec = parse_inference(data, path)
    except EmulatorError as e:
        if (e.field or "").startswith("inference"):
            raise
        raise EmulatorError(e.message, file=path, field=f"inference.{e.field}" if e.field else "inference") from None
    batch = Inference(
        input_tokens=max(1, round(spec.input_tokens.mean)),
        output_tokens=max(1, round(spec.output_tokens.mean)),
        batch_size=spec.batch_size or 1,
        precision=spec.precision,
        kv_precision=spec.kv_precision,
        parallel=Parallel(tp=spec.tp, pp=spec.pp, ep=spec.ep),
    )
    return batch, spec


def _hardware(data: Any, path: str) -> tuple[DeviceProfile, SystemProfile | None, int]:
    r = Fields(data, file=path, prefix="hardware", allowed=("device", "system", "num_devices", "power_limit_w"))
    name = r.text("device", hint=f"device: h100-sxm (one of {', '.join(list_devices())})")
    try:
        device = load_device(name)
    except EmulatorError as e:
        raise EmulatorError(str(e), file=path, field="hardware.device") from None
    system = None
    if r.has("system"):
        system_name = r.text("system", hint="system: hgx-h100 (`emulator profiles list`)")
        try:
            system = load_system(system_name)
        except EmulatorError as e:
            raise EmulatorError(str(e), file=path, field="hardware.system") from None
        if system.device.name != device.name:
            raise EmulatorError(
                f"system '{system.name}' holds '{system.device.name}' devices, not '{device.name}'. "
                f"Fix: set device: {system.device.name}, or pick a system built from {device.name}.",
                file=path,
                field="hardware.system",
            )
        device = system.device  # a MaxQ-style system runs its devices under its power limit
    if r.has("power_limit_w"):
        try:
            device = device.with_power_limit(r.number("power_limit_w"), f"scenario {path}: hardware.power_limit_w")
        except EmulatorError as e:
            raise EmulatorError(e.message, file=path, field="hardware.power_limit_w") from None
        system = dataclasses.replace(system, device=device, power_limit_w=None) if system is not None else None
    return device, system, r.integer("num_devices", 1, maximum=MAX_DEVICES, why="more than any cluster")


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a scenario file."""
    path = str(path)
    data = read_yaml(path)
    r = Fields(data, file=path, allowed=("model", "hardware", "training", "inference", "name", "description"))
    spec = r.required("model", "model: llama3-8b")
    try:
        model = load_model(spec, origin=path)
    except EmulatorError as e:
        if e.file:  # the error names the config.json it came from
            raise
        raise EmulatorError(str(e), file=path, field=e.field or "model") from None
    device, system, num_devices = _hardware(r.required("hardware", "hardware: {device: h100-sxm}"), path)
    if r.has("training") == r.has("inference"):
        raise EmulatorError(
            "needs exactly one of 'training:' or 'inference:'. Fix: keep the section you want to predict.",
            file=path,
            field="training" if r.has("training") else None,
        )
    training = _training(r.get("training"), path, model) if r.has("training") else None
    if training is not None and training.framework is not None:  # a framework the device's vendor runs
        stack_for(training.framework, "training", device.vendor, file=path)
    notes: list[str] = []
    domain = domain_of(device, system)
    warnings: list[str] = []
    if training is not None:
        parallel, note = infer_dp(training.parallel, r.get("training"), num_devices, model)
        training = dataclasses.replace(training, parallel=parallel)
        notes += [note] if note else []
        experts = {"ep x etp" if parallel.etp > 1 else "ep": parallel.ep * parallel.etp} if parallel.ep > 1 else {}
        warnings += group_warnings({"tp": parallel.tp, **experts}, domain, "training.parallel:")
    if training is not None and training.lora is not None and isinstance(model, TransformerConfig):
        model = dataclasses.replace(model, lora=training.lora)  # the model as trained: frozen base plus adapters
    inference, serving = _inference(r.get("inference"), path) if r.has("inference") else (None, None)
    if serving is not None:  # the engine the device runs: the one named, checked, else its vendor's default
        serving = dataclasses.replace(serving, engine=stack_for(serving.engine, "serving", device.vendor, file=path))
        warnings += serving_warnings(serving, num_devices, domain)
    return Scenario(path=path, model=model, device=device, system=system, num_devices=num_devices,
                    training=training, inference=inference, serving=serving, raw=data, notes=tuple(notes),
                    warnings=tuple(warnings))
