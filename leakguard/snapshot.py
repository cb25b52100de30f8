"""What a process holds at one moment, keyed by identity, and the difference of two moments.

A snapshot is compared by identity, never by count: a task or a thread by the object
itself, a child process by pid and start time (a pid can be reused), an fd by its number and
its link target (a socket's or a pipe's target holds its inode, so a closed fd whose number
was reused by a new socket is a new fd). ``after - before`` is what appeared in between.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

from sockscope.fds import Fd
from sockscope.process import ChildProcess

__all__ = ["EMPTY", "FdKey", "ProcessKey", "Snapshot"]

ProcessKey = tuple[int, int]  # pid, start time in clock ticks
FdKey = tuple[int, str]  # fd number, link target


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """Pending tasks, live threads, child processes and open fds at one moment."""

    tasks: frozenset[asyncio.Task[Any]] = frozenset()
    threads: frozenset[threading.Thread] = frozenset()
    processes: Mapping[ProcessKey, ChildProcess] = dataclasses.field(default_factory=dict)
    fds: Mapping[FdKey, Fd] = dataclasses.field(default_factory=dict)

    def __sub__(self, other: Snapshot) -> Snapshot:
        return Snapshot(
            self.tasks - other.tasks,
            self.threads - other.threads,
            {k: v for k, v in self.processes.items() if k not in other.processes},
            {k: v for k, v in self.fds.items() if k not in other.fds},
        )

    def __or__(self, other: Snapshot) -> Snapshot:
        return Snapshot(
            self.tasks | other.tasks,
            self.threads | other.threads,
            {**self.processes, **other.processes},
            {**self.fds, **other.fds},
        )

    def __bool__(self) -> bool:
        return bool(self.tasks or self.threads or self.processes or self.fds)

    @property
    def socket_inodes(self) -> frozenset[int]:
        """The inodes of the sockets among the fds."""
        return frozenset(fd.inode for fd in self.fds.values() if fd.kind == "socket" and fd.inode)


EMPTY = Snapshot()
