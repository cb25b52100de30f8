"""One test under guard, from the start of its setup to the end of its teardown.

The test is compared with itself: what the process holds after its teardown against what
it held before its setup, so function-scoped fixtures count as the test's own. Three things
are kept out:

- what existed before the setup: the session's own files and threads, pytest's, and
  whatever higher-scoped fixtures set up for earlier tests;
- what a module-, class-, package- or session-scoped fixture creates while it is set up
  during this test (the first test that needs it): the plugin takes a snapshot around that
  fixture's setup and the guard *owns* the difference, as the fixture does;
- what the allow-lists allow.

Tasks are looked at twice: when a loop runner closes its loop during the test (it would
cancel them, see :mod:`leakguard.loops`), and after the teardown. Unread backlogs are looked
at when the test function returns, while its servers and clients are still up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from typing import Any

from leakguard.allow import AllowList
from leakguard.findings import Backlog, Findings, Growth, TaskLeak
from leakguard.loops import LoopCloseWatch, pending_tasks, wait_letting_loops_run
from leakguard.options import GuardOptions
from leakguard.probe import describe, read_backlogs, take_snapshot, task_leak
from leakguard.settle import settle
from leakguard.snapshot import EMPTY, Snapshot
from sockscope.tasks import task_stack

__all__ = ["GuardHandle", "ItemGuard", "socket_inodes"]


class ItemGuard:
    """The state and checks of one guarded test."""

    def __init__(
        self, nodeid: str, options: GuardOptions, delays: list[float], *, traced: bool
    ) -> None:
        self.nodeid = nodeid
        self.options = options
        self.delays = delays
        self.traced = traced
        self.before = EMPTY
        self.owned = EMPTY
        self._closed_loop_tasks: list[TaskLeak] = []
        self._backlog: tuple[Backlog, ...] = ()
        self._watch = LoopCloseWatch(self._counts, self._on_loop_close, delays)
        self._watching = False

    @property
    def mode(self) -> str:
        """``fail`` or ``warn``."""
        return self.options.mode

    def start(self) -> None:
        """Take the snapshot before the setup; watch loop runners from now on."""
        self.before = take_snapshot()
        if "tasks" not in self.options.ignore:
            self._watch.__enter__()
            self._watching = True

    def own(self, snapshot: Snapshot) -> None:
        """Keep out what a higher-scoped fixture created while it was set up."""
        self.owned = self.owned | snapshot

    def allow(self, extra: AllowList) -> None:
        """Allow more, from inside the test (the ``leak_guard`` fixture)."""
        self.options = GuardOptions(
            self.options.mode, self.options.allow + extra, self.options.ignore
        )

    def check_backlog(self, excluded_inodes: Collection[int]) -> None:
        """When the test function returned: sockets holding bytes nobody read."""
        if "backlog" in self.options.ignore:
            return
        allow = self.options.allow

        def look() -> tuple[Backlog, ...]:
            backlogs = read_backlogs(excluded_inodes)
            return tuple(b for b in backlogs if not allow.allows_socket(b.socket))

        self._backlog = settle(look, lambda found: not found, self._wait, self.delays)

    def finish(self, growth: Iterable[Growth] = ()) -> Findings:
        """After the teardown: everything the test left, once the settle gave it time to go."""
        self.stop_watching()

        def look(*, traced: bool = False) -> Findings:
            return self._filter(describe(take_snapshot() - self.before - self.owned, traced=traced))

        left = settle(look, lambda found: not found, self._wait, self.delays)
        if left and self.traced:
            left = look(traced=True)
        early = Findings(
            tasks=tuple(self._closed_loop_tasks), backlog=self._backlog, growth=tuple(growth)
        )
        return self._filter(early) + left

    def stop_watching(self) -> None:
        """Stop watching loop runners (idempotent)."""
        if self._watching:
            self._watch.__exit__(None, None, None)
            self._watching = False

    def _filter(self, findings: Findings) -> Findings:
        return self.options.allow.filter(findings).without(self.options.ignore)

    def _wait(self, delay_s: float) -> None:
        wait_letting_loops_run(
            (task for task in pending_tasks() if task not in self.before.tasks), delay_s
        )

    def _counts(self, task: asyncio.Task[Any]) -> bool:
        if task in self.before.tasks or task in self.owned.tasks:
            return False
        return not self.options.allow.allows_task(task_stack(task))

    def _on_loop_close(self, tasks: list[asyncio.Task[Any]]) -> None:
        where = "cancelled when its loop closed"
        self._closed_loop_tasks += [task_leak(t, where, traced=self.traced) for t in tasks]


class GuardHandle:
    """What the ``leak_guard`` fixture gives a test: allow more from inside it."""

    def __init__(self, guard: ItemGuard | None) -> None:
        self._guard = guard

    @property
    def active(self) -> bool:
        """Whether this test is guarded (not switched off by ``leak_guard(off=True)``)."""
        return self._guard is not None

    def allow(
        self,
        *,
        tasks: Iterable[str] = (),
        threads: Iterable[str] = (),
        processes: Iterable[str] = (),
        fds: Iterable[str] = (),
        sockets: Iterable[str] = (),
    ) -> None:
        """Allow these patterns for the rest of this test (see :mod:`leakguard.allow`)."""
        if self._guard is not None:
            extra = AllowList(
                tuple(tasks), tuple(threads), tuple(processes), tuple(fds), tuple(sockets)
            )
            self._guard.allow(extra)


def socket_inodes(findings: Findings) -> set[int]:
    """The inodes of the sockets a report names (each is reported once per session)."""
    inodes = {leak.fd.inode for leak in findings.fds if leak.fd.kind == "socket" and leak.fd.inode}
    inodes |= {b.socket.inode for b in findings.backlog if b.socket.inode}
    return inodes
