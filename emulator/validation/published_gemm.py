"""Device transfer at the kernel level: NVIDIA AIConfigurator's measured TensorRT-LLM GEMM tables
(emulator/data/aic_gemm_trtllm.csv) against the emulator's efficiency table of each chip, and the same for the
GEMMs vLLM and SGLang serve (sections `aic_gemm_vllm`, `aic_gemm_sglang`).

The rows are TensorRT-LLM 1.3.0rc20 `Linear` forwards as AIConfigurator's collector times them
(collector/trtllm/collect_gemm.py): replayed in a CUDA graph, over weight copies that outrun the L2, for bf16, fp8
(per-tensor, the input scale computed at run time) and NVFP4 (static input scale), on H100, H200, B200, GB200, B300
and GB300.
Ten layer shapes (n, k) of dense and MoE models at eight token counts m, 1 to 8192, per chip and format.

Each row is predicted as the Linear runs, kernel by kernel, on the chip as the engine's serving predictions run it
(`engine_device`: the graph's gap per kernel, no host launch; `engine_table`: its fp8 and fp4 GEMMs on the 16-bit
shape response, `recipe.low_precision_gemm_shape`, so these rows check the GEMM times a serving step adds up):
- bf16: the GEMM;
- fp8: the input's absolute maximum (a reduction over its m x k bf16 values), its cast to fp8, the fp8 GEMM;
- nvfp4: the input's cast to fp4 with one fp8 scale per 16 values, the fp4 GEMM.
Nothing here is fitted: H100 and H200 run on their own calibrations (of torch's kernels), the Blackwell chips on
the H200's moved to their achievable rates (`engine.transfer`; B300 and GB300 take theirs from these tables' best
shapes, the rest of each table is still held out), so the Blackwell rows test the transfer. Error = predicted /
measured - 1, summarised per chip and format and per token-count band.

Sections `aic_gemm_vllm` and `aic_gemm_sglang` check the other engines' Linear forwards the same way, on the same ten
shapes and eight token counts, on H100, H200 and B200 (emulator/data/aic_gemm_vllm.csv, aic_gemm_sglang.csv): vLLM
0.24's `RowParallelLinear` as AIConfigurator's collector builds it (collector/vllm/collect_gemm.py: weights processed
as at load, six copies replayed in a CUDA graph; fp8 per tensor with a run-time input scale, its CUTLASS scaled mm,
like TensorRT-LLM's three kernels; NVFP4 a static input scale, FlashInfer's CuTe DSL GEMM), SGLang 0.5.14's kernels
(collector/sglang/collect_gemm.py: fp8 a per-token input scale, computed and applied in one quantizing kernel, then
sgl-kernel's fp8 scaled mm; NVFP4 FlashInfer's quantize and CuTe DSL GEMM). Three collectors, three kernel
libraries: where all three err alike on a chip, the transfer is what errs (the harness's own overheads differ, as
TensorRT-LLM's fp8 and NVFP4 rows at m <= 16 show against the others'). vLLM's NVFP4 forwards ran one weight copy
(its collector's other formats six), so its small shapes may read the weights from L2, faster than HBM allows.
"""

from __future__ import annotations

from typing import Any

from emulator.engine.roofline import kernel_time
from emulator.files import shipped
from emulator.hardware import DeviceProfile
from emulator.precision import DTYPE_BYTES, stored_bytes
from emulator.stacks import load_stack
from emulator.validation.kernel_tables import check, read_rows, render_by_chip
from kernels import Cost, KernelCall

CSV = shipped("data") / "aic_gemm_trtllm.csv"
SOURCE = "AIConfigurator GEMM tables (TRT)"
ENGINE = "trtllm"
# engine -> (table, source, what ran); the engine's serving stack times its rows
TABLES = {ENGINE: (CSV, SOURCE, "TensorRT-LLM 1.3.0rc20 Linear forwards"),
          "vllm": (shipped("data") / "aic_gemm_vllm.csv", "AIConfigurator GEMM tables (vLLM)",
                   "vLLM 0.24 Linear forwards"),
          "sglang": (shipped("data") / "aic_gemm_sglang.csv", "AIConfigurator GEMM tables (SGLang)",
                     "SGLang 0.5.14 GEMM kernels")}
PER_TOKEN_FP8 = frozenset({"sglang"})  # engines whose fp8 input scale is per token: one quantizing kernel, no amax
FORMATS = {"bfloat16": None, "fp8": "fp8", "nvfp4": "fp4"}  # the table's gemm_dtype -> the emulator's precision
BANDS = (("m <= 16", 1, 16), ("m 64-1024", 64, 1024), ("m >= 4096", 4096, 1 << 30))
BF16_BYTES, FP8_BYTES = DTYPE_BYTES["bf16"], DTYPE_BYTES["fp8"]


def rows(engine: str = ENGINE) -> list[dict[str, Any]]:
    return read_rows(TABLES[engine][0], ("m", "n", "k"))


def linear_calls(m: int, n: int, k: int, gemm_dtype: str, engine: str = ENGINE) -> list[KernelCall]:
    """The kernels of one Linear forward of `engine` in the table's format (see the module docstring)."""
    gemm = KernelCall(family="gemm", op="aten.mm", shapes=((m, k), (k, n)), dtype="bf16",
                      cost=Cost(matrix_flops=2.0 * m * n * k, bytes_read=BF16_BYTES * (m * k + k * n),
                                bytes_written=BF16_BYTES * m * n), weight_bytes=BF16_BYTES * k * n)
    values = float(m * k)
    if gemm_dtype == "fp8":
        amax = KernelCall(family="reduction", op="aten.amax", shapes=((m, k),), dtype="bf16",
                          cost=Cost(vector_flops=values, bytes_read=BF16_BYTES * values, bytes_written=4.0))
        cast = KernelCall(family="elementwise", op="quantize_fp8", shapes=((m, k),), dtype="bf16",
                          cost=Cost(vector_flops=values, bytes_read=BF16_BYTES * values,
                                    bytes_written=FP8_BYTES * values))
        return [cast, gemm] if engine in PER_TOKEN_FP8 else [amax, cast, gemm]
    if gemm_dtype == "nvfp4":
        cast = KernelCall(family="elementwise", op="quantize_nvfp4", shapes=((m, k),), dtype="bf16",
                          cost=Cost(vector_flops=2.0 * values, bytes_read=BF16_BYTES * values,
                                    bytes_written=stored_bytes("fp4") * values))
        return [cast, gemm]
    return [gemm]


def predict_s(device: DeviceProfile, table: Any, row: dict[str, Any], engine: str = ENGINE) -> float:
    precision = FORMATS[row["gemm_dtype"]]
    return sum(kernel_time(c, device, table, precision if c.family == "gemm" else None).time_s
               for c in linear_calls(row["m"], row["n"], row["k"], row["gemm_dtype"], engine))


def validate_gemm_tables(engine: str = ENGINE) -> dict[str, Any]:
    """Every row of `engine`'s table predicted; the `--json` section `aic_gemm` of `validate --published` (for
    vLLM and SGLang `aic_gemm_vllm`, `aic_gemm_sglang`; their case ids start `aic-gemm-<engine>:`)."""
    source, prefix = TABLES[engine][1], "aic-gemm" if engine == ENGINE else f"aic-gemm-{engine}"
    return check(source, load_stack(engine, "serving"), rows(engine),
                 lambda device, table, r: predict_s(device, table, r, engine), lambda r: {
                     "id": f"{prefix}:{r['device']}:{r['gemm_dtype']}:{r['m']}x{r['n']}x{r['k']}",
                     "metric": f"{r['gemm_dtype']} s, {r['device']}", "gemm_dtype": r["gemm_dtype"], "m": r["m"]},
                 "gemm_dtype", "m", BANDS)


def render(section: dict[str, Any]) -> str:
    ran = next(what for _, source, what in TABLES.values() if source == section["source"])
    return render_by_chip(f"Kernel level: {section['source']}, {ran} replayed in a CUDA graph, timed as the engine's "
                          "serving steps time them (error = predicted / measured - 1; Blackwell takes the H200's "
                          "calibration moved to its achievable rates)", section, "gemm_dtype", BANDS)


__all__ = ["CSV", "SOURCE", "TABLES", "linear_calls", "predict_s", "render", "rows", "validate_gemm_tables"]
