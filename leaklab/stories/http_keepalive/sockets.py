"""Which of a process's sockets belong to the story's link, by exact address pairs. Pure.

The caller's side of the link is every caller socket whose peer is the callee's listening
address; the callee's side is every callee socket on its listening address with a peer,
except the lab's own (its sampler's connection, named by its exact address). A port number
alone would not do: other programs on the host may use the same numbers on other addresses.
:func:`read_sockets` is the thin psutil shell around it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from typing import NamedTuple

import psutil

__all__ = ["Address", "SocketRow", "callee_side", "caller_side", "read_sockets"]

Address = tuple[str, int]


class SocketRow(NamedTuple):
    """One TCP socket of a process: its address, its peer's (None when listening), its state."""

    local: Address
    remote: Address | None
    state: str


def caller_side(rows: Iterable[SocketRow], callee: Address) -> dict[str, int]:
    """The caller's sockets to the callee, counted by TCP state."""
    return dict(Counter(row.state for row in rows if row.remote == callee))


def callee_side(
    rows: Iterable[SocketRow], callee: Address, exclude: Collection[Address] = ()
) -> dict[str, int]:
    """The callee's connections on its listening address, counted by TCP state.

    ``exclude`` names peers that are not the caller (the lab's own sampler connection).
    """
    return dict(
        Counter(
            row.state
            for row in rows
            if row.local == callee and row.remote is not None and row.remote not in exclude
        )
    )


def read_sockets(pid: int) -> tuple[int, list[SocketRow]] | None:
    """``pid``'s open fd count and its TCP sockets (psutil, found through its own fds).

    None if the process is gone or cannot be read.
    """
    try:
        process = psutil.Process(pid)
        fds = process.num_fds()
        connections = process.net_connections("tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    rows = [
        SocketRow(
            (c.laddr.ip, c.laddr.port),
            (c.raddr.ip, c.raddr.port) if c.raddr else None,
            c.status,
        )
        for c in connections
    ]
    return fds, rows
