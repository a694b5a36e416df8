"""A power limit below the TDP (emulator/engine/power_limit.py): the clock share it leaves, the rates that follow the
clock and those that do not, and the limit as a device, system and scenario setting."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from emulator.engine.calibration import efficiency_for
from emulator.engine.power_limit import DVFS_EXPONENT, MEASURED_EXPONENT, clock_share, power_limited
from emulator.engine.roofline import kernel_time
from emulator.engine.tracer import trace_callable
from emulator.errors import EmulatorError
from emulator.hardware import load_device, load_system
from emulator.predict import predict_json
from emulator.published import load_cases
from emulator.scenario import load_scenario
from emulator.serving.energy import full_load_w

SCENARIO = """model: llama3-8b
hardware: {{device: b200, {extra}num_devices: 1}}
training: {{seq_len: 2048, global_batch_size: 1, precision: bf16}}
"""


def _scenario(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.format(extra=extra))
    return path


def _calls() -> tuple[object, object]:
    """A large bf16 GEMM (compute bound) and a large copy (memory bound), as traced."""
    a = torch.empty(8192, 8192, device="meta", dtype=torch.bfloat16)
    gemm = next(c for c in trace_callable(torch.matmul, a, a).calls if c.family == "gemm")
    copy = next(c for c in trace_callable(lambda x: x.clone(), a).calls if c.family == "copy")
    return gemm, copy


def test_clock_share_is_the_cube_root_of_the_power_ratio() -> None:
    """At 700 W of a 1,000 W TDP the clock share is 0.7^(1/3); without a limit it is 1 and the table is untouched."""
    b200 = load_device("b200")
    assert clock_share(b200) == 1.0
    table = efficiency_for(b200)
    assert power_limited(table, b200) is table
    capped = b200.with_power_limit(700.0, "test")
    assert clock_share(capped) == pytest.approx(0.7 ** (1 / 3))
    assert capped.max_power_w == 700.0 and b200.max_power_w == b200.power.tdp_w


def test_a_limit_slows_math_by_the_clock_share_and_leaves_memory_alone() -> None:
    """Under a 700 W limit a large GEMM takes 1/share as long, a large copy as long as before; the table names the
    limit and the share, and its band widens by the gap between the cube root and the measured exponent."""
    b200 = load_device("b200")
    capped = b200.with_power_limit(700.0, "test")
    free, limited = efficiency_for(b200), efficiency_for(capped)
    gemm, copy = _calls()
    share = clock_share(capped)
    assert kernel_time(gemm, capped, limited).t_math_s == pytest.approx(kernel_time(gemm, b200, free).t_math_s / share)
    assert kernel_time(copy, capped, limited).t_mem_s == pytest.approx(kernel_time(copy, b200, free).t_mem_s)
    assert (limited.power_limit_w, limited.clock_share) == (700.0, pytest.approx(share))
    widen = abs(0.7 ** MEASURED_EXPONENT - share)
    assert limited.get("gemm").error == pytest.approx(free.get("gemm").error + widen)
    assert "power limit 700 W" in limited.basis


def test_the_measured_exponent_is_what_the_published_same_silicon_pairs_show() -> None:
    """A100 PCIe (300 W) against SXM (400 W) and GB200 (1,200 W) against B200 (1,000 W): their best matmul rates move
    as power^0.24 (MEASURED_EXPONENT), flatter than the cube root the model uses."""
    mamf = {c["id"]: c["value"] for c in load_cases("kernels")}
    pairs = [(mamf["kernel-mamf-bf16-a100-pcie"] / mamf["kernel-mamf-bf16-a100-sxm"], 300 / 400),
             (mamf["kernel-mamf-bf16-gb200"] / mamf["kernel-mamf-bf16-b200-sxm"], 1200 / 1000)]
    for rate, power in pairs:
        assert math.log(rate) / math.log(power) == pytest.approx(MEASURED_EXPONENT, abs=0.01)
        assert MEASURED_EXPONENT < DVFS_EXPONENT


def test_a_maxq_system_runs_its_devices_under_its_limit(tmp_path: Path) -> None:
    """hgx-b200-700w carries a sourced 700 W limit to its B200s: a scenario on it predicts slower, says so under
    `efficiency` and in its notes, and draws at most 700 W per device at full load."""
    system = load_system("hgx-b200-700w")
    assert system.device.power_limit_w == 700.0 and load_system("hgx-b200").device.power_limit_w is None
    assert full_load_w(system.device) == 700.0
    free = predict_json(load_scenario(_scenario(tmp_path, "system: hgx-b200, ")))
    capped = predict_json(load_scenario(_scenario(tmp_path, "system: hgx-b200-700w, ")))
    assert capped["step_time_s"] > free["step_time_s"]  # type: ignore[operator]
    assert capped["efficiency"]["power_limit_w"] == 700.0  # type: ignore[index]
    assert capped["efficiency"]["clock_share"] == pytest.approx(0.7 ** (1 / 3))  # type: ignore[index]
    assert any("power limit 700 W" in note for note in capped["notes"])  # type: ignore[union-attr]
    assert free["efficiency"]["power_limit_w"] is None  # type: ignore[index]


def test_scenario_power_limit_applies_and_bad_values_name_the_field(tmp_path: Path) -> None:
    """`hardware.power_limit_w` limits the scenario's device (and its system's); a limit above the TDP or below the
    board's lowest settable limit is an error naming the file, the field and the fix."""
    s = load_scenario(_scenario(tmp_path, "system: hgx-b200, power_limit_w: 600, "))
    assert s.device.power_limit_w == 600.0 and s.system is not None and s.system.device.power_limit_w == 600.0
    for bad in ("1200", "150"):
        path = _scenario(tmp_path, f"power_limit_w: {bad}, ")
        with pytest.raises(EmulatorError) as error:
            load_scenario(path)
        assert error.value.field == "hardware.power_limit_w" and error.value.file == str(path)
        assert "200 W to its 1000 W TDP" in str(error.value) and "Fix" in str(error.value)
