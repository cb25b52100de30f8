"""Asyncio tasks grouped by the chain of coroutines they are awaiting, like Go's goroutine dump.

A suspended task's frame says only where its own coroutine stopped (``Task.get_stack()``
gives that one frame). What it waits for is reachable through ``cr_await``: the coroutine it
is awaiting, whose own ``cr_await`` is the next one, down to a Future. Walking it gives the
await chain, ``serve > write_events > Queue.get``, and tasks with the same chain are one
group, counted, largest first::

    40 @ Hub.serve > write_events > Queue.get
     2 @ Server.serve > Server.main_loop > sleep

These functions only read the objects they are given; the leak guard's messages and a
service's ``/debug/tasks`` endpoint share them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterable, Sequence

__all__ = [
    "CoroFrame",
    "StackGroup",
    "TaskStack",
    "await_chain",
    "format_groups",
    "group_stacks",
    "group_tasks",
    "task_stack",
]

MAX_DEPTH = 64

# How coroutines, generator-based coroutines and async generators name their frame and what
# they are awaiting.
_PARTS = (("cr_frame", "cr_await"), ("gi_frame", "gi_yieldfrom"), ("ag_frame", "ag_await"))


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
    """One task: its name and the coroutines it is awaiting, outermost first."""

    name: str
    frames: tuple[CoroFrame, ...]

    @property
    def chain(self) -> tuple[str, ...]:
        """The qualnames of the await chain, outermost first."""
        return tuple(frame.qualname for frame in self.frames)


@dataclasses.dataclass(frozen=True, slots=True)
class StackGroup:
    """Tasks with the same await chain: how many, the chain, and the first task's stack."""

    count: int
    chain: tuple[str, ...]
    example: TaskStack

    def format(self, count_width: int = 0) -> str:
        """``40 @ Hub.serve > write_events > Queue.get``."""
        return f"{self.count:>{count_width}} @ {' > '.join(self.chain) or '?'}"


def await_chain(awaitable: object) -> tuple[CoroFrame, ...]:
    """The coroutines (and generators) ``awaitable`` is awaiting, itself first."""
    frames: list[CoroFrame] = []
    current: object = awaitable
    while current is not None and len(frames) < MAX_DEPTH:
        parts = _parts(current)
        if parts is None:  # a Future's iterator, a custom awaitable: the end of the chain
            break
        frame_attr, await_attr = parts
        frame = getattr(current, frame_attr)
        qualname = getattr(current, "__qualname__", type(current).__name__)
        if frame is None:
            frames.append(CoroFrame(qualname))
        else:
            frames.append(CoroFrame(qualname, frame.f_code.co_filename, frame.f_lineno))
        current = getattr(current, await_attr)
    return tuple(frames)


def task_stack(task: asyncio.Task[object]) -> TaskStack:
    """The name and await chain of one task."""
    coro = task.get_coro()
    frames = await_chain(coro)
    if not frames:  # a task around something that is not a coroutine
        frames = (CoroFrame(type(coro).__name__),)
    return TaskStack(task.get_name(), frames)


def group_stacks(stacks: Iterable[TaskStack]) -> list[StackGroup]:
    """Group stacks by their chain: largest group first, then by chain for a stable order."""
    groups: dict[tuple[str, ...], list[TaskStack]] = {}
    for stack in stacks:
        groups.setdefault(stack.chain, []).append(stack)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [StackGroup(len(members), chain, members[0]) for chain, members in ordered]


def group_tasks(tasks: Iterable[asyncio.Task[object]]) -> list[StackGroup]:
    """Group tasks by the chain of coroutines they are awaiting, largest group first."""
    return group_stacks(task_stack(task) for task in tasks)


def format_groups(groups: Sequence[StackGroup], *, limit: int | None = None) -> list[str]:
    """One line per group, counts aligned; past ``limit`` groups, one line says how many more."""
    shown = groups if limit is None else groups[:limit]
    width = max((len(str(group.count)) for group in shown), default=0)
    lines = [group.format(width) for group in shown]
    if len(shown) < len(groups):
        rest = groups[len(shown) :]
        lines.append(f"... and {sum(g.count for g in rest)} more tasks in {len(rest)} groups")
    return lines


def _parts(awaitable: object) -> tuple[str, str] | None:
    for frame_attr, await_attr in _PARTS:
        if hasattr(awaitable, await_attr):
            return frame_attr, await_attr
    return None


def _short_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if relative.startswith("..") else relative
