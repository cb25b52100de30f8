"""The guard's readings of this process: snapshots, descriptions of what is left, unread
backlogs, and the figures repetition compares. Short shells around :mod:`sockscope`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection
from typing import Any

from leakguard import trace
from leakguard.findings import Backlog, FdLeak, Findings, ProcessLeak, TaskLeak, ThreadLeak
from leakguard.loops import pending_tasks
from leakguard.repeat import Sample
from leakguard.snapshot import Snapshot
from sockscope.fds import count_fds, read_fds
from sockscope.process import read_children, read_rss_bytes
from sockscope.sockets import inspect_socket
from sockscope.tasks import task_stack

__all__ = ["describe", "measure", "read_backlogs", "take_snapshot", "task_leak"]


def take_snapshot() -> Snapshot:
    """Pending tasks, live threads, children and fds of this process now."""
    return Snapshot(
        tasks=frozenset(pending_tasks()),
        threads=frozenset(thread for thread in threading.enumerate() if thread.is_alive()),
        processes={(child.pid, child.start_ticks): child for child in read_children()},
        fds={(fd.fd, fd.target): fd for fd in read_fds()},
    )


def task_leak(task: asyncio.Task[Any], where: str, *, traced: bool = False) -> TaskLeak:
    """A pending task as a finding (its stack is read now: a cancelled task has none)."""
    return TaskLeak(task_stack(task), where, trace.creation(task) if traced else ())


def describe(left: Snapshot, *, traced: bool = False) -> Findings:
    """What is left, described: await chains, thread targets, commands, socket states."""
    fd_owners = trace.fd_owners({fd for fd, _ in left.fds}) if traced and left.fds else {}
    pids = {pid for pid, _ in left.processes}
    popens = trace.process_owners(pids) if traced and pids else {}
    return Findings(
        tasks=tuple(task_leak(task, _where(task.get_loop()), traced=traced) for task in left.tasks),
        threads=tuple(
            ThreadLeak(
                thread.name,
                _qualname(getattr(thread, "_target", None)),
                thread.daemon,
                trace.creation(thread) if traced else (),
            )
            for thread in sorted(left.threads, key=lambda t: t.name)
        ),
        processes=tuple(
            ProcessLeak(child, trace.creation(popens.get(child.pid)))
            for child in left.processes.values()
        ),
        fds=tuple(
            FdLeak(
                fd,
                inspect_socket(fd.fd, fd.inode) if fd.kind == "socket" else None,
                trace.creation(fd_owners.get(fd.fd)),
            )
            for fd in sorted(left.fds.values(), key=lambda fd: fd.fd)
        ),
    )


def read_backlogs(excluded_inodes: Collection[int]) -> tuple[Backlog, ...]:
    """TCP sockets of ours holding unread bytes, LISTEN sockets with unaccepted connections."""
    found = []
    for fd in read_fds():
        if fd.kind != "socket" or fd.inode in excluded_inodes:
            continue
        info = inspect_socket(fd.fd, fd.inode)
        if info is not None and info.is_tcp and (info.unread_bytes or info.unaccepted):
            found.append(Backlog(info))
    return tuple(found)


def measure() -> Sample:
    """The figures repetition compares: open fds, pending tasks, resident memory."""
    return Sample(fds=count_fds(), tasks=len(pending_tasks()), rss_bytes=read_rss_bytes())


def _where(loop: asyncio.AbstractEventLoop) -> str:
    if loop.is_closed():
        return "on a closed loop"
    return "on a running loop" if loop.is_running() else "on an idle loop"


def _qualname(target: object) -> str | None:
    if target is None:
        return None
    module = getattr(target, "__module__", None)
    name = getattr(target, "__qualname__", None) or repr(target)
    return f"{module}.{name}" if module else name
