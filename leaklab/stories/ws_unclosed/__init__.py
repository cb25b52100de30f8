"""Story ``ws-unclosed``: a client that opens a WebSocket per request and never closes it.

Each held connection costs the service one fd and two asyncio tasks, until its fd limit:
then ``/healthz`` and every new client are dropped, and the service recovers only when the
client exits. The session cap derived from the fd limit (``MAX_SESSIONS=auto``) contains it
(503 with Retry-After, health keeps answering); closing each connection, or reusing one,
fixes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from leaklab.stories.ws_unclosed.matrix import AXES, Cell, build_matrix, expected_verdict
from leaklab.stories.ws_unclosed.verdict import RULES, counts_text, judge_cell
from leaklab.story import (
    CellResult,
    CellRun,
    Chart,
    Column,
    LabOptions,
    Sample,
    Scope,
    Story,
    Verdict,
)
from leaklab.taskdump import last_task_groups


def _per_connection(figures: dict[str, Any]) -> str:
    fds, tasks = figures["fds_per_connection"], figures["tasks_per_connection"]
    if fds is None and tasks is None:
        return "-"
    return f"+{fds or 0:.1f} fd, +{tasks or 0:.1f} tasks"


def _sessions(figures: dict[str, Any]) -> str:
    failed = figures["stats_failed"]
    return f"{figures['sessions_peak']}" + (f", then /stats failed {failed} s" if failed else "")


def _recovery(figures: dict[str, Any]) -> str:
    recovery = figures["recovery_s"]
    return "not by the end" if recovery is None else f"{recovery:.1f} s"


def notes(samples: Sequence[Sample]) -> list[str]:
    """What the service logged, and its tasks once the client was gone, for the report."""
    digest = next((s["log_digest"] for s in reversed(samples) if "log_digest" in s), None)
    lines = []
    if digest:
        logged = "; ".join(
            f"`{text}` ({count} line{'s' if count > 1 else ''})" for count, text in digest
        )
        lines.append(f"service log, warnings and errors: {logged}")
    elif digest is not None:
        lines.append("service log: no warning or error")
    end = samples[-1].get("task_groups") if samples else None
    if end:
        lines.append(f"after the client exited: `{end[0]}`")
    return lines


class UnclosedStory:
    """A WebSocket per request, never closed: the fd limit, the cap that contains it, the fixes."""

    name = "ws-unclosed"
    title = "A WebSocket per request, never closed"
    summary = "a client keeps every connection it opens until the service runs out of fds"
    rules = RULES
    axes = AXES
    columns = (
        Column("requests / opened", lambda f: f"{f['requests']} / {f['opened']}"),
        Column("held by client, peak", lambda f: str(f["held_peak"])),
        Column("service fds: start, peak (limit)",
               lambda f: f"{f['fds_base']}, {f['fds_peak']} ({f['fd_limit']})"),
        Column("sessions, peak (/stats)", _sessions),
        Column("asyncio tasks, peak", lambda f: str(f["tasks_peak"])),
        Column("ESTABLISHED, peak", lambda f: str(f["established_peak"])),
        Column("service cost per connection", _per_connection),
        Column("new client sees", lambda f: counts_text(f["probes"])),
        Column("/healthz failed", lambda f: f"{f['healthz_failed']} of {f['healthz_samples']} s"),
        Column("client's errors", lambda f: counts_text(f["client_failures"])),
        Column("service log lines (errors)", lambda f: f"{f['log_lines']} ({f['log_errors']})"),
        Column("back after client exit", _recovery),
    )  # fmt: skip
    charts = (
        Chart("fds", "Service open fds (psutil, from outside)", "fds", lambda s: s.get("fds")),
        Chart("tasks", "Service asyncio tasks (GET /debug/tasks)", "tasks",
              lambda s: s.get("tasks")),
        Chart("established", "Service ESTABLISHED sockets", "sockets",
              lambda s: s.get("established")),
        Chart("held", "Connections the client holds", "connections",
              lambda s: (s.get("client") or {}).get("held")),
        Chart("healthz", "GET /healthz on a new connection (1 answered, 0 failed)", "answered",
              lambda s: None if s.get("healthz") is None else float(s["healthz"] == "200")),
        Chart("client_errors", "Client's failed requests (cumulative)", "requests",
              lambda s: None if s.get("client") is None else sum(s["client"]["failed"].values())),
    )  # fmt: skip

    def matrix(self, scope: Scope, only: Mapping[str, tuple[str, ...]] | None = None) -> list[Cell]:
        """quick/default: the leak without and with the cap, and both fixes; full: every pair."""
        only = only or {}
        return build_matrix(
            quick=scope == "quick",
            full=scope == "full",
            clients=only.get("client"),
            max_sessions=only.get("max_sessions"),
        )

    def expected(self, cell: Cell) -> Verdict:
        """An unclosed client leaks; the derived cap contains (masks) it; the fixes are healthy."""
        verdict: Verdict = expected_verdict(cell)  # type: ignore[assignment]
        return verdict

    async def run_cell(
        self, cell: Cell, options: LabOptions, logs: Path, on_sample: Callable[[Sample], None]
    ) -> CellRun:
        """A fresh service under the cell's fd limit, and the client against it."""
        # Imported here: the client, a module of this package, needs none of it.
        from leaklab.stories.ws_unclosed.cell import run_cell

        return await run_cell(cell, options, logs, on_sample)

    def judge(self, cell: Cell, samples: Sequence[Sample]) -> CellResult:
        """The figures and the verdict of the rules in :mod:`.verdict`, the dump and notes."""
        result = judge_cell(samples, cell.fd_limit)
        running = [s for s in samples if s.get("client_running")]
        result["figures"]["task_groups"] = last_task_groups(running)
        result["figures"]["notes"] = notes(samples)
        return result

    def live(self, sample: Sample) -> str:
        """fds, tasks, the client's held connections, the probe and /healthz, on one line."""
        client = sample.get("client") or {}
        return (
            f"fds={sample.get('fds')} tasks={sample.get('tasks')} held={client.get('held')} "
            f"probe={sample.get('probe')} healthz={sample.get('healthz')}"
        )


STORY: Story = UnclosedStory()
