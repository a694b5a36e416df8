"""Programs: what one step of a workload runs, as representative modules (for the tracer) or as the full model.

`build_program` builds one representative of each distinct stage (embedding, each kind of block, head) with its
inputs and a count, so that tracing a 126-layer model traces one block and multiplies; on meta it allocates
nothing. `build_step` builds the real full model with random weights and inputs and returns a callable that runs
one step (train: forward, loss, backward, AdamW; prefill; decode), for measuring on CPU or CUDA.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from emulator.errors import EmulatorError
from emulator.workloads.adapters import apply_lora
from emulator.workloads.config import DLRMConfig, ModelConfig, TransformerConfig
from emulator.workloads.lora import LoraConfig
from emulator.workloads.recommender import DLRM, dlrm_inputs
from emulator.workloads.transformer import (
    Block,
    Embedding,
    Head,
    Transformer,
    is_moe_layer,
    kv_cache_shapes,
    layer_window,
    make_rotary,
)

Phase = Literal["train", "prefill", "decode"]
PHASES: tuple[str, ...] = ("train", "prefill", "decode")


@dataclass(frozen=True, slots=True)
class Stage:
    name: str  # module path of the representative, e.g. "embed", "layers.0", "layers.3", "head"
    module: nn.Module  # the representative module (on the program's device)
    count: int  # how many identical copies run per step
    make_inputs: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]  # fresh (args, kwargs) for module(...)
    returns_loss: bool  # output is the scalar loss; else backward gets a grad of the output's shape
    # Positions in make_inputs' args of tensors that persist across steps (KV caches): like the weights they
    # are read from main memory, not left in a cache by the op before.
    state_args: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Program:
    model: ModelConfig
    phase: Phase
    batch_size: int  # sequences (or samples for DLRM)
    seq_len: int  # tokens per sequence processed this step (decode: 1)
    kv_len: int  # tokens already in the KV cache; 0 otherwise
    dtype: torch.dtype
    stages: tuple[Stage, ...]  # in execution order; the optimizer is not a stage
    train: bool  # run backward + optimizer (phase == "train")
    tokens: int  # tokens processed per step: B*S for train/prefill, B for decode (samples for DLRM)


def _check(model: ModelConfig, phase: str, batch_size: int, seq_len: int, kv_len: int) -> None:
    if phase not in PHASES:
        raise EmulatorError(f"is {phase!r}; use one of {', '.join(PHASES)}.", field="phase")
    for name, value, low in (("batch_size", batch_size, 1), ("seq_len", seq_len, 1), ("kv_len", kv_len, 0)):
        if not isinstance(value, int) or value < low:
            raise EmulatorError(f"is {value!r}; it must be an integer >= {low}.", field=name)
    if isinstance(model, DLRMConfig):
        if phase == "decode":
            raise EmulatorError("DLRM has no decode phase; use 'train' or 'prefill' (inference).", field="phase")
        return
    if phase == "decode" and seq_len != 1:
        raise EmulatorError(f"is {seq_len} for decode, which processes one token per sequence; pass seq_len=1 and "
                            "the context length as kv_len.", field="seq_len")
    if phase == "train" and kv_len:
        raise EmulatorError("must be 0 for training (there is no KV cache).", field="kv_len")
    if kv_len + seq_len > model.max_seq_len:
        raise EmulatorError(f"kv_len + seq_len = {kv_len + seq_len} exceeds {model.name}'s max_seq_len "
                            f"{model.max_seq_len}; use a shorter sequence.", field="seq_len")


def _random(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, generator: torch.Generator | None,
            *, requires_grad: bool = False) -> torch.Tensor:
    if device.type == "meta":
        out = torch.empty(shape, dtype=dtype, device=device)
    else:  # never zeros: timing on zeros flatters some hardware
        out = torch.randn(shape, dtype=dtype, device=device, generator=generator)
    return out.requires_grad_(requires_grad)


def _tokens(shape: tuple[int, ...], vocab: int, device: torch.device,
            generator: torch.Generator | None) -> torch.Tensor:
    if device.type == "meta":
        return torch.empty(shape, dtype=torch.long, device=device)
    return torch.randint(1, vocab, shape, device=device, generator=generator)


def _generator(device: torch.device, seed: int) -> torch.Generator | None:
    return None if device.type == "meta" else torch.Generator(device=device).manual_seed(seed)


def _prepare(module: nn.Module, train: bool, lora: LoraConfig | None = None) -> nn.Module:
    """Set train or eval mode; inference freezes every weight, LoRA training all but the adapters it adds."""
    module.train(train)
    if not train:
        module.requires_grad_(False)
    elif lora is not None:
        apply_lora(module, lora)
    return module


class FrozenEmbedding(Embedding):
    """The embedding stage of a LoRA program, frozen like every base weight. The tracer runs backward through
    every stage of a training program, so the output is marked as a leaf that wants a gradient: autograd then
    stores the incoming gradient on it (one [B, S, H] copy in the trace) where a frozen embedding's backward does
    nothing at all, and full training scatters the gradient into the table."""

    def forward(self, tokens: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        return super().forward(tokens, start_pos).requires_grad_(True)


def build_program(model: ModelConfig, phase: Phase, *, batch_size: int, seq_len: int, kv_len: int = 0,
                  dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "meta") -> Program:
    """Representative stages of one step of `model` in `phase` (on meta: no memory, any size)."""
    _check(model, phase, batch_size, seq_len, kv_len)
    device = torch.device(device)
    train = phase == "train"
    gen = _generator(device, 0)
    b, s = batch_size, seq_len
    if isinstance(model, DLRMConfig):
        dlrm = _prepare(DLRM(model, dtype=dtype, device=device), train)
        stage = Stage("dlrm", dlrm, 1, lambda: dlrm_inputs(model, b, dtype=dtype, device=device, generator=gen,
                                                           labels=train), returns_loss=train)
        return Program(model, phase, b, s, 0, dtype, (stage,), train, b)

    c: TransformerConfig = model
    start = kv_len
    # LoRA adapts training only: served, a LoRA model runs its base (adapters merged into the weights).
    lora = c.lora if train else None

    def hidden() -> torch.Tensor:
        return _random((b, s, c.hidden_size), dtype, device, gen, requires_grad=train)

    def block_inputs() -> tuple[tuple[Any, ...], dict[str, Any]]:
        caches = () if train else tuple(_random(shape, dtype, device, gen)
                                        for shape in kv_cache_shapes(c, b, start + s))
        return (hidden(), *caches), {"start_pos": start}

    def head_inputs() -> tuple[tuple[Any, ...], dict[str, Any]]:
        if train:
            return (hidden(), _tokens((b, s), c.vocab_size, device, gen)), {}
        return (hidden(),), {"last_only": phase == "prefill"}

    embed = _prepare((FrozenEmbedding if lora else Embedding)(c, dtype=dtype, device=device), train, lora)
    stages = [Stage("embed", embed, 1, lambda: ((_tokens((b, s), c.vocab_size, device, gen),), {"start_pos": start}),
                    returns_loss=False)]
    rotary = make_rotary(c, start + s, dtype=dtype, device=device)
    # One representative per kind of block (dense or MoE, windowed or not), named after its first layer and
    # counting every layer of its kind: dense then MoE (DeepSeek), windowed and full layers alternating (GPT-OSS).
    kinds: dict[tuple[bool, int], list[int]] = {}
    for i in range(c.num_layers):
        kinds.setdefault((is_moe_layer(c, i), layer_window(c, i)), []).append(i)
    for (moe, window), members in kinds.items():
        block = _prepare(Block(c, rotary, moe=moe, dtype=dtype, device=device, window=window), train, lora)
        caches = () if train else tuple(range(1, 1 + len(kv_cache_shapes(c, b, start + s))))
        stages.append(Stage(f"layers.{members[0]}", block, len(members), block_inputs, returns_loss=False,
                            state_args=caches))
    head = _prepare(Head(c, dtype=dtype, device=device), train, lora)
    stages.append(Stage("head", head, 1, head_inputs, returns_loss=train))
    tokens = b if phase == "decode" else b * s
    return Program(c, phase, b, s, kv_len, dtype, tuple(stages), train, tokens)


def make_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """AdamW(lr=1e-4, weight_decay=0.1): the fused kernel (one pass over each parameter's state) on CPU and CUDA.
    Sparse-updated embedding tables are left out (see recommender.py)."""
    chosen = [p for p in params if p.requires_grad and not getattr(p, "_emulator_sparse", False)]
    if not chosen:
        raise EmulatorError("there are no trainable parameters to optimise.")
    if chosen[0].device.type == "meta":  # fused AdamW has no meta path through torch.optim; the tracer calls
        return torch.optim.AdamW(chosen, lr=1e-4, weight_decay=0.1, foreach=True)  # the fused op itself
    return torch.optim.AdamW(chosen, lr=1e-4, weight_decay=0.1, fused=True)


def _init_weights(module: nn.Module, generator: torch.Generator) -> None:
    # Small random weights (std 0.02) and biases; norm scales 1. Random so nothing runs on zeros.
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") or p.dim() >= 2:
                p.normal_(0.0, 0.02, generator=generator)
            else:
                p.fill_(1.0)


class _Step:
    """One step of the full model; `last_output` holds the last loss (train) or logits (prefill/decode)."""

    def __init__(self, run: Callable[[], torch.Tensor], model: nn.Module) -> None:
        self._run, self.model = run, model
        self.last_output: torch.Tensor | None = None

    def __call__(self) -> None:
        self.last_output = self._run()


def build_step(model: ModelConfig, phase: Phase, *, batch_size: int, seq_len: int, kv_len: int = 0,
               dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu",
               seed: int = 0) -> Callable[[], None]:
    """The real full model with random weights and inputs on `device`; calling the result runs one step."""
    _check(model, phase, batch_size, seq_len, kv_len)
    device = torch.device(device)
    if device.type == "meta":
        raise EmulatorError("build_step runs the model for real; use build_program for meta tensors.",
                            field="device")
    gen = torch.Generator(device=device).manual_seed(seed)
    train = phase == "train"
    b, s = batch_size, seq_len
    net: nn.Module
    if isinstance(model, DLRMConfig):
        net = DLRM(model, dtype=dtype, device=device)
        args, kwargs = dlrm_inputs(model, b, dtype=dtype, device=device, generator=gen, labels=train)
    else:
        net = Transformer(model, num_positions=kv_len + s, dtype=dtype, device=device)
        if train and model.lora is not None:
            apply_lora(net, model.lora)  # frozen base, trained adapters: the optimizer takes what requires grad
        tokens = _tokens((b, s), model.vocab_size, device, gen)
        if train:
            args, kwargs = (tokens, _tokens((b, s), model.vocab_size, device, gen)), {}
        else:
            caches = [tuple(_random(shape, dtype, device, gen) for shape in kv_cache_shapes(model, b, kv_len + s))
                      for _ in range(model.num_layers)]
            # The write position is kv_len on every call, so repeated calls do identical work.
            args, kwargs = (tokens,), {"caches": caches, "start_pos": kv_len, "last_only": phase == "prefill"}
    _init_weights(net, gen)
    net.train(train)
    if not train:
        net.requires_grad_(False)

        def infer() -> torch.Tensor:
            with torch.no_grad():
                return net(*args, **kwargs)

        return _Step(infer, net)
    optimizer = make_optimizer(net.parameters())

    def train_step() -> torch.Tensor:
        loss = net(*args, **kwargs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return _Step(train_step, net)
