"""The spec default efficiencies, checked against published kernel measurements of the shipped devices."""

from __future__ import annotations

import pytest

from emulator.engine.efficiency import SPEC_DEFAULTS
from emulator.hardware import load_device
from emulator.published import load_cases, profile_name

MAMF = [c for c in load_cases("kernels")
        if c["id"].startswith("kernel-mamf-") and profile_name(c["hardware"]["device"])]
STREAM = [c for c in load_cases("kernels") if c["id"].startswith("kernel-hbm-stream-")]


@pytest.mark.parametrize("case", [c for c in MAMF if not str(profile_name(c["hardware"]["device"])).startswith("mi")],
                         ids=lambda c: c["id"])
def test_gemm_default_matches_published_best_matmul_on_nvidia(case: dict) -> None:
    """Default GEMM efficiency times the datasheet peak lands within 20% of the published best matmul rate."""
    device = load_device(profile_name(case["hardware"]["device"]))  # type: ignore[arg-type]
    dtype = "fp8" if "-fp8-" in case["id"] else "bf16"
    predicted = SPEC_DEFAULTS.get("gemm").math * device.matrix_peak(dtype)
    assert predicted == pytest.approx(case["value"] * 1e12, rel=0.20)


@pytest.mark.parametrize("case", STREAM, ids=lambda c: c["id"])
def test_stream_default_matches_published_bandwidth(case: dict) -> None:
    """Default copy efficiency times the datasheet bandwidth lands within 10% of published STREAM results."""
    device = load_device(profile_name(case["hardware"]["device"]))  # type: ignore[arg-type]
    predicted = SPEC_DEFAULTS.get("copy").memory * device.memory_bandwidth_bytes_per_s
    assert predicted == pytest.approx(case["value"] * 1e12, rel=0.10)


def test_every_family_has_a_default() -> None:
    """Every kernel family that takes time has an explicit default entry."""
    from kernels.registry import FAMILIES

    for family in FAMILIES:
        if family != "view":
            assert family in SPEC_DEFAULTS.families
