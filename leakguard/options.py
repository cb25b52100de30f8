"""How a test's guard is chosen: the command line, the ini file, the marker, the fixture.

Off unless asked for. ``--leak-guard`` (or ``--leak-guard=warn``) guards every test; the
``leak_guard`` marker or fixture guards one test, and the marker may also switch it off
(``off=True``), choose the mode, ignore kinds of check, and allow more. Pure functions over
the values pytest hands over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

from leakguard.allow import ALLOW_KINDS, AllowList
from leakguard.findings import KINDS

__all__ = [
    "INI_ALLOW",
    "MARKER_HELP",
    "MODES",
    "GuardOptions",
    "Mode",
    "allow_from_ini",
    "normalize_args",
    "resolve",
]

Mode = Literal["fail", "warn"]
MODES: tuple[Mode, ...] = ("fail", "warn")

# ini option name -> AllowList field
INI_ALLOW = {f"leak_guard_allow_{kind}": kind for kind in ALLOW_KINDS}
MARKER_KEYS = frozenset({"off", "mode", "ignore"} | {f"allow_{kind}" for kind in ALLOW_KINDS})

MARKER_HELP = (
    "leak_guard(*, off=False, mode='fail'|'warn', ignore=[kinds], allow_tasks=[...], "
    "allow_threads=[...], allow_processes=[...], allow_fds=[...], allow_sockets=[...]): "
    "check that this test leaves no task, thread, child process, fd or unread socket backlog "
    f"behind (kinds: {', '.join(KINDS)}); patterns are globs"
)


@dataclasses.dataclass(frozen=True, slots=True)
class GuardOptions:
    """How one test is guarded."""

    mode: Mode
    allow: AllowList
    ignore: frozenset[str] = frozenset()


def resolve(
    session_mode: Mode | None,
    marker: Mapping[str, Any] | None,
    requested: bool,
    allow: AllowList,
) -> GuardOptions | None:
    """The options of one test, or None when it is not guarded.

    ``marker`` holds the keyword arguments of the test's ``leak_guard`` marker (None without
    one); ``requested`` says whether the test asked for the ``leak_guard`` fixture.
    """
    if marker is not None:
        unknown = set(marker) - MARKER_KEYS
        if unknown:
            raise ValueError(
                f"leak_guard marker: unknown argument(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(MARKER_KEYS))}"
            )
        if marker.get("off"):
            return None
    mode = (marker or {}).get("mode") or session_mode
    if mode is None:
        if marker is None and not requested:
            return None
        mode = "fail"
    if mode not in MODES:
        raise ValueError(f"leak_guard marker: mode must be 'fail' or 'warn', not {mode!r}")
    ignore = frozenset(patterns((marker or {}).get("ignore", ()), "ignore"))
    if ignore - set(KINDS):
        raise ValueError(f"leak_guard marker: ignore takes kinds among {', '.join(KINDS)}")
    extra = AllowList(
        *(
            patterns((marker or {}).get(f"allow_{kind}", ()), f"allow_{kind}")
            for kind in ALLOW_KINDS
        )
    )
    return GuardOptions(cast(Mode, mode), allow + extra, ignore)


def allow_from_ini(getini: Callable[[str], Sequence[str]]) -> AllowList:
    """The allow-list of the ini file's ``leak_guard_allow_*`` options."""
    return AllowList(**{kind: tuple(getini(name)) for name, kind in INI_ALLOW.items()})


def patterns(value: object, name: str) -> tuple[str, ...]:
    """A pattern or a sequence of patterns, as a tuple of strings."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"leak_guard marker: {name} takes a string or a list of strings")


def normalize_args(args: Sequence[str]) -> list[str]:
    """Spell a bare ``--leak-guard`` as ``--leak-guard=fail``.

    The option's value is optional, and argparse would otherwise take the next argument
    (``pytest --leak-guard tests/``, or any path after an ``addopts`` that ends with it) as
    the mode.
    """
    return ["--leak-guard=fail" if arg == "--leak-guard" else arg for arg in args]
