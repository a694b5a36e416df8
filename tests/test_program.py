"""Specs for programs: every preset and phase builds on meta, and every stage traces (with backward for train)."""

from __future__ import annotations

import pytest
import torch

from emulator.errors import EmulatorError
from emulator.workloads import DLRMConfig, TransformerConfig, list_models, ops, preset
from emulator.workloads.program import build_program, make_optimizer

CASES = [(name, phase) for name in list_models() for phase in ("train", "prefill", "decode")
         if not (phase == "decode" and isinstance(preset(name), DLRMConfig))]


def _shape(config: object, phase: str) -> dict[str, int]:
    if isinstance(config, DLRMConfig):
        return {"batch_size": 4, "seq_len": 1}
    assert isinstance(config, TransformerConfig)
    seq = min(8192, config.max_seq_len)
    if phase == "decode":
        return {"batch_size": 8, "seq_len": 1, "kv_len": seq - 1}
    if phase == "prefill":
        return {"batch_size": 1, "seq_len": seq // 2, "kv_len": seq // 4}
    return {"batch_size": 1, "seq_len": seq}


@pytest.mark.parametrize(("name", "phase"), CASES)
def test_every_preset_and_phase_traces_on_meta(name: str, phase: str) -> None:
    """Stages build on meta, counts cover every layer, and each stage runs (and backpropagates in train)."""
    config = preset(name)
    program = build_program(config, phase, **_shape(config, phase))  # type: ignore[arg-type]
    assert program.train == (phase == "train")
    if isinstance(config, TransformerConfig):
        blocks = [s for s in program.stages if s.name.startswith("layers.")]
        assert sum(s.count for s in blocks) == config.num_layers
        assert program.stages[0].name == "embed" and program.stages[-1].name == "head"
        expected = program.batch_size if phase == "decode" else program.batch_size * program.seq_len
        assert program.tokens == expected
    params: list[torch.nn.Parameter] = []
    with ops.tracing():
        for stage in program.stages:
            assert all(p.is_meta for p in stage.module.parameters())
            args, kwargs = stage.make_inputs()
            out = stage.module(*args, **kwargs)
            if program.train:
                if stage.returns_loss:
                    assert out.dim() == 0
                    out.backward()
                else:
                    out.backward(torch.empty_like(out))
                params += [p for p in stage.module.parameters() if p.grad is not None]
    if program.train:
        optimizer = make_optimizer(params)
        optimizer.step()


def test_deepseek_has_dense_and_moe_stages() -> None:
    """DeepSeek-V3 is one stage of 3 dense blocks and one of 58 MoE blocks."""
    program = build_program(preset("deepseek-v3"), "train", batch_size=1, seq_len=4096)
    assert [(s.name, s.count) for s in program.stages] == [("embed", 1), ("layers.0", 3), ("layers.3", 58),
                                                          ("head", 1)]


def test_decode_writes_the_cache_in_the_block() -> None:
    """A decode block's inputs include its KV cache sized kv_len + 1 and the cache position."""
    program = build_program(preset("llama3-8b"), "decode", batch_size=4, seq_len=1, kv_len=100)
    args, kwargs = program.stages[1].make_inputs()
    assert [tuple(a.shape) for a in args] == [(4, 1, 4096), (4, 8, 101, 128), (4, 8, 101, 128)]
    assert kwargs == {"start_pos": 100}


def test_program_on_cpu_runs_with_random_inputs() -> None:
    """On CPU the representative stages hold real random (non-zero) inputs."""
    config = preset("llama3-8b").scaled(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2,
                                         ffn_hidden_size=128, vocab_size=256, head_dim=16)
    program = build_program(config, "train", batch_size=2, seq_len=8, dtype=torch.float32, device="cpu")
    for stage in program.stages:
        args, kwargs = stage.make_inputs()
        if stage.name.startswith("layers"):
            assert args[0].abs().sum() > 0 and args[0].requires_grad
        out = stage.module(*args, **kwargs)
        assert torch.isfinite(out).all()


def test_invalid_requests() -> None:
    """Decode of DLRM, decode of several tokens and sequences past max_seq_len are errors."""
    with pytest.raises(EmulatorError, match="decode"):
        build_program(preset("dlrm-small"), "decode", batch_size=1, seq_len=1)
    with pytest.raises(EmulatorError, match="seq_len"):
        build_program(preset("llama3-8b"), "decode", batch_size=1, seq_len=4, kv_len=10)
    with pytest.raises(EmulatorError, match="max_seq_len"):
        build_program(preset("gpt3-175b"), "train", batch_size=1, seq_len=4096)
    with pytest.raises(EmulatorError, match="phase"):
        build_program(preset("llama3-8b"), "serve", batch_size=1, seq_len=4)  # type: ignore[arg-type]
