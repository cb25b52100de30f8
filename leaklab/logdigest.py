"""What a child process logged, in a few lines: its warnings, errors and exceptions, counted.

A service at its fd limit can log thousands of lines a second, or nothing at all; a report
quotes what it said, grouped: the same message with other numbers in its ``key=value``
fields is one entry. Pure functions over the log's text.
"""

from __future__ import annotations

import collections
import re

__all__ = ["count_errors", "log_digest"]

# uvicorn's own lines ("ERROR:    message") and the service's ("<date> <time> ERROR name: message").
_UVICORN = re.compile(r"^(WARNING|ERROR|CRITICAL):\s+(.*)$")
_SERVICE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+): (.*)$")
# The last line of a traceback: "OSError: [Errno 24] Too many open files: '/proc/net/tcp'".
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.*)$")
_NUMBER_FIELD = re.compile(r"=\d+(?:\.\d+)?")
MAX_TEXT = 160


def _entry(line: str) -> str | None:
    """The grouping key of a warning, error or exception line; None for anything else."""
    if match := _UVICORN.match(line):
        text = f"{match[1]}: {match[2]}"
    elif match := _SERVICE.match(line):
        text = f"{match[1]} {match[2]}: {match[3]}"
    elif match := _EXCEPTION.match(line):
        text = f"{match[1]}: {match[2]}"
    else:
        return None
    return _NUMBER_FIELD.sub("=N", text)[:MAX_TEXT]


def log_digest(text: str, *, top: int = 3) -> list[tuple[int, str]]:
    """The ``top`` most frequent warnings, errors and exceptions of a log, with their counts."""
    counts = collections.Counter(entry for line in text.splitlines() if (entry := _entry(line)))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(count, entry) for entry, count in ranked[:top]]


def count_errors(text: str) -> int:
    """How many lines of the log are warnings, errors or exceptions."""
    return sum(_entry(line) is not None for line in text.splitlines())
