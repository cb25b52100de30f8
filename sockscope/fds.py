"""The file descriptors of a process, from ``/proc/PID/fd``, by kind.

Each entry of ``/proc/PID/fd`` is a symbolic link whose target names what the fd refers to:
``socket:[INODE]``, ``pipe:[INODE]``, ``anon_inode:[eventpoll]``, or a path. The inode in a
socket's target is the same number ``/proc/net/tcp`` and ``ss -e`` show, which is how a
socket is told apart from another process's socket on the same port.

:func:`socket_inodes` gives just the socket inodes, through ``fstat`` rather than the
links: reading a ``/proc/PID/fd`` link costs several microseconds (the kernel prints the
target), ``fstat`` on our own fd about one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path
from typing import Literal

__all__ = ["Fd", "FdKind", "classify_target", "count_fds", "read_fds", "socket_inodes"]

FdKind = Literal["socket", "pipe", "file", "device", "anon", "other"]

PROC_SELF_FD = Path("/proc/self/fd")

_INODE_TARGET_RE = re.compile(r"^(socket|pipe):\[(\d+)\]$")


@dataclasses.dataclass(frozen=True, slots=True)
class Fd:
    """One open file descriptor: its number, its link target, its kind and inode (if any)."""

    fd: int
    target: str
    kind: FdKind
    inode: int | None = None


def classify_target(target: str) -> tuple[FdKind, int | None]:
    """The kind of an fd from its ``/proc/PID/fd`` link target, and the inode it names."""
    match = _INODE_TARGET_RE.match(target)
    if match:
        kind: FdKind = "socket" if match.group(1) == "socket" else "pipe"
        return kind, int(match.group(2))
    if target.startswith("anon_inode:"):
        return "anon", None
    if target.startswith("/dev/") and not target.startswith("/dev/shm/"):
        return "device", None
    if target.startswith("/"):
        return "file", None
    return "other", None


def read_fds(proc_fd: Path = PROC_SELF_FD) -> list[Fd]:
    """The fds open now, in fd order. An fd closed while we read is left out."""
    # Links read relative to an open directory fd: a third cheaper than full paths.
    directory = os.open(proc_fd, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fds = []
        for name in os.listdir(directory):
            if name == str(directory):  # our own, of the directory being read
                continue
            try:
                target = os.readlink(name, dir_fd=directory)
            except OSError:  # closed meanwhile
                continue
            kind, inode = classify_target(target)
            fds.append(Fd(int(name), target, kind, inode))
    finally:
        os.close(directory)
    fds.sort(key=lambda entry: entry.fd)
    return fds


def count_fds(proc_fd: Path = PROC_SELF_FD) -> int:
    """How many fds are open now (the fd used to list the directory is not counted)."""
    return len(os.listdir(proc_fd)) - 1


def socket_inodes(pid: int | None = None) -> set[int]:
    """The inodes of the sockets a process holds open: this one, or process ``pid``.

    An fd closed while we read is left out; one opened meanwhile may be in or out.
    """
    inodes = set()
    if pid is None:
        for name in os.listdir(PROC_SELF_FD):
            try:
                info = os.fstat(int(name))
            except OSError:  # closed meanwhile, or the listing's own fd
                continue
            if stat.S_ISSOCK(info.st_mode):
                inodes.add(info.st_ino)
        return inodes
    directory = os.open(f"/proc/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in os.listdir(directory):
            try:
                info = os.stat(name, dir_fd=directory)  # follows the link to the socket
            except OSError:
                continue
            if stat.S_ISSOCK(info.st_mode):
                inodes.add(info.st_ino)
    finally:
        os.close(directory)
    return inodes
