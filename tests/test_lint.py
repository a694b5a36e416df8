"""The code is lint-clean and type-clean: ruff over everything, mypy over the package (`emulator`, `kernels`).

Both tools come with the test extra (`bash scripts/setup.sh test`), pinned to a minor release, so this runs in
CI on every clean clone; the README's test command is all CI runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_ruff_finds_nothing() -> None:
    """`ruff check` passes on the package, the tests and the benchmarks."""
    out = _run("ruff", "check", "--no-cache", "emulator", "kernels", "tests", "benchmarks", "conftest.py")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_finds_nothing() -> None:
    """`mypy` passes on the package."""
    out = _run("mypy", "emulator", "kernels")
    assert out.returncode == 0, out.stdout + out.stderr
