"""Specs for the hardware profiles in hw_profiles/ and their loader, emulator/hardware.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.errors import EmulatorError
from emulator.hardware import (
    DeviceProfile,
    Site,
    SystemProfile,
    list_devices,
    list_sites,
    list_systems,
    load_device,
    load_site,
    load_system,
    profile_summary,
)

DEVICES = ["a100-sxm", "h100-sxm", "h200-sxm", "gh200", "b200", "gb200", "b300", "gb300", "l40s", "mi300x", "mi325x",
           "mi355x", "mtia-v2"]
SYSTEMS = ["hgx-a100", "hgx-h100", "hgx-h200", "gh200-nvl2", "hgx-b200", "hgx-b200-700w", "gb200-nvl72", "hgx-b300",
           "gb300-nvl72", "l40s-node", "mi300x-node", "mi325x-node", "mi355x-node", "mtia-rack"]


def _numbers(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted path -> value for every number in a profile summary (memory tiers addressed by name)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if key in ("sources", "device", "profile_type"):
            continue
        if isinstance(value, dict):
            out |= _numbers(value, path)
        elif isinstance(value, list):
            for tier in value:
                out |= _numbers({k: v for k, v in tier.items() if k != "name"}, f"{path}.{tier['name']}")
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            out[path] = value
    return out


def _raw(profile: Any) -> dict[str, Any]:
    """The YAML document for a loaded profile (its summary without the type tag)."""
    data = profile_summary(profile)
    data.pop("profile_type")
    return data


def _write(tmp_path: Path, data: Any, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_shipped_device_system_and_site_loads() -> None:
    """Every shipped device and system, and the default site, load."""
    assert set(DEVICES) <= set(list_devices())
    assert set(SYSTEMS) <= set(list_systems())
    assert "default" in list_sites()
    for name in list_devices():
        assert load_device(name).name == name
    for name in list_systems():
        system = load_system(name)
        assert system.name == name and isinstance(system.device, DeviceProfile)
    site = load_site()
    assert (site.pue, site.electricity_usd_per_kwh, site.amortization_years) == (1.3, 0.08, 5)


@pytest.mark.parametrize(
    "profile",
    [*(load_device(d) for d in DEVICES), *(load_system(s) for s in SYSTEMS), load_site()],
    ids=lambda p: p.name,
)
def test_every_number_has_a_nonempty_source(profile: Any) -> None:
    """Each non-null number in every shipped profile is cited under `sources` by its dotted path."""
    numbers = _numbers(profile_summary(profile))
    required = {DeviceProfile: {"power.tdp_w", "power.idle_w", "usable_memory_bytes", "launch_overhead_s",
                                "vector_flops_per_s.fp32", "price.capex_usd"},
                SystemProfile: {"devices_per_node", "scale_up.bandwidth_bytes_per_s", "scale_out.nics_per_node",
                                "scale_out.nic_bandwidth_bytes_per_s", "power.host_w"},
                Site: {"pue", "electricity_usd_per_kwh", "amortization_years"}}[type(profile)]
    assert required <= set(numbers)
    for path, value in numbers.items():
        if value is not None:
            assert profile.sources.get(path, "").strip(), f"{profile.name}: {path} has no source"


@pytest.mark.parametrize(
    ("name", "bf16"),
    [
        ("a100-sxm", 312e12),
        ("h100-sxm", 989e12),
        ("h200-sxm", 989e12),
        ("b200", 2.25e15),
        ("gb200", 2.5e15),
        ("mi300x", 1.307e15),
        ("mi325x", 1.307e15),
        ("mi355x", 2.5166e15),  # 256 CUs x 4,096 FLOP x 2.4 GHz (the MI350X: 2,306.9 at 2.2 GHz)
        ("mtia-v2", 177e12),
        ("l40s", 362.05e12),
    ],
)
def test_dense_bf16_matrix_peaks_match_the_datasheets(name: str, bf16: float) -> None:
    """Dense bf16 matrix peaks agree with reference/datasheets.md within 0.1%."""
    assert load_device(name).matrix_peak("bf16") == pytest.approx(bf16, rel=1e-3)


def test_fp4_only_on_blackwell_and_cdna4() -> None:
    """Only the Blackwell chips and the CDNA4 MI355X (MXFP4) list an fp4 peak; every other chip simply lacks the
    dtype."""
    assert {d for d in DEVICES if load_device(d).has_dtype("fp4")} == {"b200", "gb200", "b300", "gb300", "mi355x"}
    assert not load_device("a100-sxm").has_dtype("fp8") and load_device("h100-sxm").has_dtype("fp8")


def test_mtia_has_an_sram_tier_and_lpddr_main_memory() -> None:
    """MTIA v2 has a software-managed SRAM tier with a bandwidth and 204.8 GB/s LPDDR5 main memory."""
    mtia = load_device("mtia-v2")
    sram = next(tier for tier in mtia.memory if tier.kind == "sram")
    assert sram.capacity_bytes == 256e6 and sram.bandwidth_bytes_per_s
    assert mtia.main_memory.bandwidth_bytes_per_s == 204.8e9 and mtia.memory_bytes == 128e9
    assert mtia.kind == "asic" and mtia.matrix_peak("int8") == 354e12 and mtia.vector_peak("fp32") == 2.76e12


def test_families_group_devices_for_calibration_transfer() -> None:
    """h200 shares h100's family, gb200 shares b200's, and the families differ across generations."""
    assert load_device("h200-sxm").family == load_device("h100-sxm").family == "hopper"
    assert load_device("gb200").family == load_device("b200").family == "blackwell"
    assert load_device("a100-sxm").family != load_device("h100-sxm").family


def test_peak_helpers_fall_back_or_explain() -> None:
    """vector_peak falls back to fp32 for a dtype the vector unit lacks; matrix_peak names what the chip has."""
    b200 = load_device("b200")
    assert b200.vector_peak("bf16") == b200.vector_flops_per_s["fp32"]
    assert load_device("h100-sxm").vector_peak("bf16") == pytest.approx(133.8e12)
    with pytest.raises(EmulatorError, match=r"a100-sxm.*fp8.*bf16") as error:
        load_device("a100-sxm").matrix_peak("fp8")
    assert error.value.field == "matrix_flops_per_s.fp8"
    with pytest.raises(EmulatorError, match="int4"):
        b200.vector_peak("int4")


def test_memory_and_links_are_si_per_direction() -> None:
    """Main memory is the marked tier, usable bytes come from the runtime, and link rates are per direction."""
    h100 = load_device("h100-sxm")
    assert h100.main_memory.name == "hbm3" and h100.memory_bandwidth_bytes_per_s == 3.35e12
    assert h100.memory_bytes == 81_559 * 2**20
    assert h100.links.scale_up_bytes_per_s == 450e9 and load_device("l40s").links.scale_up_bytes_per_s is None
    nvl72 = load_system("gb200-nvl72")
    assert (nvl72.devices_per_node, nvl72.scale_up.domain_size, nvl72.scale_out.nics_per_node) == (4, 72, 4)
    assert load_system("mi300x-node").scale_up.bandwidth_bytes_per_s == 448e9


def test_a_board_variant_carries_its_own_main_memory() -> None:
    """H100 with 96 GB of HBM2e at 2.4 TB/s: the same chip, its main tier, allocatable bytes and copy rate scaled,
    the variant's figures sourced and told apart from the 80 GB board (hash, equality, name shown)."""
    h100 = load_device("h100-sxm")
    v = h100.with_main_memory(96e9, 2.4e12, "a test's source")
    assert (v.name, v.matrix_flops_per_s, v.power) == (h100.name, h100.matrix_flops_per_s, h100.power)
    assert v.main_memory.name == "hbm3" and v.memory_bandwidth_bytes_per_s == 2.4e12
    assert v.main_memory.capacity_bytes == 96e9 and v.memory_bytes == pytest.approx(h100.memory_bytes * 96 / 80)
    assert h100.achievable is not None and v.achievable is not None and v.achievable.memory_bytes_per_s == \
        pytest.approx(h100.achievable.memory_bytes_per_s * 2.4 / 3.35)
    assert v.achievable.gemm_stream_bytes_per_s["fp8"] == \
        pytest.approx(h100.achievable.gemm_stream_bytes_per_s["fp8"] * 2.4 / 3.35)
    assert v.sources["memory.hbm3.bandwidth_bytes_per_s"] == "a test's source" and "96 GB" in v.display_name
    assert v != h100 and len({v, h100}) == 2 and h100.memory_bandwidth_bytes_per_s == 3.35e12


def test_profiles_are_cached_frozen_and_hashable() -> None:
    """Loading twice returns the same frozen object, usable as a dict key."""
    device = load_device("h100-sxm")
    assert load_device("h100-sxm") is device and load_device(device) is device
    assert {device: 1}[device] == 1
    with pytest.raises(AttributeError):
        device.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        device.matrix_flops_per_s["bf16"] = 1.0  # type: ignore[index]


def test_summary_is_json_and_round_trips(tmp_path: Path) -> None:
    """profile_summary is JSON-able with sources, and writing it back as YAML loads the same profile."""
    for profile in (load_device("mi300x"), load_system("hgx-h100"), load_site()):
        summary = profile_summary(profile)
        assert json.loads(json.dumps(summary)) == summary and summary["sources"]
    device = load_device("mi300x")
    assert load_device(_write(tmp_path, _raw(device), "copy.yaml")) == device
    assert profile_summary(load_system("hgx-h100"))["device"]["name"] == "h100-sxm"


def test_env_var_points_at_another_profiles_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EMULATOR_PROFILES replaces the shipped folder for names and listings."""
    (tmp_path / "devices").mkdir()
    l40s = load_device("l40s")
    _write(tmp_path / "devices", _raw(l40s) | {"name": "my-gpu"}, "my-gpu.yaml")
    monkeypatch.setenv("EMULATOR_PROFILES", str(tmp_path))
    assert list_devices() == ["my-gpu"]
    assert load_device("my-gpu").matrix_flops_per_s == l40s.matrix_flops_per_s
    with pytest.raises(EmulatorError, match="unknown device 'l40s'"):
        load_device("l40s")


def test_unknown_names_suggest_the_nearest() -> None:
    """A misspelt device or system name raises an error listing the closest shipped names."""
    with pytest.raises(EmulatorError, match=r"unknown device 'h100'.*'h100-sxm'"):
        load_device("h100")
    with pytest.raises(EmulatorError, match=r"unknown system 'hgx-h10'.*'hgx-h100'"):
        load_system("hgx-h10")


# --- bad files: each error names the file and the field ---------------------------------------------------


def _h100() -> dict[str, Any]:
    return _raw(load_device("h100-sxm"))


def _sourceless(data: dict[str, Any], path: str) -> dict[str, Any]:
    data["sources"] = {k: v for k, v in data["sources"].items() if k != path}
    return data


def _bad_cases() -> list[tuple[str, Any, str, str]]:
    unknown_key = _h100() | {"launch_overhead": 4e-6}
    unknown_dtype = _h100()
    unknown_dtype["matrix_flops_per_s"] = dict(unknown_dtype["matrix_flops_per_s"], bf61=1e12)
    negative = _h100()
    negative["power"] = {"tdp_w": 700, "idle_w": -5}
    missing = _h100()
    del missing["launch_year"]
    text_number = _h100()
    text_number["launch_overhead_s"] = "4 us"
    no_main = _h100()
    no_main["memory"] = [dict(tier, main=False) for tier in no_main["memory"]]
    stale = _h100()
    stale["sources"] = dict(stale["sources"], **{"power.tdp": "x"})
    too_fast = _h100()
    too_fast["achievable"]["matrix_flops_per_s"]["bf16"] = 1978.9e12
    no_peak = _h100()
    no_peak["achievable"]["matrix_flops_per_s"]["fp4"] = 1e15
    no_peak["sources"]["achievable.matrix_flops_per_s.fp4"] = "x"
    fast_attention = _h100()
    fast_attention["achievable"]["attention_flops_per_s"] = 1200e12
    fast_stream = _h100()
    fast_stream["achievable"]["gemm_stream_bytes_per_s"]["fp8"] = 3.4e12
    over_tdp = _h100() | {"power_limit_w": 800}
    over_tdp["sources"]["power_limit_w"] = "x"
    return [
        ("unknown key", unknown_key, "launch_overhead", "did you mean 'launch_overhead_s'"),
        ("unknown dtype", unknown_dtype, "matrix_flops_per_s.bf61", "unknown dtype 'bf61'; did you mean 'bf16'"),
        ("negative number", negative, "power.idle_w", "positive number"),
        ("missing key", missing, "launch_year", "is missing"),
        ("number as text", text_number, "launch_overhead_s", "must be a number"),
        (
            "missing source",
            _sourceless(_h100(), "memory.hbm3.bandwidth_bytes_per_s"),
            "memory.hbm3.bandwidth_bytes_per_s",
            "has no source",
        ),
        ("no main tier", no_main, "memory", "exactly one tier"),
        ("stale source key", stale, "sources.power.tdp", "did you mean 'power.tdp_w'"),
        ("achievable above the peak", too_fast, "achievable.matrix_flops_per_s.bf16", "exceeds the dense peak"),
        ("achievable without a peak", no_peak, "achievable.matrix_flops_per_s.fp4", "has no matrix peak"),
        ("attention above the bf16 peak", fast_attention, "achievable.attention_flops_per_s",
         "exceeds the bf16 dense peak"),
        ("GEMM streaming above the bandwidth", fast_stream, "achievable.gemm_stream_bytes_per_s.fp8",
         "exceeds the main memory's"),
        ("power limit above the TDP", over_tdp, "power_limit_w", "outside h100-sxm's range (200 W to its 700 W"),
    ]


@pytest.mark.parametrize(("case", "data", "field", "message"), _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_device_files_name_file_and_field(tmp_path: Path, case: str, data: Any, field: str, message: str) -> None:
    """Each kind of bad device file raises an EmulatorError naming the file, the field and a fix."""
    path = _write(tmp_path, data)
    with pytest.raises(EmulatorError) as error:
        load_device(path)
    assert error.value.file == str(path.resolve()) and error.value.field == field
    assert message in str(error.value) and "Fix" in str(error.value) and str(path.resolve()) in str(error.value)


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    """A file that is not YAML raises an error naming the file and the line."""
    path = _write(tmp_path, "name: x\nmatrix_flops_per_s: {bf16: 1e12\npower: [\n")
    with pytest.raises(EmulatorError, match="not valid YAML at line") as error:
        load_device(path)
    assert error.value.file == str(path.resolve())


def test_system_with_unknown_device_names_the_field(tmp_path: Path) -> None:
    """A system whose device does not exist is rejected at its `device` field with the nearest names."""
    data = _raw(load_system("hgx-h100")) | {"device": "h100-sxm5"}
    path = _write(tmp_path, data)
    with pytest.raises(EmulatorError, match="'h100-sxm'") as error:
        load_system(path)
    assert error.value.file == str(path.resolve()) and error.value.field == "device"


def test_bad_site_and_system_numbers_are_rejected(tmp_path: Path) -> None:
    """A PUE below 1 and an unsourced system latency are errors with the field named."""
    site = _raw(load_site()) | {"pue": 0.9}
    with pytest.raises(EmulatorError) as error:
        load_site(_write(tmp_path, site, "site.yaml"))
    assert error.value.field == "pue"
    system = _raw(load_system("hgx-h100")) | {"device": "h100-sxm"}
    with pytest.raises(EmulatorError) as error:
        load_system(_write(tmp_path, _sourceless(system, "scale_up.latency_s"), "system.yaml"))
    assert error.value.field == "scale_up.latency_s"


def test_a_key_written_twice_names_both_lines(tmp_path: Path) -> None:
    """A profile that repeats a key is refused naming the key and both lines, never the last one silently winning."""
    text = yaml.safe_dump(_h100(), sort_keys=False)
    path = _write(tmp_path, text + "launch_year: 1999\n")
    first = 1 + text.splitlines().index(next(line for line in text.splitlines() if line.startswith("launch_year:")))
    with pytest.raises(EmulatorError) as error:
        load_device(path)
    assert error.value.field == "launch_year"
    assert f"lines {first} and {len(text.splitlines()) + 1}" in str(error.value)


def test_the_l2_bandwidth_is_known_where_a_fit_gave_it() -> None:
    """Hopper's L2 bandwidth is a fit on measured grouped GEMMs (NVIDIA publishes none); elsewhere it stays
    unknown, and nothing reads it as a number."""
    assert load_device("h200-sxm").cache_bandwidth_bytes_per_s == load_device("h100-sxm").cache_bandwidth_bytes_per_s \
        == 5.5e12
    assert "sglang-hopper-l2.json" in load_device("h200-sxm").sources["memory.l2.bandwidth_bytes_per_s"]
    assert load_device("b200").cache_bandwidth_bytes_per_s is None
