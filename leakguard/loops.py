"""Where the guard finds asyncio tasks, and how it lets event loops finish their work.

- Every pending task of the process, on any loop in any thread, is in asyncio's own task
  registry (a weak set that ``asyncio.all_tasks()`` filters by loop).
- Between a test's phases its loop is idle: pytest-asyncio runs it only inside each fixture
  and test. To let its tasks end during the settle, the guard runs such an idle loop for the
  delay instead of sleeping.
- ``asyncio.Runner.close()`` (``asyncio.run``, pytest-asyncio's loops, anyio's asyncio
  runner) cancels every task still pending before it closes the loop, which would hide leaked
  tasks from a look after the test. While a :class:`LoopCloseWatch` is active it lets the loop
  settle first, and hands the tasks still pending to the guard before they are cancelled.
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import importlib.util
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from leakguard.settle import settle

__all__ = ["LoopCloseWatch", "create_process_globals", "pending_tasks", "wait_letting_loops_run"]

Task = asyncio.Task[Any]

# Names of asyncio's task registries across Python versions (3.11: _all_tasks; 3.12+ also
# keeps eagerly started tasks apart).
_REGISTRIES = ("_all_tasks", "_scheduled_tasks", "_eager_tasks")


def create_process_globals() -> None:
    """Create, before the first test, what event loop libraries create once per process.

    libuv (under uvloop, uvicorn's default loop when installed) opens a pipe the first time
    a loop is made and keeps it until the process exits. Made at session start, it is the
    session's, not the leak of whichever test first started a uvloop loop.
    """
    if importlib.util.find_spec("uvloop") is None:
        return
    import uvloop

    loop = uvloop.new_event_loop()
    loop.close()


def pending_tasks() -> list[Task]:
    """The tasks not done yet on every event loop of this process."""
    found: set[Task] = set()
    for name in _REGISTRIES:
        registry = getattr(asyncio.tasks, name, None)
        if registry is not None:
            found.update(_copy(registry))
    return [task for task in found if not task.done()]


def wait_letting_loops_run(tasks: Iterable[Task], delay_s: float) -> None:
    """Wait ``delay_s``, running the idle loops of ``tasks`` meanwhile so that they can end."""
    idle = {task.get_loop() for task in tasks}
    idle = {loop for loop in idle if not loop.is_running() and not loop.is_closed()}
    if not idle or asyncio.events._get_running_loop() is not None:
        time.sleep(delay_s)
        return
    for loop in idle:
        try:
            loop.run_until_complete(asyncio.sleep(delay_s / len(idle)))
        except RuntimeError:  # started meanwhile in another thread, or closed
            time.sleep(delay_s / len(idle))


class LoopCloseWatch:
    """While active, a closing ``asyncio.Runner`` lets its loop settle and reports what is left.

    ``counts(task)`` says which pending tasks matter (not those that existed before the test);
    ``report(tasks)`` receives those still pending after the settle, before they are cancelled.
    """

    def __init__(
        self,
        counts: Callable[[Task], bool],
        report: Callable[[list[Task]], None],
        delays: list[float],
    ) -> None:
        self._counts = counts
        self._report = report
        self._delays = delays
        self._original: Callable[[asyncio.AbstractEventLoop], None] | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> LoopCloseWatch:
        # The only seam: Runner.close() calls this module-level function of asyncio.runners.
        self._original = getattr(asyncio.runners, "_cancel_all_tasks", None)
        if self._original is not None:
            asyncio.runners._cancel_all_tasks = self._cancel_all_tasks  # type: ignore[attr-defined]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if getattr(asyncio.runners, "_cancel_all_tasks", None) == self._cancel_all_tasks:
            asyncio.runners._cancel_all_tasks = self._original  # type: ignore[attr-defined]

    def _cancel_all_tasks(self, loop: asyncio.AbstractEventLoop) -> None:
        def look() -> list[Task]:
            return [task for task in asyncio.all_tasks(loop) if self._counts(task)]

        def wait(delay_s: float) -> None:
            loop.run_until_complete(asyncio.sleep(delay_s))

        left = settle(look, lambda tasks: not tasks, wait, self._delays)
        if left:
            with self._lock:
                self._report(left)
        assert self._original is not None
        self._original(loop)


def _copy(registry: Iterable[Task]) -> list[Task]:
    # Another thread may add a task while we copy: retry, as asyncio.all_tasks() does.
    for _ in range(1000):
        try:
            return list(registry)
        except RuntimeError:
            continue
    return []
