"""The one file layer: where shipped data lives, the strict readers of every file the tool reads, and `Fields`.

YAML is read with YAML 1.2's core schema, not PyYAML's YAML 1.1: `1.5e12`, `15e12` and `-2.5E+3` are numbers,
`yes`/`no`/`on`/`off` are text (only true/false are booleans), `010` is ten, `0x10` and dates stay text. A file is
refused, in one paragraph naming the file, the line or field and the fix, when it repeats a key (the last would
silently win), carries a tag outside the core schema (`!!python/object/apply:...` asks a YAML library to build
arbitrary objects), has aliases that expand past `MAX_ALIAS_NODES` values (a "billion laughs" file), is not UTF-8
text, or is cut short. JSON gets the same duplicate-key rule. `Fields` is the one strict accessor for a mapping
read from a file.
"""

from __future__ import annotations

import contextlib
import json
import json.decoder
import json.scanner
import os
import re
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import yaml

from emulator.errors import EmulatorError

_PACKAGE = Path(__file__).resolve().parent
# Values aliases may add to one file: hand-written files reuse a few small blocks (`*name` copies `&name`'s values);
# a "billion laughs" file nests aliases to reach 10^9 values from ten lines.
MAX_ALIAS_NODES = 10_000
TOP = "(top level)"  # the field of an error about a whole file or document


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


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _read_text(file: str) -> str:
    """A file's text, or one paragraph saying why it cannot be read (missing, unreadable, not UTF-8)."""
    try:
        raw = Path(file).read_bytes()
    except FileNotFoundError:
        raise EmulatorError(f"no such file. Fix: check the path (the working directory is {os.getcwd()}).",
                            file=file) from None
    except OSError as e:
        raise EmulatorError(f"cannot be read ({e.strerror}). Fix: check its permissions.", file=file) from None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark is allowed and means nothing
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise EmulatorError(
            f"is not UTF-8 text: byte 0x{raw[e.start]:02x} at line {line} cannot be decoded, so this is a binary "
            "file or one saved in another encoding. Fix: check that you named the right file, and save it as UTF-8.",
            file=file, field=f"line {line}") from None


# --- YAML 1.2 ------------------------------------------------------------------------------------------------

_CORE = "tag:yaml.org,2002:"
_INT = re.compile(r"[-+]?[0-9]+\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z|[-+]?\.(?:inf|Inf|INF)\Z"
                    r"|\.(?:nan|NaN|NAN)\Z")
_BOOL = re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z")
_NULL = re.compile(r"(?:~|null|Null|NULL|)\Z")
_SCALARS = {"str": None, "null": _NULL, "bool": _BOOL, "int": _INT, "float": _FLOAT}


class _Composer(yaml.SafeLoader):
    """PyYAML used up to the node graph only (`get_single_node`; `_Builder` turns nodes into values, so none of
    PyYAML's constructors runs), with the implicit types of YAML 1.2's core schema instead of YAML 1.1's. The core
    schema's hexadecimal and octal forms stay text: no file here needs them, and a `0x` typo is then reported as
    'not a number' rather than read as another value."""

    yaml_implicit_resolvers: dict[Any, list[Any]] = {}


for _tag, _pattern, _first in (("bool", _BOOL, "tTfF"), ("null", _NULL, ["~", "n", "N", ""]),
                               ("int", _INT, "-+0123456789"), ("float", _FLOAT, "-+0123456789.")):
    _Composer.add_implicit_resolver(_CORE + _tag, _pattern, list(_first))


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Builder:
    """Plain values (dict, list, str, int, float, bool, None) from a node graph, checking keys, tags and aliases."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.seen: set[int] = set()
        self.open: set[int] = set()  # nodes being built: meeting one again is an alias to itself
        self.expanded = 0

    def fail(self, field: str, message: str) -> NoReturn:
        raise EmulatorError(message, file=self.file, field=field or TOP)

    def build(self, node: yaml.Node, field: str) -> Any:
        if id(node) in self.seen:  # a second visit is an alias being expanded
            self.expanded += 1
            if self.expanded > MAX_ALIAS_NODES:
                self.fail(field, f"its anchors and aliases (&name, *name) expand past {MAX_ALIAS_NODES} values "
                          f"(here at line {_line(node)}), as a 'billion laughs' file does to exhaust memory. Fix: "
                          "write the repeated values out, or use fewer aliases.")
        self.seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, field)
        if id(node) in self.open:
            self.fail(field, f"holds an alias to itself (line {_line(node)}), an endless value. Fix: remove it.")
        self.open.add(id(node))
        value = self.collection(node, field)  # an error ends the whole read, so no cleanup on the way out
        self.open.discard(id(node))
        return value

    def collection(self, node: yaml.Node, field: str) -> Any:
        kind = "seq" if isinstance(node, yaml.SequenceNode) else "map"
        if node.tag != _CORE + kind:
            self.refuse(node, field)
        if kind == "seq":
            return [self.build(item, f"{field}[{i}]") for i, item in enumerate(node.value)]
        out: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(field, f"has a list or mapping as a key (line {_line(key_node)}). Fix: keys are plain "
                          "names; write 'name: value'.")
            key = self.scalar(key_node, field)
            if key in lines:
                self.fail(_join(field, str(key)), f"key '{key}' appears twice, at lines {lines[key]} and "
                          f"{_line(key_node)}; the second would silently replace the first. Fix: keep one of them.")
            lines[key] = _line(key_node)
            out[key] = self.build(value_node, _join(field, str(key)))
        return out

    def refuse(self, node: yaml.Node, field: str) -> NoReturn:
        shown = "!!" + node.tag.removeprefix(_CORE) if node.tag.startswith(_CORE) else node.tag
        self.fail(field, f"uses the tag '{shown}' (line {_line(node)}), which this tool does not read: "
                  "its files hold plain values only (text, numbers, true/false, null, lists and mappings), and a "
                  "tag such as !!python/... asks a YAML library to build arbitrary objects. Fix: remove the tag.")

    def scalar(self, node: yaml.ScalarNode, field: str) -> Any:
        kind = node.tag.removeprefix(_CORE) if node.tag.startswith(_CORE) else ""
        if kind not in _SCALARS:
            self.refuse(node, field)
        value: str = node.value
        pattern = _SCALARS[kind]
        if pattern is None:  # text
            return value
        if not (pattern.match(value) or (kind == "float" and _INT.match(value))):  # only explicit tags get here
            self.fail(field, f"is tagged !!{kind} but {value!r} (line {_line(node)}) is not one. Fix: remove the "
                      "tag or correct the value.")
        if kind in ("null", "bool"):
            return None if kind == "null" else value.lower() == "true"
        return int(value) if kind == "int" else float(value.lower().replace(".inf", "inf").replace(".nan", "nan"))


def read_yaml_text(text: str, file: str = "<text>") -> Any:
    """Plain data from YAML text (one document; an empty one is None); `file` names it in errors."""
    try:
        loader = _Composer(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
        return None if node is None else _Builder(file).build(node, "")
    except yaml.reader.ReaderError as e:  # a control character: binary junk that happens to decode
        line = text.count("\n", 0, e.position) + 1
        code = e.character if isinstance(e.character, int) else ord(e.character)
        raise EmulatorError(
            f"holds a control character (#x{code:04x}) at line {line}, which YAML text may not contain, "
            "so this is likely a binary file. Fix: check that you named the right file.",
            file=file, field=f"line {line}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        where = f" at line {line}, column {mark.column + 1}" if mark else ""
        problem = ", ".join(str(part) for part in (e.context, e.problem) if part)
        raise EmulatorError(
            f"is not valid YAML{where}: {problem}. Fix: check the indentation, the ':' after each key, quotes and "
            "brackets there (a file cut short ends inside an open bracket or quote).",
            file=file, field=f"line {line}" if mark else TOP) from None
    except RecursionError:
        raise EmulatorError("nests lists or mappings too deeply. Fix: flatten it.", file=file, field=TOP) from None


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Plain data from a YAML file (YAML 1.2 core schema, strict); every problem is one EmulatorError."""
    return read_yaml_text(_read_text(os.fspath(path)), os.fspath(path))


# --- JSON ----------------------------------------------------------------------------------------------------


class _Duplicate(Exception):
    """A JSON object repeats a key (args, once located: the key, its first line, its second line)."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Duplicate
    return out


def _locate_duplicate(text: str) -> tuple[str, int, int]:
    """Second, slower pass (pure-Python scanner), run only once a duplicate is known: its key and both lines."""
    decoder = json.JSONDecoder()

    def parse_object(s_and_end: tuple[str, int], strict: bool, scan_once: Any, object_hook: Any, pairs_hook: Any,
                     memo: Any = None) -> tuple[dict[str, Any], int]:
        s = s_and_end[0]
        starts: list[int] = []

        def scan(string: str, index: int) -> Any:  # JSONObject scans each value of this object through here
            starts.append(index)
            return scan_once(string, index)

        pairs, end = json.decoder.JSONObject(s_and_end, strict, scan, None, list, memo)  # type: ignore[attr-defined]
        lines: dict[str, int] = {}
        for (key, _), start in zip(pairs, starts, strict=True):
            quote = s.rfind('"', 0, s.rfind(":", 0, start))  # the key's closing quote, on the key's own line
            line = s.count("\n", 0, quote) + 1
            if key in lines:
                raise _Duplicate(key, lines[key], line)
            lines[key] = line
        return dict(pairs), end

    decoder.parse_object = parse_object  # type: ignore[attr-defined]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    try:
        decoder.decode(text)
    except _Duplicate as found:
        return found.args  # type: ignore[return-value]
    return "?", 0, 0


def read_json_text(text: str, file: str = "<text>", *, fix: str | None = None) -> Any:
    """Plain data from JSON text; duplicate keys refused. `fix` replaces the advice for a broken file."""
    try:
        return json.loads(text, object_pairs_hook=_unique)
    except json.JSONDecodeError as e:
        raise EmulatorError(
            f"is not valid JSON at line {e.lineno}, column {e.colno} ({e.msg}); the file is corrupted or truncated. "
            f"Fix: {fix or 'repair it there, or write it again'}.", file=file, field=f"line {e.lineno}") from None
    except _Duplicate:
        key, first, second = _locate_duplicate(text)
        raise EmulatorError(f"key '{key}' appears twice, at lines {first} and {second}; JSON readers keep only one "
                            "of them. Fix: delete one.", file=file, field=key) from None
    except RecursionError:
        raise EmulatorError("nests arrays or objects too deeply. Fix: flatten it.", file=file, field=TOP) from None


def read_json(path: str | os.PathLike[str], *, fix: str | None = None) -> Any:
    """Plain data from a JSON file, duplicate keys refused; every problem is one EmulatorError."""
    return read_json_text(_read_text(os.fspath(path)), os.fspath(path), fix=fix)


__all__ = ["MAX_ALIAS_NODES", "TOP", "read_json", "read_json_text", "read_yaml", "read_yaml_text", "shipped",
           "write_json_atomic"]
