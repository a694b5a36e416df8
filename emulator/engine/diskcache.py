"""A disk cache for what is slow to build and quick to load: traced programs, so that a new process predicts a
scenario it has seen without tracing (tracing a first program also imports torch's compiler stack, about a second).

Folder: `$EMULATOR_CACHE` (`off` turns the cache off), else `$XDG_CACHE_HOME/emulator`, else `~/.cache/emulator`.
An entry's file name hashes its key (the inputs' repr) together with the version of the code that builds it: the
source of the `emulator` and `kernels` packages, torch's version file and the numpy and Python versions, so an edited
checkout or an upgraded torch never reads an old entry. Entries are pickles written atomically (a killed process
leaves none half-written), so the folder must be the user's own; an entry that cannot be read is rebuilt and
rewritten, and a folder that cannot be written costs only the speed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")
_ROOT = Path(__file__).resolve().parents[2]  # holds the emulator and kernels packages


def cache_folder() -> Path | None:
    """Where entries live; None when `EMULATOR_CACHE=off`."""
    env = os.environ.get("EMULATOR_CACHE")
    if env:
        return None if env == "off" else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "emulator"


@functools.cache
def code_version() -> str:
    """A hash of everything besides its key that an entry depends on: the packages' source and the libraries."""
    digest = hashlib.blake2b(digest_size=16)
    for package in ("emulator", "kernels"):
        for path in sorted((_ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(_ROOT)).encode())
            digest.update(path.read_bytes())
    digest.update(f"{_torch_version()} {np.__version__} {sys.version}".encode())
    return digest.hexdigest()


def _torch_version() -> str:
    """torch's version file (its version and git commit), read rather than imported: a process that finds every
    entry it needs on disk never loads torch (one to two seconds)."""
    spec = importlib.util.find_spec("torch")
    try:
        return (Path(spec.origin).parent / "version.py").read_text() if spec and spec.origin else "no torch"
    except OSError:
        return "torch version unknown"


def _path(folder: Path, kind: str, key: object) -> Path:
    name = hashlib.blake2b(f"{code_version()} {key!r}".encode(), digest_size=20).hexdigest()
    return folder / kind / f"{name}.pickle"


def cached(kind: str, key: object, build: Callable[[], T]) -> T:
    """The entry of `kind` for `key` (its repr must name every input), built and stored when absent."""
    folder = cache_folder()
    if folder is None:
        return build()
    path = _path(folder, kind, key)
    try:
        with path.open("rb") as f:
            return pickle.load(f)  # type: ignore[no-any-return]
    except Exception:  # absent, cut short or from an incompatible pickle: build it again
        pass
    value = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as f:
            temporary = f.name
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError, NameError):
            os.unlink(temporary)
    return value


__all__ = ["cache_folder", "cached", "code_version"]
