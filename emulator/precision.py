"""What a precision setting means in bytes: the one table of dtype widths, and the dtype each part of a model is
stored or moved in under a training or serving precision.

A precision names the dtype of the GEMMs on weights. Low precisions (fp8, int8, fp4) are GEMM formats: the
programs are traced in bf16 and the roofline re-costs those GEMMs in the low dtype, while activations, collective
payloads and (in training) the weights the optimizer keeps stay 16-bit, as Transformer Engine and serving engines
do. Serving stores its weights in the precision itself (an fp8 checkpoint is 1 byte per weight).
"""

from __future__ import annotations

DTYPE_BYTES: dict[str, float] = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int8": 1,
    "fp4": 0.5,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "bool": 1,
    "uint8": 1,
}

# Block scales a format stores beside its values, which its GEMMs stream with them: NVFP4, the fp4 format of NVIDIA's
# stacks (ModelOpt checkpoints, hf_quant_config quant_algo NVFP4 with group_size 16; Transformer Engine's NVFP4
# recipe), keeps one E4M3 scale per 16 E2M1 values and one fp32 per tensor, 0.5625 bytes per value (NVIDIA NeMo
# AutoModel, nemo_automodel.components.quantization.nvfp4). AMD's MXFP4 (MI355X's fp4) keeps one E8M0 scale per 32,
# 0.53125 bytes: taken as NVFP4's, 6% more. fp8 scales per tensor or per 128 x 128 block: negligible.
BLOCK_SCALE_BYTES: dict[str, float] = {"fp4": 1 / 16}
TRAIN_PRECISIONS = ("bf16", "fp16", "fp8", "fp4", "fp32")
SERVE_PRECISIONS = ("bf16", "fp16", "fp8", "fp4", "int8", "fp32", "w4a16")
# Weight-only formats, serving only: weights stored at fewer bits and widened in the GEMM's prologue, the math in
# the activations' 16-bit dtype on any chip (what runs MXFP4 and INT4 checkpoints on chips without 4-bit matrix
# units: Marlin/Machete, Triton MXFP4 MoE). Bytes per weight: 4 bits plus one 8-bit scale per 32 (MXFP4's E8M0 block
# scale, the OCP Microscaling spec; INT4 with 128-wide group scales is close). Not a sizing candidate unless named:
# it changes the model's weights.
WEIGHT_ONLY_BYTES: dict[str, float] = {"w4a16": 0.5 + 1 / 32}
KV_PRECISIONS = ("bf16", "fp16", "fp8", "int8")
# GEMM formats on the matrix units (W8A8-style): traced in bf16, re-costed in their own dtype by the roofline.
LOW_PRECISIONS = ("fp8", "int8", "fp4")
# A KernelCall param (key, value) marking a GEMM that runs in its traced dtype under every precision: a recipe's
# low-precision GEMMs are the base model's Linears, and LoRA adapters stay 16-bit (NeMo's ParallelLinearAdapter
# builds linear_in and linear_out from megatron.core.tensor_parallel ColumnParallelLinear/RowParallelLinear, plain
# torch GEMMs that Transformer Engine's fp8_autocast does not touch: NeMo nemo/collections/nlp/modules/common/
# megatron/adapters/parallel_adapters.py). The tracer sets it on the kernels of modules that declare
# `keeps_dtype = True` (`workloads.adapters.AdapterLinear`).
KEEP_DTYPE = ("keep_dtype", True)
# Dtypes a program is traced and run in (torch has real kernels for them everywhere).
TRACED_DTYPES = ("bf16", "fp16", "fp32")
# Bytes per optimizer-state entry of mixed-precision AdamW: fp32 master weights and two fp32 moments
# (Rajbhandari et al. 2020, ZeRO, Sec. 3.1).
ADAM_STATE_BYTES_PER_PARAM = 12.0


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of `dtype` ("bf16": 2, "fp4": 0.5)."""
    return float(DTYPE_BYTES[dtype])


def stored_bytes(dtype: str) -> float:
    """Bytes per value of `dtype` as stored and streamed: its width plus its block scales ("fp4": 0.5625)."""
    return dtype_bytes(dtype) + BLOCK_SCALE_BYTES.get(dtype, 0.0)


def weight_bytes_per_param(precision: str) -> float:
    """Bytes per weight a serving replica stores in `precision`, scales included (weight-only formats: their packed
    width)."""
    return WEIGHT_ONLY_BYTES.get(precision) or stored_bytes(precision)


def activation_dtype(precision: str) -> str:
    """The dtype activations, collective payloads and the traced program use: the precision when it is a
    16/32-bit float, else bf16 (low precisions are GEMM formats)."""
    return precision if precision in TRACED_DTYPES else "bf16"


def training_weight_bytes(precision: str) -> float:
    """Bytes per weight (and per gradient) a training step keeps: 4 in fp32, else 2 (fp8 training keeps bf16
    weights and casts them per GEMM)."""
    return dtype_bytes(activation_dtype(precision))


def kv_dtype(precision: str, kv_precision: str | None = None) -> str:
    """The KV cache's dtype: as given, else the activations' (an fp8 checkpoint keeps a bf16 cache unless told)."""
    return kv_precision or activation_dtype(precision)


def embedding_table_bytes(precision: str) -> float:
    """Bytes per value of a recommender's embedding tables served in `precision`: 1 for the low precisions
    (tables are quantised row-wise to int8/fp8; fp4 tables are not served), else 2 (bf16/fp16 tables, also
    under fp32 serving)."""
    return 1.0 if precision in LOW_PRECISIONS else 2.0
