"""The project's one user-facing error type.

Every problem a user can fix (a bad scenario file, an unknown device, a model that does not fit) is raised as
`EmulatorError` with a message that names the file, the field and the fix. The CLI prints the message and
exits with status 2; it never shows a traceback for these.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EmulatorError(Exception):
    """A user-facing error: one paragraph naming the file, the field and the fix."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None) -> None:
        where = []
        if file:
            where.append(str(file))
        if field:
            where.append(f"field '{field}'")
        prefix = (": ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
        self.message = message
        self.file = file
        self.field = field


def nearest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """A short 'did you mean' phrase listing the closest known names (or all of them when few)."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.4)
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f"known names: {shown}"
