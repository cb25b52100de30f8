"""What a test left behind, as plain data: the guard finds these, allow-lists filter them,
the report formats them."""

from __future__ import annotations

import dataclasses

from sockscope.fds import Fd
from sockscope.process import ChildProcess
from sockscope.sockets import SocketInfo
from sockscope.tasks import TaskStack

__all__ = [
    "KINDS",
    "Backlog",
    "FdLeak",
    "Findings",
    "Growth",
    "ProcessLeak",
    "TaskLeak",
    "ThreadLeak",
]

# The kinds of check, as the ``ignore`` option of the marker names them.
KINDS = ("tasks", "threads", "processes", "fds", "backlog", "growth")


@dataclasses.dataclass(frozen=True, slots=True)
class TaskLeak:
    """An asyncio task still pending: its await chain and where its loop is."""

    stack: TaskStack
    where: str  # "cancelled when its loop closed", "on a running loop", ...
    created: tuple[str, ...] = ()  # where the task was created, with --leak-guard-trace


@dataclasses.dataclass(frozen=True, slots=True)
class ThreadLeak:
    """A thread still alive."""

    name: str
    target: str | None
    daemon: bool
    created: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessLeak:
    """A child process still running, or exited and never waited for."""

    process: ChildProcess
    created: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class FdLeak:
    """A file descriptor still open; for a socket, what the kernel says about it."""

    fd: Fd
    socket: SocketInfo | None = None
    created: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Backlog:
    """A TCP socket holding bytes nobody read, or a LISTEN socket with unaccepted connections."""

    socket: SocketInfo


@dataclasses.dataclass(frozen=True, slots=True)
class Growth:
    """A figure that grew at every repetition of the test: its values after each run."""

    figure: str  # "fds", "tasks", "rss_bytes"
    values: tuple[int, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Findings:
    """Everything one test left behind."""

    tasks: tuple[TaskLeak, ...] = ()
    threads: tuple[ThreadLeak, ...] = ()
    processes: tuple[ProcessLeak, ...] = ()
    fds: tuple[FdLeak, ...] = ()
    backlog: tuple[Backlog, ...] = ()
    growth: tuple[Growth, ...] = ()

    def __bool__(self) -> bool:
        return any(getattr(self, kind) for kind in KINDS)

    def __add__(self, other: Findings) -> Findings:
        return Findings(*(getattr(self, kind) + getattr(other, kind) for kind in KINDS))

    def without(self, kinds: frozenset[str]) -> Findings:
        """The same findings less the kinds named (``ignore=``)."""
        return Findings(*(() if kind in kinds else getattr(self, kind) for kind in KINDS))
