"""Where a leaked thing was created, from tracemalloc (``--leak-guard-trace``).

tracemalloc records the Python stack of every allocation once started, so the stack that
allocated a Task, a Thread, a socket or file object, or a Popen is where the test created
it. An fd has no Python object of its own: its owner is found among the live objects that
wrap it (sockets, files, epoll objects). Tracing costs time and memory on every
allocation, which is why it is off unless asked for.
"""

from __future__ import annotations

import gc
import io
import linecache
import os
import select
import socket
import subprocess
import sysconfig
import tracemalloc
from collections.abc import Collection

__all__ = ["creation", "fd_owners", "process_owners", "start", "stop"]

FRAMES = 30  # frames kept per allocation
SHOWN = 6  # frames shown per leak

_STDLIB = sysconfig.get_paths()["stdlib"]
# Frames of the machinery between pytest and the test say nothing about who leaked.
_MACHINERY = tuple(
    f"{os.sep}{name}{os.sep}" for name in ("_pytest", "pluggy", "pytest_asyncio", "leakguard")
)
_FD_OWNER_TYPES: tuple[type, ...] = (socket.socket, io.FileIO) + (
    (select.epoll,) if hasattr(select, "epoll") else ()
)


def start() -> bool:
    """Start tracing allocations; False if tracemalloc was already tracing (not ours to stop)."""
    if tracemalloc.is_tracing():
        return False
    tracemalloc.start(FRAMES)
    return True


def stop() -> None:
    """Stop tracing allocations."""
    tracemalloc.stop()


def creation(obj: object) -> tuple[str, ...]:
    """Where ``obj`` was allocated: the innermost frames outside the stdlib and pytest."""
    if obj is None or not tracemalloc.is_tracing():
        return ()
    traceback = tracemalloc.get_object_traceback(obj)
    if traceback is None:
        return ()
    everything = list(traceback)  # oldest first
    frames = [f for f in everything if not _is_stdlib(f.filename) and not _is_machinery(f.filename)]
    lines = []
    for frame in (frames or everything)[-SHOWN:]:
        source = linecache.getline(frame.filename, frame.lineno).strip()
        where = f"{_short(frame.filename)}:{frame.lineno}"
        lines.append(f"{where}: {source}" if source else where)
    return tuple(lines)


def fd_owners(fds: Collection[int]) -> dict[int, object]:
    """The live socket, file or epoll objects that wrap the given fd numbers."""
    owners: dict[int, object] = {}
    for obj in gc.get_objects():
        if isinstance(obj, _FD_OWNER_TYPES):
            try:
                number = obj.fileno()  # type: ignore[attr-defined]
            except (OSError, ValueError):  # closed
                continue
            if number in fds:
                owners.setdefault(number, obj)
    return owners


def process_owners(pids: Collection[int]) -> dict[int, subprocess.Popen[bytes]]:
    """The live ``subprocess.Popen`` objects of the given pids."""
    return {
        obj.pid: obj
        for obj in gc.get_objects()
        if isinstance(obj, subprocess.Popen) and obj.pid in pids
    }


def _is_stdlib(filename: str) -> bool:
    return filename.startswith(_STDLIB) and "site-packages" not in filename


def _is_machinery(filename: str) -> bool:
    return any(part in filename for part in _MACHINERY)


def _short(filename: str) -> str:
    relative = os.path.relpath(filename)
    return filename if relative.startswith("..") else relative
