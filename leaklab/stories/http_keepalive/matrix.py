"""The http-keepalive story's matrix: which cells a run has, and what each is expected to show."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping

from leaklab.stories.http_keepalive.settings import CLIENTS, CONNECTIONS

__all__ = [
    "AXES",
    "DRIVE_DEFAULT",
    "DRIVE_QUICK",
    "KEEP_ALIVE_DEFAULT",
    "KEEP_ALIVE_LONG",
    "KEEP_ALIVE_QUICK",
    "Cell",
    "Drive",
    "KeepAlive",
    "build_matrix",
    "expected_verdict",
]

_CLIENT_LABELS = {
    "unclosed": "client per request, unclosed",
    "closed": "client per request, closed",
    "shared": "one shared client",
    "dropped": "client per request, dropped",
}


@dataclasses.dataclass(frozen=True)
class KeepAlive:
    """The callee's keep-alive timeout (uvicorn's ``timeout_keep_alive``)."""

    name: str  # the axis value: "short" or "long"
    seconds: int


KEEP_ALIVE_DEFAULT = KeepAlive("short", 5)  # uvicorn's default
# --quick: long enough for a cell's connections to be idle between requests, short enough
# for the whole mask to show within a few seconds. It stands for uvicorn's 5 s.
KEEP_ALIVE_QUICK = KeepAlive("short", 2)
# Go's bare transport has no idle limit at all; an hour is "for ever" for a cell.
KEEP_ALIVE_LONG = KeepAlive("long", 3600)


@dataclasses.dataclass(frozen=True)
class Drive:
    """The lab's load on /forward: ``requests`` one after the other, then ``hold_s`` idle."""

    requests: int
    rate_per_s: float
    hold_s: float

    @property
    def duration_s(self) -> float:
        """About how long the cell runs, start and stop of its processes aside."""
        return self.requests / self.rate_per_s + self.hold_s


# The seed's loop: 400 requests (curl in a loop), then long enough idle for uvicorn's 5 s.
DRIVE_DEFAULT = Drive(requests=400, rate_per_s=20.0, hold_s=10.0)
# 150 requests in 2.5 s, then 3 s idle: the quick keep-alive (2 s) has expired for every one.
DRIVE_QUICK = Drive(requests=150, rate_per_s=60.0, hold_s=3.0)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One experiment: how the caller makes its clients, and how the callee treats idle ones."""

    client: str  # one of CLIENTS
    keep_alive: KeepAlive
    connection: str = "keep-alive"  # one of CONNECTIONS: what the callee's /hello answers
    drive: Drive = DRIVE_DEFAULT

    @property
    def name(self) -> str:
        """A short unique name, usable as a file name."""
        return f"{self.client}_keep-alive-{self.keep_alive.seconds}s_{self.connection}"

    @property
    def label(self) -> str:
        """A human label for tables and charts."""
        parts = [_CLIENT_LABELS[self.client], f"keep-alive {self.keep_alive.seconds} s"]
        if self.connection == "close":
            parts.append("Connection: close")
        return ", ".join(parts)

    def settings(self) -> dict[str, str]:
        """The cell's axes, as written to summary.json."""
        return {
            "client": self.client,
            "keep_alive": f"{self.keep_alive.seconds}s",
            "connection": self.connection,
        }


def expected_verdict(cell: Cell) -> str:
    """A kept, unclosed client leaks; a short keep-alive moves it to the caller (masked)."""
    if cell.client != "unclosed" or cell.connection == "close":
        return "healthy"
    return "masked" if cell.keep_alive.name == "short" else "leak"


AXES: dict[str, tuple[str, ...]] = {
    "client": CLIENTS,
    "keep_alive": ("short", "long"),
    "connection": CONNECTIONS,
}


def build_matrix(
    scope: str = "default", only: Mapping[str, tuple[str, ...]] | None = None
) -> list[Cell]:
    """The cells of a scope, or, with ``only``, every combination of the chosen axis values.

    quick (the demo's): the leak, its mask with a 2 s keep-alive, and both fixes, 150
    requests each. default: the three clients x uvicorn's 5 s / an hour, and Connection:
    close for the unclosed client; 400 requests each. full: every combination of every axis.
    An axis ``only`` does not name keeps every value.
    """
    quick = scope == "quick"
    short = KEEP_ALIVE_QUICK if quick else KEEP_ALIVE_DEFAULT
    drive = DRIVE_QUICK if quick else DRIVE_DEFAULT
    keep_alives = {"short": short, "long": KEEP_ALIVE_LONG}
    if only:
        chosen = {axis: only.get(axis, values) for axis, values in AXES.items()}
        return [
            Cell(client, keep_alives[keep_alive], connection, drive)
            for connection, client, keep_alive in itertools.product(
                chosen["connection"], chosen["client"], chosen["keep_alive"]
            )
        ]
    if quick:
        return [
            Cell("unclosed", KEEP_ALIVE_LONG, drive=drive),
            Cell("unclosed", short, drive=drive),
            Cell("closed", KEEP_ALIVE_LONG, drive=drive),
            Cell("shared", KEEP_ALIVE_LONG, drive=drive),
        ]
    clients = CLIENTS if scope == "full" else ("unclosed", "closed", "shared")
    cells = [
        Cell(client, keep_alive, "keep-alive", drive)
        for client, keep_alive in itertools.product(clients, (KEEP_ALIVE_LONG, short))
    ]
    close_clients = clients if scope == "full" else ("unclosed",)
    cells += [
        Cell(client, keep_alive, "close", drive)
        for client, keep_alive in itertools.product(close_clients, (KEEP_ALIVE_LONG, short))
    ]
    return cells
