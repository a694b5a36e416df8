"""The transfer model (emulator/engine/transfer.py): a measured sibling's shape response, its ceilings moved to the
target chip's own published achievable rates, and the achievable figures themselves (hw_profiles/devices)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from emulator.engine.calibration import (
    CROSS_FAMILY_TRANSFER_ERROR,
    TRANSFER_ERROR,
    efficiency_for,
    read_calibration,
    shipped_dir,
    table_from,
)
from emulator.engine.efficiency import SPEC_DEFAULTS
from emulator.engine.roofline import kernel_time
from emulator.engine.tracer import trace_callable
from emulator.engine.transfer import BUILT_FROM, GEMM_FAMILIES, ceilings, transferred
from emulator.hardware import list_devices, load_device
from emulator.published import load_cases
from emulator.validation.validate import replay

H200_CAL = shipped_dir() / "cuda-nvidia-h200-sm90.json"
SHAPE_RESPONSE = ("tile", "half_dim", "overhead_s", "cache_speedup", "vector")


def _only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *files: Path) -> None:
    """Make `files` the only shipped calibrations."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    for f in files:
        (folder / f.name).write_text(f.read_text())
    monkeypatch.setattr("emulator.engine.calibration.shipped_dir", lambda: folder)


def _gemm_rate(device: str, n: int) -> float:
    """Predicted FLOP/s of one n^3 bf16 matmul on a shipped device, with its efficiency table."""
    a = torch.empty(n, n, device="meta", dtype=torch.bfloat16)
    call = next(c for c in trace_callable(torch.matmul, a, a).calls if c.family == "gemm")
    profile = load_device(device)
    return 2 * n**3 / kernel_time(call, profile, efficiency_for(profile)).time_s


def test_blackwell_takes_the_h200_shape_response_with_its_own_ceilings() -> None:
    """B200 has no calibration of its family: it takes the H200's, every family's math moved by the ratio of the two
    chips' achievable/peak matmul fractions (fp8 GEMMs by fp8's, attention by the fused-attention ones), its shape
    response unchanged, its band widened by the cross-family transfer error."""
    h200, b200 = efficiency_for(load_device("h200-sxm")), efficiency_for(load_device("b200"))
    assert (h200.provenance, b200.provenance) == ("calibrated", "transferred")
    mine, sibling = ceilings(load_device("b200")), ceilings(load_device("h200-sxm"))
    assert mine.attention is not None and sibling.attention is not None
    for family, own in h200.families.items():
        dtype = "fp8" if family == "gemm.fp8" else "bf16"
        ratio = (mine.attention / sibling.attention if family == "attention"
                 else mine.matrix[dtype] / sibling.matrix[dtype])
        moved = b200.families[family]
        assert moved.math == pytest.approx(min(own.math * ratio, 1.0)), family
        stream = (mine.stream[family.partition(".")[2] or "bf16"] / sibling.stream[family.partition(".")[2] or "bf16"]
                  if family.partition(".")[0] in GEMM_FAMILIES else 1.0)  # B200 publishes no copy bandwidth: 1
        assert moved.memory == pytest.approx(min(own.memory * stream, 1.0)), family
        assert moved.error == pytest.approx(own.error + CROSS_FAMILY_TRANSFER_ERROR), family
        for name in SHAPE_RESPONSE:
            assert getattr(moved, name) == getattr(own, name), (family, name)
    assert "b200 publishes no STREAM-style copy bandwidth" in b200.basis and "h200-sxm" in b200.basis


def _fp4_rate(device: str, n: int, precision: str) -> float:
    """Predicted FLOP/s of one n^3 matmul run in `precision` on a shipped device."""
    a = torch.empty(n, n, device="meta", dtype=torch.bfloat16)
    call = next(c for c in trace_callable(torch.matmul, a, a).calls if c.family == "gemm")
    profile = load_device(device)
    return 2 * n**3 / kernel_time(call, profile, efficiency_for(profile), precision).time_s


def test_fp4_on_blackwell_is_built_from_the_siblings_fp8_gemms() -> None:
    """The H200 has no fp4 units, so its table has no fp4 GEMMs: B200 and GB200 get a `gemm.fp4` family built from
    the H200's `gemm.fp8` (its shape response), math moved by the target's fp4 fraction over the H200's fp8
    fraction, rather than falling to the 16-bit family at bf16's ratio."""
    h200 = efficiency_for(load_device("h200-sxm"))
    assert "gemm.fp4" not in h200.families and BUILT_FROM == {"fp4": "fp8"}
    sibling = ceilings(load_device("h200-sxm"))
    for name in ("b200", "gb200", "b300", "gb300"):
        table, mine = efficiency_for(load_device(name)), ceilings(load_device(name))
        built, base = table.families["gemm.fp4"], h200.families["gemm.fp8"]
        assert built.math == pytest.approx(base.math * mine.matrix["fp4"] / sibling.matrix["fp8"]), name
        assert built.math < table.get("gemm").math  # about half the fp4 peak against three quarters of bf16's
        for field in SHAPE_RESPONSE:
            assert getattr(built, field) == getattr(base, field), (name, field)
        assert "fp4 matmul built from the fp8 GEMMs" in table.basis and "fp4 take" not in table.basis


def test_gemm_memory_ceilings_move_by_each_dtypes_one_row_streaming_rate() -> None:
    """The Blackwell chips publish no copy bandwidth but do publish the rate their one-row GEMMs stream weights at,
    per dtype: each GEMM family's memory ceiling moves by its dtype's streaming fraction over the H200's (fp4, which
    the H200 has no units for, over the H200's fp8, as its family is built), every other family by the copy ratio
    (1 here): NVFP4's one-row GEMMs reach a smaller share of bandwidth than the H200's fp8 ones."""
    h200 = efficiency_for(load_device("h200-sxm"))
    sibling = ceilings(load_device("h200-sxm"))
    for name in ("b200", "gb200", "b300", "gb300"):
        table, mine = efficiency_for(load_device(name)), ceilings(load_device(name))
        assert set(mine.stream) == {"bf16", "fp8", "fp4"}, name
        assert table.get("gemm").memory == pytest.approx(h200.get("gemm").memory * mine.stream["bf16"]
                                                         / sibling.stream["bf16"])
        assert table.get("gemm", "fp8").memory == pytest.approx(h200.get("gemm", "fp8").memory * mine.stream["fp8"]
                                                                / sibling.stream["fp8"])
        ratio = mine.stream["fp4"] / sibling.stream["fp8"]
        assert ratio < 0.9, name  # NVFP4's one-row GEMMs stream at 66-73% of bandwidth, the H200's fp8 at 85%
        assert table.families["gemm.fp4"].memory == pytest.approx(h200.get("gemm", "fp8").memory * ratio)
        for family in ("attention", "copy", "elementwise", "norm"):
            assert table.get(family).memory == pytest.approx(h200.get(family).memory), (name, family)
        assert "fp4 GEMM streaming x" in table.basis and "of bandwidth at one row" in table.basis


def test_a_chip_without_streaming_figures_moves_its_gemms_by_the_copy_ratio() -> None:
    """Without a one-row streaming figure on both chips, a GEMM family's memory ceiling moves as every other
    family's does (MI300X: its BabelStream copy; GH200: none, ratio 1)."""
    h200 = efficiency_for(load_device("h200-sxm"))
    for name in ("mi300x", "gh200"):
        device = load_device(name)
        assert device.achievable is not None and not device.achievable.gemm_stream_bytes_per_s
        table = efficiency_for(device)
        copy = table.get("copy").memory / h200.get("copy").memory
        assert table.get("gemm").memory == pytest.approx(min(h200.get("gemm").memory * copy, 1.0)), name
        assert "GEMM streaming" not in table.basis


def test_attention_moves_by_the_measured_fused_attention_ceilings_where_both_chips_publish_them() -> None:
    """Blackwell Ultra doubles the exponential units its softmax waits on at the tensor peaks of Blackwell: the
    attention family moves by each chip's measured fused-attention fraction of its bf16 peak over the H200's, not by
    the bf16 GEMM ratio, its shape response unchanged; a chip without the figure keeps the bf16 ratio."""
    h200 = efficiency_for(load_device("h200-sxm"))
    sibling = ceilings(load_device("h200-sxm"))
    ratios = {}
    for name in ("b200", "gb200", "b300", "gb300"):
        table, mine = efficiency_for(load_device(name)), ceilings(load_device(name))
        assert mine.attention is not None and sibling.attention is not None
        ratios[name] = mine.attention / sibling.attention
        assert table.get("attention").math == pytest.approx(h200.get("attention").math * ratios[name]), name
        bf16 = mine.matrix["bf16"] / sibling.matrix["bf16"]
        assert table.get("gemm").math == pytest.approx(h200.get("gemm").math * bf16)
        for field in SHAPE_RESPONSE:
            assert getattr(table.get("attention"), field) == getattr(h200.get("attention"), field), (name, field)
        assert "in measured fused attention" in table.basis
    assert ratios["b300"] > 1.1 * ratios["b200"] and ratios["gb300"] > 1.1 * ratios["gb200"]
    without = dataclasses.replace(load_device("b200"), achievable=dataclasses.replace(
        load_device("b200").achievable, attention_flops_per_s=None))  # type: ignore[arg-type]
    mine = ceilings(without)
    moved = transferred(h200, without, load_device("h200-sxm"), "test")
    assert moved.get("attention").math == pytest.approx(
        h200.get("attention").math * mine.matrix["bf16"] / sibling.matrix["bf16"])


def test_a_large_fp4_gemm_sits_at_the_share_of_its_achievable_rate_that_fp8_does_on_the_sibling() -> None:
    """An 8192^3 GEMM in fp4 on B200 is predicted at the share of B200's published fp4 rate that the H200's fp8 one
    reaches of its fp8 rate (within wave quantisation on 148 against 132 units)."""
    reference = _fp4_rate("h200-sxm", 8192, "fp8") / load_device("h200-sxm").achievable.matrix_flops_per_s["fp8"]  # type: ignore[union-attr]
    mine = _fp4_rate("b200", 8192, "fp4") / load_device("b200").achievable.matrix_flops_per_s["fp4"]  # type: ignore[union-attr]
    assert mine == pytest.approx(reference, rel=0.03)


def test_without_an_fp4_figure_fp4_keeps_the_16_bit_fallback() -> None:
    """A chip with fp4 units but no published fp4 rate builds no fp4 family: its fp4 GEMMs take the 16-bit `gemm`
    family at bf16's ratio, and the basis says so."""
    b200 = load_device("b200")
    assert b200.achievable is not None
    achievable = dataclasses.replace(b200.achievable, matrix_flops_per_s={
        d: r for d, r in b200.achievable.matrix_flops_per_s.items() if d != "fp4"})
    sources = {k: v for k, v in b200.sources.items() if k != "achievable.matrix_flops_per_s.fp4"}
    bare = dataclasses.replace(b200, achievable=achievable, sources=sources)
    table = transferred(efficiency_for(load_device("h200-sxm")), bare, load_device("h200-sxm"), "test")
    assert "gemm.fp4" not in table.families and table.get("gemm", "fp4") is table.families["gemm"]
    assert "fp4 take the bf16 ratio" in table.basis


def test_a_sibling_with_its_own_fp4_gemms_is_moved_not_rebuilt() -> None:
    """A sibling table that has fp4 GEMMs of its own (a Blackwell calibration) moves them by the two chips' fp4
    fractions like any other family."""
    gb200, b200 = load_device("gb200"), load_device("b200")
    base = efficiency_for(b200)
    assert "gemm.fp4" in base.families
    table = transferred(base, gb200, b200, "test")
    ratio = ceilings(gb200).matrix["fp4"] / ceilings(b200).matrix["fp4"]
    assert table.families["gemm.fp4"].math == pytest.approx(min(base.families["gemm.fp4"].math * ratio, 1.0))


def test_large_gemms_sit_at_the_same_share_of_each_chips_achievable_rate() -> None:
    """An 8192^3 bf16 GEMM is predicted at the same fraction of the chip's published MAMF on B200, GB200 and MI300X
    (transferred) as on the H200 whose calibration they take (within wave quantisation on other unit counts)."""
    def share(device: str) -> float:
        return _gemm_rate(device, 8192) / load_device(device).achievable.matrix_flops_per_s["bf16"]  # type: ignore[union-attr]

    reference = share("h200-sxm")
    for device in ("b200", "gb200", "mi300x"):
        assert share(device) == pytest.approx(reference, rel=0.03), device


def test_gh200_takes_a_hopper_calibration_moved_to_its_900_w_matmul_rates() -> None:
    """The GH200's GPU has no calibration of its own: it takes its family's (Hopper) with the GEMM ceilings moved by
    its published MAMF at 900 W over the sibling's (bf16 828.6 of 989.4, fp8 1,535 of 1,979), and its memory as the
    sibling's fraction of its own datasheet bandwidth (it publishes no copy figure); the basis says so."""
    gh200, h200 = efficiency_for(load_device("gh200")), efficiency_for(load_device("h200-sxm"))
    assert gh200.provenance == "transferred" and "same family" in gh200.basis
    assert "gh200 publishes no STREAM-style copy bandwidth" in gh200.basis
    moved = {d: ceilings(load_device("gh200")).matrix[d] / ceilings(load_device("h200-sxm")).matrix[d]
             for d in ("bf16", "fp8")}
    assert moved["bf16"] > 1 and moved["fp8"] > 1  # the 900 W module sustains more of the same peaks than a 700 W SXM
    assert gh200.get("gemm").math == pytest.approx(min(h200.get("gemm").math * moved["bf16"], 1.0))
    assert gh200.get("gemm", "fp8").math == pytest.approx(min(h200.get("gemm", "fp8").math * moved["fp8"], 1.0))
    assert gh200.get("copy").memory == pytest.approx(h200.get("copy").memory)


def test_memory_ceilings_move_with_published_copy_bandwidth() -> None:
    """MI300X publishes a BabelStream copy: its memory efficiencies are the H200's times the ratio of the two chips'
    copy/bandwidth fractions."""
    h200, mi300x = efficiency_for(load_device("h200-sxm")), efficiency_for(load_device("mi300x"))
    ratio = ceilings(load_device("mi300x")).memory / ceilings(load_device("h200-sxm")).memory  # type: ignore[operator]
    assert ratio < 1
    for family, own in h200.families.items():
        assert mi300x.families[family].memory == pytest.approx(min(own.memory * ratio, 1.0)), family


def test_a_chip_moved_to_its_own_ceilings_is_unchanged() -> None:
    """Transferring a calibration to the chip it was measured on moves nothing (every ratio is 1)."""
    data = read_calibration(H200_CAL)
    table = table_from(data, str(H200_CAL), "transferred", TRANSFER_ERROR, keep_peaks=False)
    h200 = load_device("h200-sxm")
    same = transferred(table, h200, h200, "itself")
    for family, eff in table.families.items():
        assert same.families[family] == eff, family


def test_same_family_sibling_first_and_chips_without_figures_keep_todays_behaviour(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With only the H200 calibration, the H100 takes it (same family, band +TRANSFER_ERROR, ceilings moved: bf16 x1,
    fp8 and memory by their published ratios); L40S, which publishes no achievable rates and has no calibrated
    sibling, keeps the spec defaults and says why."""
    _only(monkeypatch, tmp_path, H200_CAL)
    h100, h200 = efficiency_for(load_device("h100-sxm")), efficiency_for(load_device("h200-sxm"))
    assert h100.provenance == "transferred" and "same family" in h100.basis
    assert h100.get("gemm").math == pytest.approx(h200.get("gemm").math)  # both publish the same bf16 MAMF
    assert h100.get("gemm").error == pytest.approx(h200.get("gemm").error + TRANSFER_ERROR)
    assert h100.get("copy").memory > h200.get("copy").memory  # H100 copies at 0.866 of its bandwidth, H200 at 0.835
    l40s = efficiency_for(load_device("l40s"))
    assert l40s.provenance == "spec" and l40s.families == SPEC_DEFAULTS.families
    assert "no published achievable rates" in l40s.basis


def test_without_any_calibration_the_spec_defaults_move_to_the_chips_ceilings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no calibration on disk, a chip with achievable rates gets the spec defaults moved to them: GEMM math at
    its own MAMF fraction, copies at its own STREAM fraction."""
    _only(monkeypatch, tmp_path)
    mi300x = load_device("mi300x")
    table = efficiency_for(mi300x)
    assert table.provenance == "spec"
    assert table.get("gemm").math == pytest.approx(ceilings(mi300x).matrix["bf16"])
    assert table.get("copy").memory == pytest.approx(ceilings(mi300x).memory)


def test_the_moved_h200_calibration_predicts_the_h100s_measured_steps() -> None:
    """The H100's own measured whole-model steps (never fitted), predicted from the H200 calibration moved to the
    H100's achievable rates, stay within the GPU target: 10% median, 25% max |error|."""
    data = read_calibration(H200_CAL)
    runs = shipped_dir() / "runs" / "h100-2026-11-26" / "validate.json"
    table = transferred(table_from(data, str(H200_CAL), "transferred", TRANSFER_ERROR, keep_peaks=False),
                        load_device("h100-sxm"), load_device("h200-sxm"), "same family")
    out = replay(json.loads(runs.read_text())["cases"], load_device("h100-sxm"), table)
    assert out["summary"]["median_abs_error"] <= 0.10, out
    assert out["summary"]["max_abs_error"] <= 0.25, out


def test_achievable_figures_quote_the_shipped_published_cases() -> None:
    """Every achievable figure a profile cites from published_kernels.yaml is that case's value (one number, one
    place of truth: a change to either file fails here)."""
    cases = {c["id"]: c for c in load_cases("kernels")}
    unit = {"TFLOP/s": 1e12, "TB/s": 1e12}
    checked = 0
    for name in list_devices():
        device = load_device(name)
        for key, text in device.sources.items():
            if not key.startswith("achievable.") or not text.startswith("published_kernels.yaml "):
                continue
            case = cases[text.split()[1].rstrip(":")]
            a = device.achievable
            assert a is not None
            value = a.memory_bytes_per_s if key == "achievable.memory_bytes_per_s" else \
                a.attention_flops_per_s if key == "achievable.attention_flops_per_s" else \
                a.gemm_stream_bytes_per_s[key.rsplit(".", 1)[1]] if ".gemm_stream_bytes_per_s." in key else \
                a.matrix_flops_per_s[key.rsplit(".", 1)[1]]
            assert value == pytest.approx(case["value"] * unit[case["metric"]["unit"]]), (name, key)
            checked += 1
    assert checked >= 34


@pytest.mark.parametrize("chip, sibling", [("gb300", "gb200"), ("b300", "b200")])
@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
def test_a_chip_without_a_mamf_row_takes_its_siblings_rate_times_their_measured_ratio(chip: str, sibling: str,
                                                                                        dtype: str) -> None:
    """The Blackwell Ultra chips publish no best-matmul (MAMF) row: their bf16 and fp8 rates are the sibling's MAMF row
    times the median ratio of the two chips' rates over the large shapes one harness measured on both."""
    cases = {c["id"]: float(c["value"]) for c in load_cases("kernels")}
    mamf = cases[f"kernel-mamf-{dtype}-{sibling}" + ("-sxm" if sibling == "b200" else "")]
    ratio = cases[f"kernel-aic-ratio-{dtype}-{chip}-{sibling}"]
    achievable = load_device(chip).achievable
    assert achievable is not None
    assert achievable.matrix_flops_per_s[dtype] == pytest.approx(mamf * ratio * 1e12, rel=1e-3)
    assert ratio > 1.0  # the newer chip gains on large GEMMs
