"""Finding and loading stack profiles: `stack_profiles/<kind>/<name>.yaml` into frozen `StackProfile`s.

Files are read by the strict file layer; unknown items, items of the other kind of stack, a missing source and
values of the wrong type are each an `EmulatorError` naming the file, the item and the fix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from emulator.errors import EmulatorError, nearest
from emulator.fields import Fields
from emulator.files import read_yaml, shipped
from emulator.stacks.profile import ITEMS, STACK_KINDS, Item, StackProfile
from emulator.stacks.values import check_value

# What a scenario gets when it names no stack: the production stacks planners size for (README, "Software stacks");
# on a chip the default does not run on (`platform.vendors`: TensorRT-LLM is NVIDIA's), the first of the fallbacks
# that does (vLLM serves on ROCm as on CUDA).
DEFAULT_STACK = {"training": "megatron-core", "serving": "trtllm"}
FALLBACK_STACKS = {"training": ("torchtitan", "eager"), "serving": ("vllm", "sglang", "eager")}
SCENARIO_KEY = {"training": "training.framework", "serving": "inference.engine"}


def _folder(kind: str) -> Path:
    return shipped("stack_profiles") / kind


def list_stacks(kind: str) -> list[str]:
    """Names of the shipped stacks of a kind (`training` or `serving`)."""
    return sorted(p.stem for p in _folder(kind).glob("*.yaml"))


def _failer(path: str, field: str) -> Callable[[str], NoReturn]:
    def fail(message: str) -> NoReturn:
        raise EmulatorError(message, file=path, field=field)
    return fail


def _item_kind(key: Any, kind: str, fail: Callable[[str], NoReturn]) -> str:
    """The value kind of stack item `key`, which a `kind` stack may set (else `fail`)."""
    if key not in ITEMS:
        fail(f"is not a stack item; {nearest(str(key), ITEMS)} Fix: use an item of stack_profiles/README.md.")
    value_kind, kinds, _, _ = ITEMS[key]
    if kind not in kinds:
        fail(f"applies to {' and '.join(kinds)} stacks, not {kind}. Fix: delete it.")
    return str(value_kind)


@functools.lru_cache(maxsize=64)
def _load(path: str, mtime_ns: int) -> StackProfile:
    data = read_yaml(path)
    r = Fields(data, file=path, allowed=("name", "kind", "title", "versions", "items"))
    name = r.text("name", hint="name: megatron-core")
    kind = r.choice("kind", STACK_KINDS)
    if Path(path).stem != name or Path(path).parent.name != kind:
        raise r.error("name", f"is '{name}' of kind '{kind}' but the file is {Path(path).parent.name}/"
                              f"{Path(path).name}. Fix: name the file <kind>/<name>.yaml.")
    raw = r.get("items", {}) or {}
    if not isinstance(raw, dict):
        raise r.error("items", "must be a mapping of item: {value, source}. Fix: see stack_profiles/README.md.")
    items: dict[str, Item] = {}
    for key, entry in raw.items():
        field = f"items.{key}"
        fail = _failer(path, field)
        value_kind = _item_kind(key, kind, fail)
        e = Fields(entry, file=path, prefix=field, allowed=("value", "source", "fit"))
        if e.has("source") == e.has("fit"):
            fail("needs exactly one of source (where the value comes from) or fit (the fit record). Fix: add "
                 "source: '<document, section>' or fit: '<fit record path>: <held-out error>'.")
        origin = e.text("source" if e.has("source") else "fit", hint="source: 'Megatron-Core docs, ...'")
        items[key] = Item(check_value(value_kind, e.required("value"), fail), origin, fitted=e.has("fit"))
    return StackProfile(name=name, kind=kind, title=r.text("title", hint="title: Megatron-Core with TE"),
                        versions=r.text("versions", hint="versions: 'Megatron-Core 0.8-0.14'"), items=items,
                        path=path)


def load_stack(name: str | None, kind: str, *, file: str | None = None) -> StackProfile:
    """The stack profile `name` of `kind` (the kind's default when None); an unknown name is an error naming
    the scenario key and the shipped stacks."""
    if kind not in STACK_KINDS:
        raise EmulatorError(f"unknown stack kind {kind!r}")
    name = name or DEFAULT_STACK[kind]
    path = _folder(kind) / f"{name}.yaml"
    if not path.is_file():
        known = list_stacks(kind)
        raise EmulatorError(f"is '{name}', not a shipped {kind} stack; {nearest(name, known)} Fix: use one of "
                            f"{', '.join(known)}.", file=file, field=SCENARIO_KEY[kind])
    return _load(str(path), path.stat().st_mtime_ns)


def runs_on(stack: StackProfile, vendor: str) -> bool:
    """Whether `stack` runs on the chips of `vendor` (a device profile's `vendor`)."""
    vendors = stack.get("platform.vendors")
    return not vendors or vendor in vendors


def stack_for(name: str | None, kind: str, vendor: str, *, file: str | None = None) -> str:
    """The stack of `kind` a scenario on `vendor`'s chips runs: `name`, checked to run there (else an error naming
    the scenario key), or with None the default, else the first fallback that runs there."""
    if name is not None:
        stack = load_stack(name, kind, file=file)
        if not runs_on(stack, vendor):
            others = [n for n in list_stacks(kind) if runs_on(load_stack(n, kind), vendor)]
            raise EmulatorError(f"is '{name}': {stack.title} runs on {', '.join(stack.get('platform.vendors'))} "
                                f"devices only, and this device is {vendor}'s. Fix: use one of {', '.join(others)}.",
                                file=file, field=SCENARIO_KEY[kind])
        return name
    # the fallbacks end with `eager`, which runs on every vendor's chips
    return next(c for c in (DEFAULT_STACK[kind], *FALLBACK_STACKS[kind]) if runs_on(load_stack(c, kind), vendor))


def stack_of(section: Any, kind: str) -> StackProfile:
    """The stack a scenario section names (`framework` of training, `engine` of a ServingSpec), with the section's
    own item values (`framework_settings`, `engine_settings`) in place of the profile's."""
    training = kind == "training"
    name = getattr(section, "framework" if training else "engine", None)
    stack = load_stack(name, kind, file=getattr(section, "path", None) or None)
    return stack.with_settings(getattr(section, "framework_settings" if training else "engine_settings", ()))


def parse_settings(data: Any, kind: str, path: str, where: str) -> tuple[tuple[str, Any], ...]:
    """A scenario's `engine_settings` or `framework_settings` mapping (stack item -> the run's value) checked against
    the item schema: unknown items, items of the other kind of stack and values of the wrong type are errors naming
    the field."""
    if not isinstance(data, dict) or not data:
        example = "{defaults.ep_overlap: true}" if kind == "training" else "{host.overlap: true}"
        raise EmulatorError(f"must map stack items to values, e.g. {example}. Fix: see the items of "
                            "stack_profiles/README.md.", file=path, field=where)
    out = []
    for key, value in data.items():
        fail = _failer(path, f"{where}.{key}")
        if key == "platform.vendors":  # what the engine runs on is its profile's fact, not a deployment's choice
            fail(f"is where the {kind} stack runs, not a setting of the run. Fix: delete it; name a stack that runs "
                 "on the device.")
        out.append((str(key), check_value(_item_kind(key, kind, fail), value, fail)))
    return tuple(sorted(out))
