"""A process's children and resident memory, from ``/proc``.

``/proc/PID/task/TID/children`` lists the children each thread started (a child that exited
and was never waited for, a zombie, is still listed); ``/proc/PID/stat`` gives a process's
state and its start time in clock ticks, which together with the pid names one process even
after the pid is reused; ``/proc/PID/statm`` gives the resident set in pages.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

__all__ = [
    "ChildProcess",
    "ProcStat",
    "parse_children",
    "parse_cmdline",
    "parse_stat",
    "parse_statm_rss_pages",
    "read_children",
    "read_rss_bytes",
]

PROC = Path("/proc")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# Single-letter states of /proc/PID/stat (fs/proc/array.c).
STATES = {
    "R": "running", "S": "sleeping", "D": "waiting on disk", "T": "stopped",
    "t": "traced", "Z": "exited, not waited for (zombie)", "X": "dead", "I": "idle",
}  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class ChildProcess:
    """A child process: pid, start time (ticks since boot), state and command line."""

    pid: int
    start_ticks: int
    state: str
    command: str

    @property
    def state_name(self) -> str:
        """The state in words: ``sleeping``, ``exited, not waited for (zombie)`` ..."""
        return STATES.get(self.state, self.state)

    @property
    def is_zombie(self) -> bool:
        """Whether it exited and nobody waited for it."""
        return self.state == "Z"


def parse_children(text: str) -> list[int]:
    """Parse a ``/proc/PID/task/TID/children`` file: pids separated by spaces."""
    return [int(word) for word in text.split()]


@dataclasses.dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` we use."""

    name: str
    state: str
    ppid: int
    start_ticks: int


def parse_stat(text: str) -> ProcStat:
    """Parse ``/proc/PID/stat``: name, state letter, parent pid, start time in clock ticks."""
    # The name is in parentheses and may itself hold spaces and parentheses.
    opening, closing = text.index("("), text.rindex(")")
    fields = text[closing + 2 :].split()
    # After the name: state (field 3), ppid (4), ..., starttime (22).
    return ProcStat(text[opening + 1 : closing], fields[0], int(fields[1]), int(fields[19]))


def parse_cmdline(raw: bytes) -> str:
    """Parse ``/proc/PID/cmdline`` (NUL-separated arguments) into one line."""
    return " ".join(arg.decode(errors="replace") for arg in raw.split(b"\0") if arg)


def parse_statm_rss_pages(text: str) -> int:
    """Parse ``/proc/PID/statm``: the resident set size in pages (second field)."""
    return int(text.split()[1])


def read_children(pid: int | str = "self", proc: Path = PROC) -> list[ChildProcess]:
    """The children of ``pid`` now, zombies included (one that vanished meanwhile is not)."""
    pids: set[int] = set()
    try:
        tids = os.listdir(proc / str(pid) / "task")
    except OSError:
        return []
    for tid in tids:
        try:
            pids.update(parse_children((proc / str(pid) / "task" / tid / "children").read_text()))
        except OSError:  # the thread ended meanwhile
            continue
    children = []
    for child in sorted(pids):
        try:
            stat = parse_stat((proc / str(child) / "stat").read_text())
            command = parse_cmdline((proc / str(child) / "cmdline").read_bytes())
        except (OSError, ValueError, IndexError):
            continue
        # A zombie has no command line left: its name from stat is all there is.
        children.append(ChildProcess(child, stat.start_ticks, stat.state, command or stat.name))
    return children


def read_rss_bytes(pid: int | str = "self", proc: Path = PROC) -> int:
    """The resident set size of ``pid`` in bytes."""
    return parse_statm_rss_pages((proc / str(pid) / "statm").read_text()) * PAGE_SIZE
