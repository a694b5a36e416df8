"""Specs for emulator.calibrate.sweeps, kernels.references and the measuring half of emulator.calibrate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from emulator.calibrate.points import CalPoint, collect, read_points_json, write_points_json
from emulator.calibrate.sweeps import FAMILIES, BenchPoint, sweep
from emulator.errors import EmulatorError
from kernels import references as R


@pytest.mark.parametrize("kind", ["cpu", "cuda"])
@pytest.mark.parametrize("quick", [True, False])
def test_every_family_in_every_sweep(kind: str, quick: bool) -> None:
    """Each sweep covers every kernel family, names known references, and matches their families."""
    points = sweep(kind, quick)
    assert {p.family for p in points} == set(FAMILIES)
    for p in points:
        assert p.name in R.REFERENCES and R.REFERENCES[p.name].family == p.family
        assert p.dtype in ("fp32", "tf32", "bf16", "fp16", "fp8")
    assert len({p.label for p in points}) == len(points), "duplicate points"


def test_quick_sweeps_are_smaller() -> None:
    """On CPU the quick sweep is smaller than the full one; a GPU keeps every point (it takes under a minute)."""
    assert len(sweep("cpu", True)) < len(sweep("cpu", False))
    assert len(sweep("cuda", True)) == len(sweep("cuda", False))
    assert max(p.params["m"] for p in sweep("cpu", True) if p.family == "gemm") <= 2048
    assert any(p.params.get("m") == 8192 for p in sweep("cuda", True) if p.family == "gemm")


def test_unknown_device_kind_is_a_user_error() -> None:
    """A device kind without a sweep raises EmulatorError naming the field."""
    with pytest.raises(EmulatorError, match="device"):
        sweep("tpu", True)


def _inputs(name: str, params: dict, dtype: torch.dtype = torch.float32) -> tuple:
    return R.reference(name).make_inputs(params, device="cpu", dtype=dtype)


def test_inputs_are_random_not_zero() -> None:
    """Every generator gives non-constant data (timing on zeros flatters hardware)."""
    tiny = {"m": 4, "n": 5, "k": 6, "batch": 2, "heads": 4, "kv_heads": 2, "seq_len": 8, "kv_len": 8, "head_dim": 8,
            "rows": 4, "cols": 8, "vocab": 16, "dim": 8, "num_indices": 6, "pooling": 3, "bytes": 4096,
            "numel": 64, "num_tensors": 2}
    for name, ref in R.REFERENCES.items():
        if name == "scaled_mm":
            continue
        for t in ref.make_inputs(tiny, device="cpu", dtype=torch.float32):
            for x in t if isinstance(t, list) else [t]:
                if (isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel() > 1
                        and name not in ("copy", "clone")):
                    assert x.std() > 0, name
        if name in ("copy", "clone"):
            dst, src = ref.make_inputs(tiny, device="cpu", dtype=torch.float32)
            assert src.numel() * 4 == 4096 and src.std() > 0


def test_gemm_matches_torch() -> None:
    """gemm and bmm compute a @ b, checked against float64."""
    a, b = _inputs("gemm", {"m": 7, "n": 5, "k": 9})
    torch.testing.assert_close(R.gemm(a, b).double(), a.double() @ b.double(), rtol=1e-5, atol=1e-5)
    a, b = _inputs("bmm", {"batch": 3, "m": 4, "n": 6, "k": 5})
    torch.testing.assert_close(R.gemm(a, b), torch.bmm(a, b))


@pytest.mark.parametrize("sq,skv,causal", [(16, 16, True), (1, 24, False)])
def test_attention_matches_explicit_softmax(sq: int, skv: int, causal: bool) -> None:
    """Prefill (causal, GQA) and decode attention equal softmax(QK^T/sqrt(d))V written out."""
    p = {"batch": 2, "heads": 4, "kv_heads": 2, "seq_len": sq, "kv_len": skv, "head_dim": 8, "causal": causal}
    q, k, v, c = _inputs("attention_prefill", p)
    out = R.attention(q, k, v, c)
    k2, v2 = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    s = q @ k2.transpose(-1, -2) / 8**0.5
    if causal:
        s = s.masked_fill(torch.ones(sq, skv, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(out, torch.softmax(s, -1) @ v2, rtol=1e-4, atol=1e-5)


def test_attention_accepts_the_projects_fused_op() -> None:
    """The attention references run with emulator.workloads.ops.attention and agree with the default."""
    from emulator.workloads.ops import attention

    p = {"batch": 1, "heads": 4, "kv_heads": 2, "seq_len": 8, "kv_len": 8, "head_dim": 8, "causal": True}
    q, k, v, c = _inputs("attention_prefill", p)
    torch.testing.assert_close(R.attention(q, k, v, c, attention=attention), R.attention(q, k, v, c))


def test_attention_backward_matches_autograd() -> None:
    """The backward reference returns the gradients of plain SDPA."""
    p = {"batch": 1, "heads": 2, "kv_heads": 2, "seq_len": 6, "kv_len": 6, "head_dim": 4}
    q, k, v, g, c = _inputs("attention_backward", p)
    dq, dk, dv = R.attention_backward(q, k, v, g, c)
    q2, k2, v2 = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    F.scaled_dot_product_attention(q2, k2, v2, is_causal=True).backward(g)
    for got, want in ((dq, q2.grad), (dk, k2.grad), (dv, v2.grad)):
        torch.testing.assert_close(got, want)


def test_vector_references_match_torch() -> None:
    """Elementwise, norms, softmax, cross entropy and sum equal their plain torch forms."""
    rc = {"rows": 3, "cols": 16}
    a, b = _inputs("add", rc)
    torch.testing.assert_close(R.add(a, b), torch.add(a, b))
    torch.testing.assert_close(R.mul(a, b), a * b)
    torch.testing.assert_close(R.silu(a), a * torch.sigmoid(a))
    torch.testing.assert_close(R.gelu(a), 0.5 * a * (1 + torch.erf(a / 2**0.5)))
    x, w = _inputs("rms_norm", rc)
    torch.testing.assert_close(R.rms_norm(x, w), x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * w)
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(R.layer_norm(x, w), (x - mu) / torch.sqrt(var + 1e-5) * w + w)
    torch.testing.assert_close(R.softmax(a), torch.exp(a) / torch.exp(a).sum(-1, keepdim=True))
    torch.testing.assert_close(R.reduce_sum(a), a.double().sum(-1).float())
    logits, target = _inputs("cross_entropy", {"rows": 5, "vocab": 11})
    want = -torch.log_softmax(logits, -1)[torch.arange(5), target].mean()
    torch.testing.assert_close(R.cross_entropy(logits, target), want)


def test_embedding_references_match_torch() -> None:
    """Embedding gathers rows; embedding_bag sums `pooling` rows per bag."""
    idx, table = _inputs("embedding", {"rows": 10, "dim": 4, "num_indices": 7})
    torch.testing.assert_close(R.embedding(idx, table), table[idx])
    idx, table, offsets = _inputs("embedding_bag", {"rows": 10, "dim": 4, "batch": 3, "pooling": 2})
    torch.testing.assert_close(R.embedding_bag(idx, table, offsets), table[idx].view(3, 2, 4).sum(1))


def test_copy_references_copy() -> None:
    """copy fills dst with src; clone returns an equal new tensor."""
    dst, src = _inputs("copy", {"bytes": 1024})
    assert R.copy(dst, src) is dst and torch.equal(dst, src)
    out = R.clone(dst, src)
    assert torch.equal(out, src) and out.data_ptr() != src.data_ptr()


def test_adamw_matches_torch_optim() -> None:
    """The fused AdamW reference equals torch.optim.AdamW at step 10 with the same state."""
    params, grads, m, v, steps = _inputs("adamw", {"numel": 12, "num_tensors": 2})
    ref = [p.clone().requires_grad_(True) for p in params]
    opt = torch.optim.AdamW(ref, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, foreach=False)
    for p, g, mm, vv in zip(ref, grads, m, v, strict=True):
        p.grad = g.clone()
        opt.state[p] = {"step": torch.tensor(9.0), "exp_avg": mm.clone(), "exp_avg_sq": vv.clone()}
    opt.step()
    R.adamw(params, grads, m, v, steps)
    for got, want in zip(params, ref, strict=True):
        torch.testing.assert_close(got, want.detach())


def test_tf32_mode_is_restored() -> None:
    """matmul_precision sets tf32 only inside the block."""
    before = torch.backends.cuda.matmul.allow_tf32
    with R.matmul_precision("tf32"):
        assert torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_collect_measures_and_round_trips(tmp_path: Path) -> None:
    """collect times tiny points on CPU (positive, ordered) and the JSON file reads back the same points."""
    points = [BenchPoint("gemm", "gemm", {"m": 32, "n": 32, "k": 32}, "fp32"),
              BenchPoint("copy", "copy", {"bytes": 65536}, "fp32"),
              BenchPoint("gemm", "scaled_mm", {"m": 32, "n": 32, "k": 32}, "fp8")]  # skipped on CPU
    got = collect("cpu", True, progress=False, points=points)
    assert [p.name for p in got] == ["gemm", "copy"]
    for p in got:
        assert 0 < p.p20_s <= p.median_s <= p.p80_s and p.num_reps >= 5
    gemm, copy = got
    assert (gemm.matrix_flops, gemm.bytes_read, gemm.bytes_written) == (2 * 32**3, 2 * 32 * 32 * 4, 32 * 32 * 4)
    assert (copy.bytes_read, copy.bytes_written) == (65536, 65536)
    write_points_json(got, {"key": "cpu-test"}, tmp_path / "raw.json")
    fingerprint, back = read_points_json(tmp_path / "raw.json")
    assert fingerprint == {"key": "cpu-test"} and back == got
    assert json.load(open(tmp_path / "raw.json"))["schema_version"] == 1
    assert isinstance(back[0], CalPoint)


def test_cpu_points_carry_the_pooled_mean_and_old_files_still_load(tmp_path: Path) -> None:
    """On a CPU every point keeps the mean of all its repetitions over all passes (what the fit uses); a points
    file written before that field existed reads back with the median as the fitted time."""
    got = collect("cpu", True, progress=False, points=[BenchPoint("gemm", "gemm", {"m": 64, "n": 64, "k": 64}, "fp32")],
                  passes=2)
    p = got[0]
    assert p.mean_s is not None and p.mean_s > 0 and p.time_s == p.mean_s
    old = {k: v for k, v in p.as_dict().items() if k != "mean_s"}
    (tmp_path / "old.json").write_text(json.dumps({"schema_version": 1, "fingerprint": {}, "points": [old]}))
    _, back = read_points_json(tmp_path / "old.json")
    assert back[0].mean_s is None and back[0].time_s == back[0].median_s


def test_flushed_points_teach_no_cache_speed_up() -> None:
    """GPU points are timed with the L2 flushed before every repetition: fitted as such, no point is in cache,
    so the cache speed-up stays at 1 instead of soaking up small-kernel inefficiency."""
    from emulator.calibrate.fit import fit_points
    from emulator.hardware import load_device

    def point(m: int, seconds: float) -> CalPoint:
        flops = 2.0 * m**3
        return CalPoint(family="gemm", name="gemm", params={"m": m, "n": m, "k": m}, dtype="bf16", matrix_flops=flops,
                        vector_flops=0.0, bytes_read=6.0 * m * m, bytes_written=2.0 * m * m, median_s=seconds,
                        p20_s=seconds, p80_s=seconds, num_reps=10)

    # Small products far slower than their FLOPs: a warm-cache reading would explain them with a speed-up < 1.
    points = [point(m, s) for m, s in ((256, 8e-6), (512, 1.2e-5), (1024, 3e-5), (2048, 4e-5), (4096, 2e-4),
                                        (8192, 1.5e-3))]
    fitted = fit_points(points, load_device("h200-sxm"), flushed=True)
    assert fitted["gemm"]["cache_speedup"] == 1.0
