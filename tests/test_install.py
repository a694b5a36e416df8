"""A real install: the sdist and the wheel built from this tree carry every module and data file, and the wheel,
installed in a fresh venv with no source tree on its path, answers from any folder; an editable install keeps
reading the repository's folders.

Everything happens in temporary folders: the tree is copied before building (a build writes build/ and
*.egg-info beside the sources), and the fresh venvs see the test interpreter's packages (torch, numpy, pyyaml,
matplotlib) through a `.pth` file written after the install, so pip never sees the project's own install and
nothing is downloaded.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "llama3-8b-h100-serve.yaml"
# Folders that are never sources: caches anywhere, and the environments and build outputs at the top level.
CACHES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".benchmarks"}
TOP_LEVEL_OUTPUTS = {"build", "dist", "reports", "out"}


def _version(dist: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in importlib.metadata.version(dist).split(".")[:2] if p.isdigit())
    except importlib.metadata.PackageNotFoundError:
        return ()


def _missing_tools() -> str | None:
    """Why this interpreter cannot build and install offline, or None: an environment's limit, not a bug."""
    setuptools, pip = _version("setuptools"), _version("pip")
    if setuptools < (64,):
        return f"setuptools >= 64 (the build requirement) is not installed here (found {setuptools or 'none'})"
    if setuptools < (70, 1) and not _version("wheel"):
        return "setuptools < 70.1 needs the `wheel` package to build wheels, and it is not installed here"
    if pip < (22, 3):
        return f"pip >= 22.3 (for `pip --python`) is not installed here (found {pip or 'none'})"
    return None


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (f"{' '.join(cmd)} exited {proc.returncode}:\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _copy_tree(dest: Path) -> Path:
    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == ROOT
        return {n for n in names if n in CACHES or n.endswith(".egg-info")
                or (top and (n.startswith(".") or n in TOP_LEVEL_OUTPUTS))}

    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def _backend(hook: str, source: Path, out: Path) -> Path:
    """Run one PEP 517 hook of setuptools in `source` (as `python -m build --no-isolation` does); the file made."""
    out.mkdir(parents=True, exist_ok=True)
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    name = _run([sys.executable, "-c", code], cwd=source).stdout.strip().splitlines()[-1]
    return out / name


def _fresh_venv(path: Path) -> Path:
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)], cwd=path.parent)
    return path / "bin" / "python"


def _pip_install(python: Path, wheel: Path) -> None:
    """Install a wheel into a venv with this interpreter's pip, while the venv still sees nothing else."""
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--no-compile",
          "--disable-pip-version-check", str(wheel)], cwd=python.parent)


def _see_dependencies(python: Path) -> None:
    """Make this interpreter's site-packages visible to the venv (after the install, so they come after its own)."""
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                   cwd=python.parent).stdout.strip()
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    (Path(purelib) / "zz-test-dependencies.pth").write_text("".join(f"{d}\n" for d in dirs if os.path.isdir(d)))


def _env(tmp: Path) -> dict[str, str]:
    """The user's environment without anything that could point back at the sources or their data."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "EMULATOR_PROFILES")}
    env.update(PYTHONNOUSERSITE="1", EMULATOR_RESULTS=str(tmp / "results.sqlite"),
               EMULATOR_CALIBRATIONS=str(tmp / "user-calibrations"), XDG_DATA_HOME=str(tmp / "xdg"))
    return env


def _shipped_files() -> set[str]:
    """Where each file the tool reads at run time lands in the package."""
    expected = {f"emulator/hw_profiles/{p.relative_to(ROOT / 'hw_profiles').as_posix()}"
                for p in (ROOT / "hw_profiles").rglob("*") if p.is_file() and not CACHES & set(p.parts)}
    expected |= {f"emulator/calibrations/{p.name}" for p in (ROOT / "calibrations").glob("*.json")
                 if not p.name.endswith(".points.json")}
    expected |= {f"emulator/data/{p.name}" for p in (ROOT / "emulator" / "data").glob("*.yaml")}
    for package in ("emulator", "kernels"):
        expected |= {p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*.py")
                     if not CACHES & set(p.parts)}
    return expected


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(sdist, the wheel built from the unpacked sdist, the copied tree), as `python -m build` makes them."""
    why = _missing_tools()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("build")
    tree = _copy_tree(tmp / "tree")
    sdist = _backend("build_sdist", tree, tmp / "dist")
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(tmp / "unpacked", filter="data")
        else:  # Python < 3.11.4 has no filters; the archive is the one just built
            tar.extractall(tmp / "unpacked")
    (unpacked,) = (tmp / "unpacked").iterdir()
    return sdist, _backend("build_wheel", unpacked, tmp / "dist"), tree


def test_wheel_carries_every_module_and_shipped_file_and_no_raw_measurements(built: tuple[Path, Path, Path]) -> None:
    """Profiles, fitted calibrations and data files are package data; *.points.json, runs/ and tests are not."""
    _, wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_shipped_files() - names)
    assert not missing, (f"missing from the wheel: {missing}. Fix: add the package (or its data pattern) to "
                         "[tool.setuptools] packages / package-data in pyproject.toml.")
    raw = sorted(n for n in names
                 if n.endswith(".points.json") or "/runs/" in n or n.startswith(("tests/", "examples/")))
    assert not raw, f"raw measurements or sources that are not the tool in the wheel: {raw}"


def test_installed_wheel_answers_from_any_folder(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """From a folder outside the tree, `profiles list` lists the shipped devices and `predict` uses the shipped
    H100 calibration, with `emulator` imported from the venv, not from the sources."""
    _, wheel, _ = built
    python = _fresh_venv(tmp_path / "venv")
    _pip_install(python, wheel)
    _see_dependencies(python)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _env(tmp_path)
    where = json.loads(_run([str(python), "-c", "import json, emulator.files as f; print(json.dumps("
                             "[f.__file__, str(f.shipped('hw_profiles')), str(f.shipped('calibrations'))]))"],
                            cwd=work, env=env).stdout)
    venv = (tmp_path / "venv").resolve()
    assert all(Path(p).resolve().is_relative_to(venv) for p in where), where

    emulator = str(python.parent / "emulator")
    listing = _run([emulator, "profiles", "list"], cwd=work, env=env).stdout
    for device in sorted(p.stem for p in (ROOT / "hw_profiles" / "devices").glob("*.yaml")):
        assert device in listing, f"{device} not listed:\n{listing}"

    scenario = work / EXAMPLE.name
    shutil.copyfile(EXAMPLE, scenario)
    result = json.loads(_run([emulator, "predict", scenario.name, "--json"], cwd=work, env=env).stdout)
    assert result["step_time_s"] > 0
    assert result["provenance"] in ("calibrated", "transferred"), result["provenance"]


def test_sdist_carries_the_data_folders_where_the_repository_keeps_them(built: tuple[Path, Path, Path]) -> None:
    """The sdist keeps hw_profiles/ and calibrations/ at the top level (the wheel is built from it) without runs/."""
    sdist, _, _ = built
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"hw_profiles/devices/h100-sxm.yaml", "calibrations/cuda-nvidia-h100-80gb-hbm3-sm90.json",
            "emulator/data/published_kernels.yaml", "pyproject.toml"} <= names
    assert not [n for n in names if n.endswith(".points.json") or n.startswith("calibrations/runs/")]


def test_editable_install_reads_the_repository_folders(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """`pip install -e` (scripts/setup.sh) maps the code only: shipped data comes from the tree's own folders."""
    _, _, tree = built
    editable = _backend("build_editable", tree, tmp_path / "dist")
    python = _fresh_venv(tmp_path / "venv")
    _pip_install(python, editable)
    _see_dependencies(python)
    env = _env(tmp_path)
    code = ("import json, emulator.files as f; print(json.dumps([f.__file__, str(f.shipped('hw_profiles')), "
            "str(f.shipped('calibrations')), str(f.shipped('data'))]))")
    where = [Path(p).resolve() for p in json.loads(_run([str(python), "-c", code], cwd=tmp_path, env=env).stdout)]
    tree = tree.resolve()
    assert where == [tree / "emulator" / "files.py", tree / "hw_profiles", tree / "calibrations",
                     tree / "emulator" / "data"]
    assert "h100-sxm" in _run([str(python.parent / "emulator"), "profiles", "list"], cwd=tmp_path, env=env).stdout
