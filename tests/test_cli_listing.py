"""`emulator profiles list`: every capacity in the unit it is printed in (GB vs GiB), per device."""

from __future__ import annotations

import pytest

from emulator.cli import main
from emulator.hardware import load_device
from emulator.units import GiB


def test_h100_memory_is_the_datasheets_80_gib(capsys: pytest.CaptureFixture[str]) -> None:
    """The 80 GB H100 lists 80 GiB of memory (what its datasheet means) and 79.6 GiB usable, never '86 GB'."""
    assert main(["profiles", "list"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert "GiB" in header and "GB" not in header
    row = next(line.split() for line in out.splitlines() if line.startswith("h100-sxm "))
    h100 = load_device("h100-sxm")
    assert h100.physical_memory_bytes == 80 * GiB
    assert f"{h100.memory_bytes / GiB:.1f}" == "79.6"
    assert "80" in row and "79.6" in row and "86" not in row
    assert "per device" in out
