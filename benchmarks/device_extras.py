"""Device facts the stack models rest on and the calibration sweep does not time (issue 12), in about 2 minutes:

- kernel launch: a chain of small kernels launched one by one from Python (eager) against the same chain replayed
  from a CUDA graph (what TensorRT-LLM, vLLM and SGLang do in decode): the per-kernel host cost and graph gap;
- expert GEMMs three ways: one product per expert (the eager program's loop), one batched product (how
  `grouped_mm` calls are predicted) and torch's grouped GEMM kernel where this torch has one;
- fp8 scaling: per-tensor against row-wise scales (the engines' and Transformer Engine's recipes) on one shape set;
- whole decode steps of llama3-8b (4 layers and all 32) eager and replayed from a CUDA graph;
- the same 4-layer decode steps compiled by torch.compile (Inductor's fused kernels, as vLLM builds its model),
  launched eagerly and replayed from a CUDA graph; full llama3-8b prefills (time to first token's work);
- expert GEMMs in fp8 (torch's scaled grouped GEMM), and the two ceilings: the best matrix rate per dtype and a
  large device-to-device copy (`--sections ceilings`).

Every section records its own error and the others go on. Writes one JSON file.

    PYTHONPATH=. python benchmarks/device_extras.py --out extras.json [--sections launch,experts,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from emulator.files import write_json_atomic  # noqa: E402
from emulator.measure.machine import device_fingerprint  # noqa: E402
from emulator.measure.timer import time_callable  # noqa: E402

EXPERTS = ((8, 512, 14336, 4096), (128, 16, 768, 2048), (128, 256, 768, 2048), (256, 16, 2048, 7168),
           (64, 512, 2048, 7168))
FP8_SHAPES = ((16, 8192, 8192), (128, 8192, 8192), (1024, 8192, 8192), (8192, 8192, 8192), (8192, 14336, 4096))
DECODE = ((4, 1, 512), (4, 16, 1024), (4, 64, 2048), (32, 1, 1024), (32, 16, 1024), (32, 64, 1024))
COMPILED = ((4, 1, 1024), (4, 16, 1024), (4, 64, 1024))
PREFILL = ((32, 1, 2048), (32, 1, 8192), (32, 4, 2048), (32, 16, 512))
CEILING_SHAPES = ((4096, 4096, 4096), (8192, 8192, 8192), (16384, 8192, 8192), (8192, 8192, 1024))


def _time(fn: Callable[[], Any], dev: torch.device, target_s: float = 0.2) -> dict[str, Any]:
    m = time_callable(fn, device=dev, target_time_s=target_s, min_reps=5, flush_l2=False)
    return m.as_dict()


def _graph(fn: Callable[[], Any], dev: torch.device) -> torch.cuda.CUDAGraph:
    """`fn` captured in a CUDA graph after warm-up on a side stream (as torch's documentation does it)."""
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    torch.cuda.synchronize(dev)
    return graph


def launch_chain(dev: torch.device) -> list[dict[str, Any]]:
    rows = []
    for numel in (1024, 1 << 20):
        x = torch.randn(numel, device=dev)
        for n in (64, 512):
            def chain(x: torch.Tensor = x, n: int = n) -> None:
                for _ in range(n):
                    x.mul_(0.999)
            eager = _time(chain, dev)
            graph = _graph(chain, dev)
            replay = _time(graph.replay, dev)
            rows.append({"numel": numel, "kernels": n, "eager": eager, "graph": replay,
                         "eager_per_kernel_s": eager["median_s"] / n, "graph_per_kernel_s": replay["median_s"] / n})
            print(f"launch {numel:8d} x {n:4d}: eager {eager['median_s'] / n * 1e6:6.2f} us/kernel, "
                  f"graph {replay['median_s'] / n * 1e6:6.2f} us/kernel")
            del graph
    return rows


def experts(dev: torch.device) -> list[dict[str, Any]]:
    rows = []
    gen = torch.Generator(device=dev).manual_seed(0)
    for g, m, n, k in EXPERTS:
        a = torch.randn(g * m, k, device=dev, dtype=torch.bfloat16, generator=gen)
        w = torch.randn(g, n, k, device=dev, dtype=torch.bfloat16, generator=gen)  # nn.Linear layout per expert
        wt = w.transpose(1, 2)
        row: dict[str, Any] = {"experts": g, "tokens_per_expert": m, "n": n, "k": k, "flop": 2.0 * g * m * n * k}

        def loop(a: torch.Tensor = a, w: torch.Tensor = w, g: int = g, m: int = m) -> None:
            for e in range(g):
                a[e * m:(e + 1) * m] @ w[e].t()

        row["loop"] = _time(loop, dev)
        row["bmm"] = _time(lambda a=a, wt=wt, g=g, m=m, k=k: torch.bmm(a.view(g, m, k), wt), dev)
        grouped = getattr(torch, "_grouped_mm", None)
        if grouped is not None:
            offs = torch.arange(m, g * m + 1, m, device=dev, dtype=torch.int32)
            try:
                row["grouped_mm"] = _time(lambda a=a, wt=wt, offs=offs, f=grouped: f(a, wt, offs=offs), dev)
            except Exception as exc:  # noqa: BLE001 - a layout this torch's kernel refuses: record it and go on
                row["grouped_mm_error"] = f"{type(exc).__name__}: {exc}"[:300]
        summary = "  ".join(f"{key} {row[key]['median_s'] * 1e6:8.1f} us" for key in ("loop", "bmm", "grouped_mm")
                            if key in row)
        print(f"experts {g:3d} x {m:4d} x {n:5d} x {k:5d}: {summary}")
        rows.append(row)
        del a, w, wt
    return rows


def fp8_scaling(dev: torch.device) -> list[dict[str, Any]]:
    rows = []
    f8 = torch.float8_e4m3fn
    for m, n, k in FP8_SHAPES:
        a = torch.randn(m, k, device=dev).to(f8)
        b = torch.randn(n, k, device=dev).to(f8).t()
        one = torch.ones((), device=dev)
        row: dict[str, Any] = {"m": m, "n": n, "k": k, "flop": 2.0 * m * n * k}
        row["tensorwise"] = _time(lambda a=a, b=b, one=one: torch._scaled_mm(a, b, scale_a=one, scale_b=one,
                                                                             out_dtype=torch.bfloat16), dev)
        sa = torch.rand(m, 1, device=dev) + 0.5
        sb = torch.rand(1, n, device=dev) + 0.5
        try:
            row["rowwise"] = _time(lambda a=a, b=b, sa=sa, sb=sb: torch._scaled_mm(a, b, scale_a=sa, scale_b=sb,
                                                                                   out_dtype=torch.bfloat16), dev)
        except Exception as exc:  # noqa: BLE001
            row["rowwise_error"] = f"{type(exc).__name__}: {exc}"[:300]
        print(f"fp8 {m:5d}x{n:5d}x{k:5d}: tensorwise {row['tensorwise']['median_s'] * 1e6:8.1f} us"
              + (f"  rowwise {row['rowwise']['median_s'] * 1e6:8.1f} us" if "rowwise" in row else ""))
        rows.append(row)
        del a, b
    return rows


def _llama_step(layers: int, phase: str, batch: int, seq: int, kv: int, dev: torch.device
                ) -> tuple[dict[str, Any], Callable[[], None]]:
    from emulator.validation.validate import LLAMA3_8B_4L
    from emulator.workloads.hf import from_hf_config
    from emulator.workloads.program import build_step

    config = {**LLAMA3_8B_4L, "num_hidden_layers": layers}
    name = f"llama3-8b-{layers}l-{phase}-b{batch}-s{seq}-kv{kv}"
    row: dict[str, Any] = {"name": name, "config": config, "phase": phase, "batch_size": batch, "seq_len": seq,
                           "kv_len": kv, "dtype": "bf16"}
    model = from_hf_config(config, origin=name, name=name)
    step = build_step(model, phase, batch_size=batch, seq_len=seq, kv_len=kv,  # type: ignore[arg-type]
                      dtype=torch.bfloat16, device=dev)
    return row, step


def _ms(row: dict[str, Any], key: str) -> str:
    return f"{row[key]['median_s'] * 1e3:8.3f} ms" if key in row else f"{'-':>8s}   "


def _steps(dev: torch.device, shapes: tuple[tuple[int, int, int], ...], phase: str, *, graph: bool,
           compiled: bool = False) -> list[dict[str, Any]]:
    rows = []
    for layers, batch, n in shapes:
        seq, kv = (1, n) if phase == "decode" else (n, 0)
        row: dict[str, Any] = {}
        try:
            row, step = _llama_step(layers, phase, batch, seq, kv, dev)
            row["eager"] = _time(step, dev, 0.3)
            if compiled:
                t0 = time.perf_counter()
                step = torch.compile(step)
                step()
                row["compile_s"] = time.perf_counter() - t0
                row["compiled"] = _time(step, dev, 0.3)
            if graph:
                try:
                    g = _graph(step, dev)
                    row["compiled_graph" if compiled else "graph"] = _time(g.replay, dev, 0.3)
                    del g
                except Exception as exc:  # noqa: BLE001 - a step that cannot be captured: no graph time
                    row["graph_error"] = f"{type(exc).__name__}: {exc}"[:300]
            del step
        except Exception as exc:  # noqa: BLE001
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        torch.cuda.empty_cache()
        print(f"{row.get('name', (layers, batch, n))}: " + "  ".join(
            f"{key} {_ms(row, key)}" for key in ("eager", "graph", "compiled", "compiled_graph") if key in row)
            + (f"  ({row['error']})" if "error" in row else ""))
        rows.append(row)
    return rows


def decode_steps(dev: torch.device) -> list[dict[str, Any]]:
    return _steps(dev, DECODE, "decode", graph=True)


def compiled_steps(dev: torch.device) -> list[dict[str, Any]]:
    return _steps(dev, COMPILED, "decode", graph=True, compiled=True)


def prefill_steps(dev: torch.device) -> list[dict[str, Any]]:
    return _steps(dev, PREFILL, "prefill", graph=False)


def fp8_experts(dev: torch.device) -> list[dict[str, Any]]:
    rows = []
    f8 = torch.float8_e4m3fn
    for g, m, n, k in EXPERTS:
        row: dict[str, Any] = {"experts": g, "tokens_per_expert": m, "n": n, "k": k, "flop": 2.0 * g * m * n * k}
        a = torch.randn(g * m, k, device=dev).to(f8)
        b = torch.randn(g, n, k, device=dev).to(f8).transpose(1, 2)
        offs = torch.arange(m, g * m + 1, m, device=dev, dtype=torch.int32)
        sa = torch.rand(g * m, device=dev) + 0.5
        sb = torch.rand(g, n, device=dev) + 0.5
        try:
            row["scaled_grouped_mm"] = _time(
                lambda a=a, b=b, sa=sa, sb=sb, offs=offs: torch._scaled_grouped_mm(  # type: ignore[attr-defined]
                    a, b, sa, sb, offs=offs, out_dtype=torch.bfloat16), dev)
        except Exception as exc:  # noqa: BLE001
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        print(f"fp8 experts {g:3d} x {m:4d} x {n:5d} x {k:5d}: {_ms(row, 'scaled_grouped_mm')}"
              + (f"  ({row['error']})" if "error" in row else ""))
        rows.append(row)
        del a, b
    return rows


def ceilings(dev: torch.device) -> list[dict[str, Any]]:
    from kernels import references as R

    rows = []
    fp8 = torch.cuda.get_device_capability(dev) >= (8, 9) and hasattr(torch, "_scaled_mm")
    for dtype in ("bf16", "fp16", "fp8"):
        if dtype == "fp8" and not fp8:
            continue
        for m, n, k in CEILING_SHAPES:
            p = {"m": m, "n": n, "k": k}
            if dtype == "fp8":
                ins, fn = R.scaled_mm_inputs(p, device=dev, dtype=R.torch_dtype("fp8")), R.scaled_mm
            else:
                ins, fn = R.gemm_inputs(p, device=dev, dtype=R.torch_dtype(dtype)), R.gemm
            meas = time_callable(lambda fn=fn, ins=ins: fn(*ins), device=dev, target_time_s=0.5, min_reps=10)
            rate = 2 * m * n * k / meas.median_s
            rows.append({"kind": "matmul", "dtype": dtype, "m": m, "n": n, "k": k, **meas.as_dict(),
                         "flop_per_s": rate})
            print(f"{dtype:5s} {m}x{n}x{k}: {meas.median_s * 1e3:8.3f} ms  {rate / 1e12:7.1f} TFLOP/s")
            del ins
    for num_bytes in (256 * 2**20, 2 * 2**30):
        ins = R.copy_inputs({"bytes": num_bytes}, device=dev, dtype=torch.bfloat16)
        meas = time_callable(lambda ins=ins: R.copy(*ins), device=dev, target_time_s=0.5, min_reps=10)
        bw = 2 * num_bytes / meas.median_s  # bytes read + bytes written
        rows.append({"kind": "copy", "bytes": num_bytes, **meas.as_dict(), "bytes_per_s": bw})
        print(f"copy {num_bytes / 2**20:6.0f} MiB: {meas.median_s * 1e3:8.3f} ms  {bw / 1e12:6.2f} TB/s")
        del ins
    return rows


SECTIONS: dict[str, Callable[[torch.device], list[dict[str, Any]]]] = {
    "ceilings": ceilings, "launch": launch_chain, "experts": experts, "fp8_scaling": fp8_scaling,
    "decode": decode_steps, "compiled": compiled_steps, "prefill": prefill_steps, "fp8_experts": fp8_experts}
DEFAULT_SECTIONS = "launch,experts,fp8_scaling,decode,prefill,fp8_experts,compiled"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--sections", default=DEFAULT_SECTIONS, help=f"comma-separated, of {', '.join(SECTIONS)}")
    args = parser.parse_args()
    dev = torch.device("cuda")
    out: dict[str, Any] = {"fingerprint": device_fingerprint(dev)}
    status = 0
    for name in args.sections.split(","):
        section = SECTIONS[name]
        t0 = time.perf_counter()
        try:
            with torch.inference_mode(name not in ("decode", "compiled", "prefill")):
                out[name] = section(dev)
        except Exception:  # noqa: BLE001 - one broken section must not cost the others
            out[f"{name}_error"] = traceback.format_exc()[-2000:]
            print(out[f"{name}_error"], file=sys.stderr)
            status = 1
        out[f"{name}_s"] = time.perf_counter() - t0
        write_json_atomic(out, args.out)  # after every section: a later crash keeps what was measured
        print(f"== {name}: {out[f'{name}_s']:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
