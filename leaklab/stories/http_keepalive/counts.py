"""What each of the story's programs says about itself: asyncio tasks, fds, connections.

Cheap enough to answer on every request: a listing of ``/proc/self/fd`` and its links, no
read of ``/proc/net/tcp`` (that costs about 20 ms on a busy host; the lab reads the sockets'
states from outside, once a second).
"""

from __future__ import annotations

import asyncio
import os
from typing import TypedDict

__all__ = ["Counts", "own_counts"]

_FD_DIR = "/proc/self/fd"


class Counts(TypedDict):
    """One program's own figures at one moment."""

    pid: int
    tasks: int
    fds: int
    connections: int  # connected sockets among its fds (listening sockets excluded)


def own_counts(listening: int = 1) -> Counts:
    """This process's tasks (call in its event loop), open fds and connected sockets.

    ``listening`` is how many of its sockets are listeners (one: the socket it serves on).
    """
    names = os.listdir(_FD_DIR)
    sockets = 0
    for name in names:
        try:
            sockets += os.readlink(f"{_FD_DIR}/{name}").startswith("socket:")
        except OSError:  # closed since the listing (or the listing's own fd)
            continue
    return {
        "pid": os.getpid(),
        "tasks": len(asyncio.all_tasks()),
        "fds": len(names) - 1,  # the listing's own fd is gone once it returns
        "connections": max(0, sockets - listening),
    }
