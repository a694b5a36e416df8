"""Workloads as real torch programs: model configs, Hugging Face import, presets, modules and step programs.

Flow: a preset name, config.json or inline mapping -> `load_model` -> `ModelConfig` -> `build_program` (the
representative stages the tracer runs on meta tensors) or `build_step` (the full model, run for real).
"""

from emulator.workloads.config import DLRMConfig, ModelConfig, TransformerConfig
from emulator.workloads.hf import from_hf_config, load_model, supported_model_types
from emulator.workloads.presets import PRESETS, list_models, preset
from emulator.workloads.program import Phase, Program, Stage, build_program, build_step, make_optimizer

__all__ = [
    "PRESETS", "DLRMConfig", "ModelConfig", "Phase", "Program", "Stage", "TransformerConfig", "build_program",
    "build_step", "from_hf_config", "list_models", "load_model", "make_optimizer", "preset",
    "supported_model_types",
]
