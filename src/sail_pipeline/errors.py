"""The errors a user fixes (a parameter, a file, an environment variable), as one base class.

`kedro run` (sail_pipeline.cli) prints such an error as its type and message, not as the
traceback of the machinery that found it; `SAIL_TRACEBACK=1` prints the traceback too.
"""

from __future__ import annotations

TRACEBACK_VARIABLE = "SAIL_TRACEBACK"


class UserError(Exception):
    """A problem in what the user gave: its message says what and where, and how to fix it."""


class MissingEnvironmentVariable(UserError, ValueError):
    """`${env:NAME}` in the configuration, and NAME is not set."""


def explain(error: BaseException) -> str | None:
    """The message to show for `error` (or for one it was raised from), or None for a bug."""
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UserError):
            return f"{type(current).__name__}: {current}"
        current = current.__cause__ or current.__context__
    return None
