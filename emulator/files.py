"""The one file layer: where shipped data lives, and (below) the strict readers every file the tool reads goes
through."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent


def shipped(folder: str) -> Path:
    """A folder of data shipped with the tool (`hw_profiles`, `calibrations`, `data`): inside the installed
    package (a wheel carries it as package data), else beside the package in a source checkout."""
    inside = _PACKAGE / folder
    return inside if inside.is_dir() else _PACKAGE.parent / folder


def write_json_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write JSON through a temporary file in the same folder and `os.replace`: readers never see half a file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
