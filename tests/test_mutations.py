"""No traceback reaches a user: every shipped example and sizing file, mutated, exits 0 or 2 with one paragraph.

Each example draws a mutation of one shipped file: a key dropped; a value turned into text, a list or a mapping;
a mapping or list turned into a number; a number made negative, zero, -1, huge (1e300), NaN or infinite; a value
replaced by an unknown name (device, model, precision, system...); a key line duplicated; the file cut at a byte;
binary junk inserted. The result runs through `emulator predict FILE [--json]` or `emulator size FILE --json --out
DIR --quiet` in-process. The exit status is 0 or 2, and a 2 comes with one paragraph on stderr that starts with
`error: `, names the file and says how to fix it.

Hypothesis runs derandomized (the same examples every run) and with few examples per file. A mutant that still
predicts runs its whole prediction, which is cheap for scenario files; a sizing mutant that still loads is not
searched (one search takes 15 s to 2 min), so sizing files test their refusals. `_Guard` fails an example that runs
past a generous bound instead of letting a hang stall CI.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from emulator.cli import main
from emulator.errors import EmulatorError
from emulator.files import read_yaml
from emulator.sizing import load_sizing

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SCENARIOS = [p for p in EXAMPLES if not p.name.startswith("sizing-")]
SIZINGS = [p for p in EXAMPLES if p.name.startswith("sizing-")]
EXAMPLES_PER_FILE = 40
GUARD_S = 120  # far above any one example (a mutated scenario predicts in seconds); only a hang meets it
# Words of a fix in the messages (the errors' house style: "Fix: ...", or a nearest name).
FIX_WORDS = ("Fix", "did you mean", "use one of", "known names", "Add ")

# What a value may become ("scalar" only for a mapping or a list), besides being dropped.
CHANGES = ("text", "list", "mapping", "negative", "zero", "minus one", "huge", "unknown name", "nan", "inf",
           "minus inf", "null", "true")
NUMBER = re.compile(rb"(?<=: )-?[0-9][0-9.eE+_-]*")
KEY_LINE = re.compile(r"^\s*(?:- )?\{?[A-Za-z_][\w.]*:", re.MULTILINE)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and list index under `node`, as paths from the top."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def _mutated(data: Any, path: tuple[Any, ...], how: str) -> Any:
    """A deep copy of `data` with the value at `path` dropped or replaced as `how` says."""
    data = copy.deepcopy(data)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    key, value = path[-1], parent[path[-1]]
    if how == "drop":
        del parent[key]
        return data
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    parent[key] = {"text": str(value), "list": [value], "mapping": {"value": value}, "scalar": 7,
                   "negative": -abs(value) if number else -3, "zero": 0, "minus one": -1, "huge": 1e300,
                   "unknown name": "no-such-name", "nan": float("nan"), "inf": float("inf"),
                   "minus inf": float("-inf"), "null": None, "true": True}[how]
    return data


@st.composite
def structural(draw: st.DrawFn, data: Any) -> str:
    """The YAML text of `data` with one value dropped, retyped or replaced."""
    path = draw(st.sampled_from(list(_paths(data))))
    value = data
    for key in path:
        value = value[key]
    hows = ["drop", *CHANGES] + (["scalar"] if isinstance(value, (dict, list)) else [])
    return yaml.safe_dump(_mutated(data, path, draw(st.sampled_from(hows))), sort_keys=False)


@st.composite
def textual(draw: st.DrawFn, raw: bytes) -> bytes:
    """The file's bytes cut short, with junk inserted, with a key line repeated, or with a number rewritten."""
    how = draw(st.sampled_from(["truncate", "junk", "duplicate", "number"]))
    if how == "truncate":
        return raw[:draw(st.integers(0, len(raw) - 1))]
    if how == "junk":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    if how == "duplicate":
        text = raw.decode()
        line = draw(st.sampled_from([m.start() for m in KEY_LINE.finditer(text)]))
        end = text.find("\n", line) + 1 or len(text)
        return (text[:end] + text[line:end].rstrip("\n") + "\n" + text[end:]).encode()
    number = draw(st.sampled_from(list(NUMBER.finditer(raw))))
    value = draw(st.sampled_from([b".nan", b".inf", b"-.inf", b"1e300", b"-1", b"0", b"0.5"]))
    return raw[:number.start()] + value + raw[number.end():]


def mutants(path: Path) -> st.SearchStrategy[bytes]:
    raw = path.read_bytes()
    return st.one_of(structural(read_yaml(path)).map(str.encode), textual(raw))


class _Guard:
    """Fails the example (SIGALRM) when one command runs past `GUARD_S`; a bound on hangs, not a speed check."""

    def __init__(self, what: str) -> None:
        self.what = what

    def _expire(self, signum: int, frame: FrameType | None) -> None:
        raise AssertionError(f"{self.what} ran past {GUARD_S} s: a hang on a mutated file")

    def __enter__(self) -> None:
        self.previous = signal.signal(signal.SIGALRM, self._expire)
        signal.alarm(GUARD_S)

    def __exit__(self, *exc: object) -> None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with _Guard(" ".join(argv)), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _check(code: int, out: str, err: str, file: Path) -> None:
    """Exit 0, or exit 2 with one paragraph that starts with `error: `, names the file and gives a fix."""
    assert "Traceback" not in out + err
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.startswith("error: "), err
        assert err.strip().count("\n") == 0, f"one paragraph: {err}"
        assert str(file) in err, f"names the file: {err}"
        assert any(word in err for word in FIX_WORDS), f"gives a fix: {err}"


MUTATION_SETTINGS = settings(max_examples=EXAMPLES_PER_FILE, derandomize=True, database=None, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                    HealthCheck.filter_too_much])


@pytest.mark.parametrize("example", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_a_mutated_scenario_predicts_or_says_why(example: Path, tmp_path: Path) -> None:
    """`emulator predict` on a mutated scenario file: a prediction, or one paragraph naming the file and a fix."""

    @MUTATION_SETTINGS
    @given(text=mutants(example), as_json=st.booleans())
    def check(text: bytes, as_json: bool) -> None:
        file = tmp_path / example.name
        file.write_bytes(text)
        _check(*_run(["predict", str(file), *(["--json"] if as_json else [])]), file)

    check()


@pytest.mark.parametrize("example", SIZINGS, ids=[p.name for p in SIZINGS])
def test_a_mutated_sizing_file_is_refused_in_one_paragraph(example: Path, tmp_path: Path) -> None:
    """`emulator size` on a mutated sizing file that no longer loads: one paragraph naming the file and a fix."""

    @MUTATION_SETTINGS
    @given(text=mutants(example))
    def check(text: bytes) -> None:
        file = tmp_path / example.name
        file.write_bytes(text)
        try:
            load_sizing(file)
        except EmulatorError:
            _check(*_run(["size", str(file), "--json", "--out", str(tmp_path / "report"), "--quiet"]), file)
        else:
            reject()  # still a valid sizing file: its search is too slow to run here

    check()
