"""One registry from aten ops to kernel families and their cost rules.

A rule takes the op's (args, kwargs, out) and returns the `Cost` of one call. Ops that move no data and
run no kernel (views, metadata) are registered as zero-cost in `copy.VIEW_OPS`. An op with no rule is
*unknown*: the tracer lists it in every result, never counting it as free.

Family modules register themselves on import; `rule_for` imports them all once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kernels.cost import Cost

Rule = Callable[[tuple[Any, ...], dict[str, Any], Any], Cost]

FAMILIES = (
    "gemm",
    "attention",
    "norm",
    "elementwise",
    "softmax",
    "embedding",
    "scatter",
    "reduction",
    "optimizer",
    "copy",
    "collective",
    "view",
)

_RULES: dict[str, tuple[str, Rule]] = {}
_loaded = False


def register(family: str, *ops: str) -> Callable[[Rule], Rule]:
    """Register `rule` for each aten op name (packet name such as 'aten.mm'). Duplicates are errors."""
    if family not in FAMILIES:
        raise ValueError(f"unknown kernel family {family!r}")

    def deco(rule: Rule) -> Rule:
        for op in ops:
            if op in _RULES:
                raise ValueError(f"{op} registered twice ({_RULES[op][0]} and {family})")
            _RULES[op] = (family, rule)
        return rule

    return deco


def _load() -> None:
    global _loaded
    if _loaded:
        return
    # Imported for their registrations.
    from kernels import (  # noqa: F401
        attention,
        collective,
        copy,
        elementwise,
        embedding,
        matmul,
        norm,
        optimizer,
        reduction,
        softmax,
    )

    _loaded = True


def rule_for(op: str) -> tuple[str, Rule] | None:
    """(family, rule) for an aten op packet name like 'aten.mm', or None when unknown."""
    _load()
    return _RULES.get(op)


def classify(op: str) -> str | None:
    """The family of an op, or None when unknown."""
    r = rule_for(op)
    return r[0] if r else None


def registered_ops() -> dict[str, str]:
    """Every registered op and its family."""
    _load()
    return {op: fam for op, (fam, _) in _RULES.items()}
