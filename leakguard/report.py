"""The leak guard's message: which test, what it left, where it came from, what to do."""

from __future__ import annotations

from collections.abc import Iterable

from leakguard.findings import Backlog, FdLeak, Findings, Growth, TaskLeak
from sockscope.tasks import group_stacks

__all__ = ["HINTS", "format_report", "plural"]

HINTS = {
    "tasks": "cancel and await the tasks you start, or start them in an asyncio.TaskGroup",
    "threads": "tell the threads you start to stop, then join() them",
    "processes": "wait() for the processes you start (after terminate() or kill())",
    "fds": "close what you open: `with open(...)`, `with socket...`, contextlib.closing(), "
    "`writer.close(); await writer.wait_closed()`",
    "backlog": "read what the peer sends (a reader next to the writer that drains and discards "
    "messages, and ends the session when reading ends); accept() or close listening sockets",
    "growth": "something keeps what each run opens: a global list, a cache without a bound, "
    "a pool never closed",
}

INDENT = "    "


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 task``, ``2 tasks``."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def format_report(nodeid: str, findings: Findings, *, settle_s: float, traced: bool) -> str:
    """The whole message for one test."""
    lines = [
        f"leak guard: {_summary(findings)} left behind by {nodeid} "
        f"(looked again for {settle_s:g} s before saying so)"
    ]
    if findings.tasks:
        lines.append(f"{plural(len(findings.tasks), 'asyncio task')} still pending:")
        lines += _task_lines(findings.tasks)
    if findings.threads:
        lines.append(f"{plural(len(findings.threads), 'thread')} still alive:")
        for thread in findings.threads:
            target = f" (target {thread.target})" if thread.target else ""
            daemon = ", daemon" if thread.daemon else ""
            lines.append(f"{INDENT}{thread.name!r}{target}{daemon}")
            lines += _created(thread.created)
    if findings.processes:
        count = plural(len(findings.processes), "child process", "child processes")
        lines.append(f"{count} never waited for:")
        for leak in findings.processes:
            child = leak.process
            lines.append(f"{INDENT}pid {child.pid} {child.state_name}: {child.command}")
            lines += _created(leak.created)
    if findings.fds:
        lines.append(f"{plural(len(findings.fds), 'fd')} still open: {_fd_kinds(findings.fds)}")
        for fd in findings.fds:
            lines.append(f"{INDENT}{_fd_line(fd)}")
            lines += _created(fd.created)
    if findings.backlog:
        total = sum(b.socket.unread_bytes for b in findings.backlog)
        lines.append(
            f"unread backlog at the end of the test: {plural(len(findings.backlog), 'socket')}"
            + (f", {total} bytes never read" if total else "")
        )
        lines += [f"{INDENT}{_backlog_line(b)}" for b in findings.backlog]
    if findings.growth:
        runs = len(findings.growth[0].values)
        lines.append(f"grew at every one of {runs} repetitions (after each run):")
        lines += [f"{INDENT}{_growth_line(g)}" for g in findings.growth]
    lines.append("how to fix:")
    lines += [f"{INDENT}{kind}: {HINTS[kind]}" for kind in _kinds(findings)]
    if not traced and (findings.tasks or findings.threads or findings.fds or findings.processes):
        lines.append("(--leak-guard-trace shows where each was created; allow what may stay with")
        lines.append(" @pytest.mark.leak_guard(allow_...=[...]) or leak_guard_allow_* in the ini)")
    return "\n".join(lines)


def _summary(findings: Findings) -> str:
    parts = []
    if findings.tasks:
        parts.append(plural(len(findings.tasks), "task"))
    if findings.threads:
        parts.append(plural(len(findings.threads), "thread"))
    if findings.processes:
        parts.append(plural(len(findings.processes), "child process", "child processes"))
    if findings.fds:
        parts.append(plural(len(findings.fds), "fd"))
    if findings.backlog:
        parts.append(plural(len(findings.backlog), "unread backlog"))
    if findings.growth:
        parts.append("growth over repetitions")
    return ", ".join(parts)


def _kinds(findings: Findings) -> list[str]:
    return [kind for kind in HINTS if getattr(findings, kind)]


def _task_lines(tasks: Iterable[TaskLeak]) -> list[str]:
    by_where: dict[str, list[TaskLeak]] = {}
    for leak in tasks:
        by_where.setdefault(leak.where, []).append(leak)
    lines = []
    for where, leaks in by_where.items():
        created = {leak.stack: leak.created for leak in leaks}
        groups = group_stacks(leak.stack for leak in leaks)
        width = max(len(str(group.count)) for group in groups)
        for group in groups:
            example = group.example  # always set by group_stacks (None only in a parsed dump)
            location = example.frames[0].location if example and example.frames else None
            details = "; ".join(part for part in (location, where) if part)
            lines.append(f"{INDENT}{group.format(width)}  ({details})")
            lines += _created(created.get(example, ()) if example else ())
    return lines


def _fd_kinds(fds: Iterable[FdLeak]) -> str:
    counts: dict[str, int] = {}
    for leak in fds:
        counts[leak.fd.kind] = counts.get(leak.fd.kind, 0) + 1
    return ", ".join(plural(n, kind) for kind, n in counts.items())


def _fd_line(leak: FdLeak) -> str:
    head = f"fd {leak.fd.fd} {leak.fd.kind}"
    if leak.socket is None:
        return f"{head} {leak.fd.target}"
    line = f"{head} {leak.socket.describe()}"
    if leak.socket.unread_bytes:
        line += f", {leak.socket.unread_bytes} bytes unread"
    return line


def _backlog_line(backlog: Backlog) -> str:
    sock = backlog.socket
    if sock.state == "LISTEN":
        return (
            f"fd {sock.fd} {sock.describe()}: {plural(sock.unaccepted, 'connection')} never "
            f"accepted (listen backlog {sock.accept_limit})"
        )
    return f"fd {sock.fd} {sock.describe()}: {sock.unread_bytes} bytes received, never read"


def _growth_line(growth: Growth) -> str:
    return f"{growth.figure}: {', '.join(str(v) for v in growth.values)}"


def _created(lines: tuple[str, ...]) -> list[str]:
    if not lines:
        return []
    return [f"{INDENT}  created at:"] + [f"{INDENT}    {line}" for line in lines]
