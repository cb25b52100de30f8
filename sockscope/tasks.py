"""Asyncio tasks grouped by the chain of coroutines they are awaiting, like Go's goroutine dump.

Go's ``/debug/pprof/goroutine?debug=1`` groups goroutines with identical stacks and counts
them, which is how a leak shows up at a glance. Nothing in Python does that:
``Task.get_stack()`` gives one frame for a suspended coroutine. The await chain is reachable,
though: a suspended coroutine's ``cr_await`` is what it awaits (another coroutine, a
generator's ``gi_yieldfrom``, an async generator's ``ag_await``), down to a Future. Two
wrappers hide their target behind no attribute (``FutureIter``, what ``await future``
iterates, and ``async_generator_asend``, what ``async for`` awaits); the garbage collector's
referents of each are what they wrap.

A :class:`TaskStack` is one task's chain: its coroutines with where each is suspended, and its
end, the Future (or Task) at the bottom or ``(running)`` for the task running now. Tasks with
the same chain are one :class:`StackGroup`, counted, largest first::

    40 @ Hub.serve > write_events > Queue.get > Future
     2 @ Server.serve > Server.main_loop > sleep > Future

The leak guard groups and allows tasks by their coroutines only (``serve > sleep``);
a service's ``/debug/tasks`` (:func:`render_dump`) writes the end too, and :func:`parse_dump`
reads it back. Pure introspection of the objects it is given: no I/O, no event loop needed,
safe to call from the loop's own thread (the only thread that should, since tasks change
under it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "CoroFrame",
    "StackGroup",
    "TaskStack",
    "await_chain",
    "format_groups",
    "format_stacks",
    "group_stacks",
    "group_tasks",
    "parse_dump",
    "render_dump",
    "task_stack",
]

# A chain longer than this is cut (an await cycle cannot happen, a bug elsewhere might).
MAX_DEPTH = 256
RUNNING = "(running)"
ELLIPSIS = "..."
SEPARATOR = " > "
TOTAL_PREFIX = "tasks: total "

# How coroutines, generator-based coroutines and async generators name their frame, what
# they are awaiting and whether they run.
_PARTS = (
    ("cr_frame", "cr_await", "cr_running"),
    ("gi_frame", "gi_yieldfrom", "gi_running"),
    ("ag_frame", "ag_await", "ag_running"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class CoroFrame:
    """One coroutine of an await chain and where it is suspended (file and line)."""

    qualname: str
    filename: str | None = None
    lineno: int | None = None

    @property
    def location(self) -> str | None:
        """``path/to/file.py:12``, relative to the working directory when under it."""
        if self.filename is None:
            return None
        return f"{_short_path(self.filename)}:{self.lineno}"


@dataclasses.dataclass(frozen=True, slots=True)
class TaskStack:
    """One task: its name, the coroutines it is awaiting (outermost first), what the chain
    ends in (``Future``, ``Task``, ``(running)``; None when unknown) and its state
    (``pending``, ``cancelling``, ``done``)."""

    name: str
    frames: tuple[CoroFrame, ...]
    end: str | None = None
    state: str = "pending"

    @property
    def chain(self) -> tuple[str, ...]:
        """The qualnames of the await chain, outermost first: what the leak guard shows."""
        return tuple(frame.qualname for frame in self.frames)

    @property
    def chain_with_end(self) -> tuple[str, ...]:
        """The chain and its end: what ``/debug/tasks`` shows."""
        return self.chain if self.end is None else (*self.chain, self.end)


@dataclasses.dataclass(frozen=True, slots=True)
class StackGroup:
    """Tasks with the same await chain: how many, the chain, and the first task's stack
    (None for a group read back from a dump)."""

    count: int
    chain: tuple[str, ...]
    example: TaskStack | None = dataclasses.field(default=None, compare=False)

    def format(self, count_width: int = 0, *, max_frames: int | None = None) -> str:
        """``40 @ Hub.serve > write_events > Queue.get``; past ``max_frames`` links, the first
        and the last ``max_frames - 1`` with ``...`` for the framework links in between."""
        chain: Sequence[str] = self.chain
        if max_frames is not None and len(chain) > max(max_frames, 2):
            chain = (chain[0], ELLIPSIS, *chain[len(chain) - max_frames + 1 :])
        return f"{self.count:>{count_width}} @ {SEPARATOR.join(chain) or '?'}"


def await_chain(awaitable: object) -> tuple[CoroFrame, ...]:
    """The coroutines (and generators) ``awaitable`` is awaiting, itself first."""
    return _walk(awaitable)[0]


def task_stack(task: asyncio.Future[Any]) -> TaskStack:
    """The name, await chain, end and state of one task (or bare Future)."""
    get_coro = getattr(task, "get_coro", None)
    start: object = get_coro() if get_coro is not None else task
    frames, end = _walk(start)
    if not frames and get_coro is not None:  # a task around something not a coroutine
        frames = (CoroFrame(type(start).__name__),)
    return TaskStack(_task_name(task), frames, end, _state(task))


def group_stacks(stacks: Iterable[TaskStack], *, with_end: bool = False) -> list[StackGroup]:
    """Group stacks by their chain (and its end ``with_end``): largest group first, then by
    chain for a stable order."""
    groups: dict[tuple[str, ...], list[TaskStack]] = {}
    for stack in stacks:
        groups.setdefault(stack.chain_with_end if with_end else stack.chain, []).append(stack)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [StackGroup(len(members), chain, members[0]) for chain, members in ordered]


def group_tasks(
    tasks: Iterable[asyncio.Future[Any]], *, with_end: bool = False
) -> list[StackGroup]:
    """Group tasks by the chain of coroutines they are awaiting, largest group first."""
    return group_stacks((task_stack(task) for task in tasks), with_end=with_end)


def format_groups(
    groups: Sequence[StackGroup],
    *,
    limit: int | None = None,
    max_frames: int | None = None,
    aligned: bool = False,
) -> list[str]:
    """One Go-style line per group (:meth:`StackGroup.format`), counts right-aligned if
    ``aligned``; past ``limit`` groups, one line says how many more."""
    shown = groups if limit is None else groups[:limit]
    width = max((len(str(group.count)) for group in shown), default=0) if aligned else 0
    lines = [group.format(width, max_frames=max_frames) for group in shown]
    if len(shown) < len(groups):
        rest = groups[len(shown) :]
        lines.append(f"... and {sum(g.count for g in rest)} more tasks in {len(rest)} groups")
    return lines


def format_stacks(stacks: Iterable[TaskStack]) -> list[str]:
    """Every task's chain, one link per line with its file and line, a blank line between."""
    lines: list[str] = []
    for stack in sorted(stacks, key=lambda s: s.name):
        lines.append(f"task {stack.name} [{stack.state}]:")
        for frame in stack.frames:
            where = f"  {frame.filename}:{frame.lineno}" if frame.filename else ""
            lines.append(f"    {frame.qualname}{where}")
        if stack.end is not None:
            lines.append(f"    {stack.end}")
        lines.append("")
    return lines


def render_dump(tasks: Iterable[asyncio.Future[Any]], debug: int = 1) -> str:
    """The whole dump as text: a total, then groups (``debug=1``) or every stack (``debug=2``),
    chains with their ends."""
    stacks = [task_stack(task) for task in tasks]
    if debug >= 2:
        body = format_stacks(stacks)
    else:
        body = format_groups(group_stacks(stacks, with_end=True))
    return "\n".join([f"{TOTAL_PREFIX}{len(stacks)}", "", *body]).rstrip("\n") + "\n"


def parse_dump(text: str) -> tuple[int | None, list[StackGroup]]:
    """The total and the groups of a ``debug=1`` dump (what :func:`render_dump` wrote)."""
    total: int | None = None
    groups = []
    for line in text.splitlines():
        if line.startswith(TOTAL_PREFIX):
            total = int(line.removeprefix(TOTAL_PREFIX))
            continue
        count, sep, chain = line.partition(" @ ")
        if sep and count.isdigit():
            links = () if chain == "?" else tuple(chain.split(SEPARATOR))
            groups.append(StackGroup(int(count), links))
    return total, groups


def _walk(start: object) -> tuple[tuple[CoroFrame, ...], str | None]:
    """The one walker: coroutines from ``start`` down, through iterator wrappers, and the
    chain's end (the Future's type name, ``(running)``, or None)."""
    frames: list[CoroFrame] = []
    current: object = start
    seen: set[int] = set()
    while current is not None and id(current) not in seen and len(frames) < MAX_DEPTH:
        seen.add(id(current))
        if isinstance(current, asyncio.Future):
            # The bottom: what the chain waits for. Stop here (an awaited Task has its own).
            return tuple(frames), type(current).__name__
        link = _code_link(current)
        if link is None:
            current = _unwrapped(current)
            continue
        frame, awaited, is_running = link
        frames.append(frame)
        if is_running:
            return tuple(frames), RUNNING
        current = awaited
    return tuple(frames), None


def _code_link(obj: object) -> tuple[CoroFrame, object, bool] | None:
    """For a coroutine, generator or async generator: its frame, what it awaits, and whether
    it is running; None for anything else."""
    for frame_attr, await_attr, running_attr in _PARTS:
        if hasattr(obj, await_attr):
            frame = getattr(obj, frame_attr, None)
            awaited = getattr(obj, await_attr)
            # An async generator counts as running while an ``asend`` is suspended in it.
            is_running = awaited is None and bool(getattr(obj, running_attr, False))
            name = getattr(obj, "__qualname__", None) or type(obj).__name__
            if frame is None:
                return CoroFrame(name), awaited, is_running
            return CoroFrame(name, frame.f_code.co_filename, frame.f_lineno), awaited, is_running
    return None


def _unwrapped(obj: object) -> object | None:
    """What an iterator wrapper (``FutureIter``, ``async_generator_asend``) stands for."""
    for referent in gc.get_referents(obj):
        if isinstance(referent, asyncio.Future) or _code_link(referent) is not None:
            found: object = referent
            return found
    return None


def _task_name(task: asyncio.Future[Any]) -> str:
    get_name = getattr(task, "get_name", None)
    return str(get_name()) if get_name is not None else type(task).__name__


def _state(task: asyncio.Future[Any]) -> str:
    if task.done():
        return "done"
    cancelling = getattr(task, "cancelling", None)
    return "cancelling" if cancelling is not None and cancelling() else "pending"


def _short_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if relative.startswith("..") else relative
