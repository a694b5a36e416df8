"""The project's one user-facing error type.

Every problem a user can fix (a bad scenario file, an unknown device, a model that does not fit) is raised as
`EmulatorError` with a message that names the file, the field and the fix. The CLI prints the message and
exits with status 2; it never shows a traceback for these.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# difflib's ratio (2 x matching characters / total) above which a name reads as a typo of another: 'bf61' -> 'bf16'
# is 0.75, 'fp9' -> 'fp8' 0.67, while unrelated names sharing a digit ('gemma2' -> 'gpt2') score 0.4.
SIMILARITY_CUTOFF = 0.6
MIN_PREFIX_CHARS = 2  # a name the user shortened ('h100' for 'h100-sxm') is suggested from this many characters
MAX_LISTED = 40  # every shipped list (devices, presets, keys) is shorter; a longer one is cut with its count


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
    """A short 'did you mean' phrase naming the closest known names, when one is close enough to be a likely typo;
    otherwise every supported name (a distant guess misleads: 'gemma2' is not a misspelling of 'gpt2')."""
    choices = sorted(set(choices))
    folded = name.lower()
    close = [c for c in choices if len(folded) >= MIN_PREFIX_CHARS and c.lower().startswith(folded)][:n]
    close += [c for c in difflib.get_close_matches(name, choices, n=n, cutoff=SIMILARITY_CUTOFF) if c not in close]
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close[:n]) + "?"
    shown = ", ".join(choices[:MAX_LISTED]) + (f", ... ({len(choices)} in all)" if len(choices) > MAX_LISTED else "")
    return f"no known name is close; the supported names are: {shown}."
