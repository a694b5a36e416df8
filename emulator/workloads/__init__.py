"""Workloads as real torch programs: model configs, Hugging Face import, presets, modules and step programs.

Flow: a preset name, config.json or inline mapping -> `load.load_model` -> `ModelConfig` -> `program.build_program`
(the representative stages the tracer runs on meta tensors) or `program.build_step` (the full model, run for real).

    config.py        frozen, validated model configs (closed-form parameter counts; no torch)
    hf.py            Hugging Face config.json keys -> configs
    presets.py       named models as config.json keys
    load.py          a model from a preset name, a config.json path or inline keys
    ops.py, mlp.py, transformer.py, moe.py, recommender.py   the torch modules
    program.py       one step of a workload: representative stages (trace) or the full model (run)

This package's top level imports no torch, so listing models stays fast.
"""

from emulator.workloads.config import DLRMConfig, ModelConfig, TransformerConfig
from emulator.workloads.hf import from_hf_config, supported_model_types
from emulator.workloads.load import load_model
from emulator.workloads.presets import PRESETS, list_models, preset

__all__ = ["PRESETS", "DLRMConfig", "ModelConfig", "TransformerConfig", "from_hf_config", "list_models",
           "load_model", "preset", "supported_model_types"]
