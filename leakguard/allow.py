"""Allow-lists: what a test may leave behind, by coroutine, thread, command, fd or address.

Patterns are shell-style globs (``fnmatch``, case-sensitive): ``*`` matches anything, and
``[`` starts a character class, so ``anon_inode:*`` rather than ``anon_inode:[eventfd]``.

- tasks: the task's await chain as the report writes it (``serve > sleep``), its outermost
  coroutine's qualname, or the task's name;
- threads: the thread's name; processes: the child's command line;
- fds: the fd's target, as ``/proc/self/fd`` links it: a path, ``pipe:[...]``, ``socket:[...]``;
- sockets: the local or the peer address, ``127.0.0.1:5672``, ``[::1]:*``, a Unix path
  (for open sockets and for unread backlogs alike).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable

from leakguard.findings import Backlog, FdLeak, Findings, ProcessLeak, TaskLeak, ThreadLeak
from sockscope.sockets import SocketInfo
from sockscope.tasks import TaskStack

__all__ = ["ALLOW_KINDS", "DEFAULT_ALLOW", "AllowList", "matches"]

ALLOW_KINDS = ("tasks", "threads", "processes", "fds", "sockets")


@dataclasses.dataclass(frozen=True, slots=True)
class AllowList:
    """Patterns of what may stay, by kind."""

    tasks: tuple[str, ...] = ()
    threads: tuple[str, ...] = ()
    processes: tuple[str, ...] = ()
    fds: tuple[str, ...] = ()
    sockets: tuple[str, ...] = ()

    def __add__(self, other: AllowList) -> AllowList:
        return AllowList(*(getattr(self, kind) + getattr(other, kind) for kind in ALLOW_KINDS))

    def allows_task(self, stack: TaskStack) -> bool:
        """Whether a pending task with this stack may stay."""
        chain = stack.chain
        names = (" > ".join(chain), chain[0] if chain else "", stack.name)
        return any(matches(self.tasks, name) for name in names)

    def allows_socket(self, info: SocketInfo) -> bool:
        """Whether this socket may stay open or hold a backlog."""
        return matches(self.sockets, info.local) or (
            info.peer is not None and matches(self.sockets, info.peer)
        )

    def filter(self, findings: Findings) -> Findings:
        """The findings this allow-list does not allow."""
        return Findings(
            tasks=tuple(t for t in findings.tasks if not self._task(t)),
            threads=tuple(t for t in findings.threads if not self._thread(t)),
            processes=tuple(p for p in findings.processes if not self._process(p)),
            fds=tuple(f for f in findings.fds if not self._fd(f)),
            backlog=tuple(b for b in findings.backlog if not self._backlog(b)),
            growth=findings.growth,  # growth is counted over everything: a cache must not grow
        )

    def _task(self, leak: TaskLeak) -> bool:
        return self.allows_task(leak.stack)

    def _thread(self, leak: ThreadLeak) -> bool:
        return matches(self.threads, leak.name)

    def _process(self, leak: ProcessLeak) -> bool:
        return matches(self.processes, leak.process.command)

    def _fd(self, leak: FdLeak) -> bool:
        if matches(self.fds, leak.fd.target):
            return True
        return leak.socket is not None and self.allows_socket(leak.socket)

    def _backlog(self, backlog: Backlog) -> bool:
        return self.allows_socket(backlog.socket)


def matches(patterns: Iterable[str], text: str) -> bool:
    """Whether any glob in ``patterns`` matches ``text``."""
    return any(fnmatch.fnmatchcase(text, pattern) for pattern in patterns)


# What test runners themselves leave pending, never the test's doing: anyio's pytest plugin
# keeps one task on its loop that runs the test and its fixtures until the runner closes.
DEFAULT_ALLOW = AllowList(tasks=("TestRunner._run_tests_and_fixtures",))
