"""The disk cache of traces and of the NCCL tables: keyed by every input and the code (the data file's content for
the tables), and read without torch.

A second `emulator predict` of a serving scenario finds its traces on disk and never imports torch (one to two
seconds of a two-second answer); the first traces them and imports it. Each run is a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emulator import published
from emulator.cluster import network
from emulator.engine import diskcache
from emulator.engine.trace import trace_workload
from emulator.workloads.presets import preset

ROOT = Path(__file__).resolve().parents[1]
# Run `emulator ARGV` as the script does; report its exit status, its stdout and whether torch was imported.
PROBE = """
import contextlib, io, json, sys
from emulator.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "torch": "torch" in sys.modules, "out": out.getvalue()}))
"""


def _predict(scenario: Path, cache: Path, folder: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "EMULATOR_CACHE": str(cache), "EMULATOR_RESULTS": str(folder / "results.sqlite"),
           "EMULATOR_CALIBRATIONS": str(folder / "cal")}
    proc = subprocess.run([sys.executable, "-c", PROBE, "predict", str(scenario), "--json"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0, proc.stderr
    return report


@pytest.mark.parametrize("name", ["llama3-70b-h100x8-disaggregated.yaml", "dlrm-v2-h100-serve.yaml"])
def test_serving_predict_with_traces_on_disk_never_imports_torch(name: str, tmp_path: Path) -> None:
    """The first run traces (torch imported) and leaves its traces; the second reads them without torch and
    prints the same prediction."""
    first = _predict(ROOT / "examples" / name, tmp_path / "cache", tmp_path)
    assert first["torch"]
    assert list((tmp_path / "cache" / "trace").glob("*.pickle"))
    second = _predict(ROOT / "examples" / name, tmp_path / "cache", tmp_path)
    assert not second["torch"], "a serving prediction whose traces are on disk imported torch"
    assert json.loads(second["out"]) == json.loads(first["out"])


def test_an_entry_is_named_by_every_input(tmp_path: Path) -> None:
    """Two keys that differ in any one input name different files; the same key names the same file."""
    key = (preset("llama3-8b"), "decode", 8, 1, 512, "bf16")
    variants = [key[:i] + (value,) + key[i + 1:]
                for i, value in enumerate((preset("llama3-70b"), "prefill", 16, 2, 1024, "fp32"))]
    paths = {diskcache._path(tmp_path, "trace", k) for k in variants}
    assert len(paths) == len(variants)
    assert diskcache._path(tmp_path, "trace", key) not in paths
    assert diskcache._path(tmp_path, "trace", key) == diskcache._path(tmp_path, "trace", tuple(key))


def test_an_entry_is_named_by_the_torch_it_was_built_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Another torch (its version file) gives every entry a new name, so no entry of the old one is read."""
    key = (preset("llama3-8b"), "decode", 8, 1, 512, "bf16")
    before = diskcache._path(tmp_path, "trace", key)
    diskcache.code_version.cache_clear()
    monkeypatch.setattr(diskcache, "_torch_version", lambda: "__version__ = '0.0.1'")
    try:
        assert diskcache._path(tmp_path, "trace", key) != before
    finally:
        monkeypatch.undo()
        diskcache.code_version.cache_clear()
    assert diskcache._path(tmp_path, "trace", key) == before


def test_torch_version_is_read_from_its_version_file() -> None:
    """The version file read in place of importing torch names the installed torch."""
    assert f"'{torch.__version__}'" in diskcache._torch_version()


def test_a_dtype_by_name_or_as_torch_dtype_is_one_trace() -> None:
    """trace_workload takes the program's dtype by name or as a torch dtype: the same entry either way."""
    model = preset("llama3-8b")
    assert trace_workload(model, "decode", 4, 1, 64, "bf16") is trace_workload(model, "decode", 4, 1, 64,
                                                                                 torch.bfloat16)


def test_the_collective_tables_follow_the_shipped_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The NCCL tables kept on disk are named by the data file's content: an unchanged file is not parsed again, an
    edited one is read afresh."""
    data = tmp_path / "data"
    data.mkdir()
    text = (published.DATA / "published_kernels.yaml").read_text()
    (data / "published_kernels.yaml").write_text(text)

    def unparsed(kind: str) -> tuple[dict, ...]:
        raise AssertionError(f"published_{kind}.yaml parsed although its tables are on disk")

    def forget() -> None:
        published.load_cases.cache_clear()
        network._published.cache_clear()

    try:
        monkeypatch.setattr(published, "DATA", data)
        monkeypatch.setattr(network, "DATA", data)
        forget()
        first = network._published()
        forget()
        monkeypatch.setattr(network, "load_cases", unparsed)
        assert network._published() == first
        one_mib = [p for p in first[0]["a100-sxm"] if p[0] == 2**20]
        assert one_mib == [(2**20, 36.22e9)]
        (data / "published_kernels.yaml").write_text(text.replace("  value: 36.22\n", "  value: 18.11\n", 1))
        monkeypatch.setattr(network, "load_cases", published.load_cases)
        forget()
        edited = network._published()
        assert (2**20, 18.11e9) in edited[0]["a100-sxm"] and edited[1] == first[1]
    finally:
        monkeypatch.undo()
        forget()
