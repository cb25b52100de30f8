"""A task dump for asyncio: live tasks grouped by the chain of coroutines they are awaiting.

Go's ``/debug/pprof/goroutine?debug=1`` groups goroutines with identical stacks and counts
them, which is how a leak shows up at a glance ("40 @ ... subscribe ... next"). Nothing in
Python does that: ``Task.get_stack()`` gives one frame for a suspended coroutine. The await
chain is reachable, though: a suspended coroutine's ``cr_await`` is what it awaits (another
coroutine, a generator's ``gi_yieldfrom``, an async generator's ``ag_await``), down to a
Future. Two wrappers hide their target behind no attribute (``FutureIter``, what ``await
future`` iterates, and ``async_generator_asend``, what ``async for`` awaits); the garbage
collector's referents of each are what they wrap.

Pure introspection of the objects it is given: no I/O, no event loop needed, safe to call
from the loop's own thread (the only thread that should, since tasks change under it).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import gc
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "Frame",
    "StackGroup",
    "await_chain",
    "await_frames",
    "format_groups",
    "format_stacks",
    "group_tasks",
    "parse_dump",
    "render_dump",
]

# A chain longer than this is cut (an await cycle cannot happen, a bug elsewhere might).
MAX_DEPTH = 256
RUNNING = "(running)"
ELLIPSIS = "..."
SEPARATOR = " > "


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One link of an await chain: a qualname and, for code, where it is suspended."""

    name: str
    filename: str | None = None
    lineno: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StackGroup:
    """Tasks awaiting the same chain of coroutines, and how many they are."""

    count: int
    chain: tuple[str, ...]


def await_frames(task: asyncio.Future[Any]) -> list[Frame]:
    """The chain ``task`` awaits, outermost first: its coroutine, what that awaits, and so on.

    Ends with the Future (or Task) at the bottom when there is one, or with ``(running)``
    for the task that is running now.
    """
    get_coro = getattr(task, "get_coro", None)
    current: object = get_coro() if get_coro is not None else task
    frames: list[Frame] = []
    seen: set[int] = set()
    while current is not None and id(current) not in seen and len(frames) < MAX_DEPTH:
        seen.add(id(current))
        if isinstance(current, asyncio.Future):
            # The bottom: what the chain waits for. Stop here (an awaited Task has its own).
            frames.append(Frame(type(current).__name__))
            break
        link = _code_link(current)
        if link is not None:
            frame, awaited, running = link
            frames.append(frame)
            if running:
                frames.append(Frame(RUNNING))
                break
            current = awaited
        else:
            current = _unwrapped(current)
    return frames


def await_chain(task: asyncio.Future[Any]) -> tuple[str, ...]:
    """The qualnames of :func:`await_frames`: what tasks are grouped by."""
    return tuple(frame.name for frame in await_frames(task))


def group_tasks(tasks: Iterable[asyncio.Future[Any]]) -> list[StackGroup]:
    """Tasks grouped by their await chain, the largest group first (ties by chain)."""
    counts = collections.Counter(await_chain(task) for task in tasks)
    groups = [StackGroup(count, chain) for chain, count in counts.items()]
    return sorted(groups, key=lambda group: (-group.count, group.chain))


def format_groups(groups: Iterable[StackGroup], *, max_frames: int | None = None) -> list[str]:
    """Go-style lines, ``40 @ run_asgi > app > ... > next``, one per group.

    ``max_frames`` keeps a long chain readable: its first link and its last
    ``max_frames - 1``, with ``...`` for the framework links in between.
    """
    lines = []
    for group in groups:
        chain: Sequence[str] = group.chain
        if max_frames is not None and len(chain) > max(max_frames, 2):
            chain = (chain[0], ELLIPSIS, *chain[len(chain) - max_frames + 1 :])
        lines.append(f"{group.count} @ {SEPARATOR.join(chain) or '?'}")
    return lines


def format_stacks(tasks: Iterable[asyncio.Future[Any]]) -> list[str]:
    """Every task's chain, one link per line with its file and line, a blank line between."""
    lines: list[str] = []
    for task in sorted(tasks, key=_task_name):
        state = "cancelling" if _is_cancelling(task) else "done" if task.done() else "pending"
        lines.append(f"task {_task_name(task)} [{state}]:")
        for frame in await_frames(task):
            where = f"  {frame.filename}:{frame.lineno}" if frame.filename else ""
            lines.append(f"    {frame.name}{where}")
        lines.append("")
    return lines


def render_dump(tasks: Iterable[asyncio.Future[Any]], debug: int = 1) -> str:
    """The whole dump as text: a total, then groups (``debug=1``) or every stack (``debug=2``)."""
    tasks = list(tasks)
    body = format_stacks(tasks) if debug >= 2 else format_groups(group_tasks(tasks))
    return "\n".join([f"tasks: total {len(tasks)}", "", *body]).rstrip("\n") + "\n"


def parse_dump(text: str) -> tuple[int | None, list[StackGroup]]:
    """The total and the groups of a ``debug=1`` dump (what :func:`render_dump` wrote)."""
    total: int | None = None
    groups = []
    for line in text.splitlines():
        if line.startswith("tasks: total "):
            total = int(line.removeprefix("tasks: total "))
            continue
        count, sep, chain = line.partition(" @ ")
        if sep and count.isdigit():
            links = () if chain == "?" else tuple(chain.split(SEPARATOR))
            groups.append(StackGroup(int(count), links))
    return total, groups


def _code_link(obj: object) -> tuple[Frame, object, bool] | None:
    """For a coroutine, generator or async generator: its frame, what it awaits, and whether
    it is running; None for anything else."""
    for prefix, awaited_attr in (("cr", "cr_await"), ("gi", "gi_yieldfrom"), ("ag", "ag_await")):
        if hasattr(obj, awaited_attr):
            frame = getattr(obj, f"{prefix}_frame", None)
            awaited = getattr(obj, awaited_attr)
            # An async generator counts as running while an ``asend`` is suspended in it.
            running = awaited is None and bool(getattr(obj, f"{prefix}_running", False))
            name = getattr(obj, "__qualname__", None) or type(obj).__name__
            filename = frame.f_code.co_filename if frame is not None else None
            lineno = frame.f_lineno if frame is not None else None
            return Frame(name, filename, lineno), awaited, running
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


def _is_cancelling(task: asyncio.Future[Any]) -> bool:
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None and not task.done() else False
