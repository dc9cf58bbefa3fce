"""User-facing errors: one line, no traceback, exit status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """A mistake of the user (bad suite, bad flag, bad data file). Printed as one line."""

    exit_code = 2


class ConfigError(BenchError):
    """Every problem found in one suite file, reported at once."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class DataError(BenchError):
    """A data file that cannot be read as the dataset's format; names file, line/entry, expectation."""


class ModelUnavailableError(BenchError):
    """The model's weights cannot be loaded here (no hub, no local copy)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean "x"?)' for the closest valid name, or the valid names when none is close."""
    choices = sorted(choices)
    if not choices:
        return " (none is registered)"
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f' (did you mean "{close[0]}"?)'
    if len(choices) <= 12:
        return f" (valid: {', '.join(choices)})"
    return ""
