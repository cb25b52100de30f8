"""Story ``http-keepalive``: per-request HTTP clients that are never closed.

A caller makes a new ``httpx.AsyncClient`` for each request to a callee and keeps it without
closing it. With a long keep-alive on the callee, both sides hold one connection per request
for ever. uvicorn's keep-alive timeout (5 s) masks it: the callee closes its idle ends and
looks healthy, while every caller socket stays in CLOSE_WAIT (httpx has no idle reaper). The
fixes close the client, share one, or answer ``Connection: close``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from leaklab.stories.http_keepalive.cell import run_cell
from leaklab.stories.http_keepalive.matrix import AXES, Cell, build_matrix, expected_verdict
from leaklab.stories.http_keepalive.verdict import RULES, judge_cell
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

__all__ = ["STORY"]


def _states(link: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(link.items())) or "none"


def _span(figures: dict[str, Any], key: str) -> str:
    return f"{figures[f'{key}_start']} -> {figures[f'{key}_end']}"


class KeepAliveStory:
    """Unclosed per-request HTTP clients, uvicorn's keep-alive timeout (the mask), the fixes."""

    name = "http-keepalive"
    title = "Per-request HTTP clients that are never closed"
    summary = "idle keep-alive connections pile up, on both sides or in CLOSE_WAIT at the caller"
    rules = RULES
    axes: Mapping[str, tuple[str, ...]] = AXES
    columns = (
        Column("requests", lambda f: f"{f['requests']}" + (f" ({f['errors']} errors)"
                                                            if f["errors"] else "")),
        Column("caller sockets to callee, end", lambda f: _states(f["caller_link_end"])),
        Column("callee sockets from caller, end (peak)",
               lambda f: f"{f['callee_link_sockets_end']} ({f['callee_link_sockets_peak']})"),
        Column("caller fds", lambda f: _span(f, "caller_fds")),
        Column("callee fds", lambda f: _span(f, "callee_fds")),
        Column("fds per 100 requests (caller / callee)",
               lambda f: f"{f['caller_fds_per_100_requests']:+g} / "
                         f"{f['callee_fds_per_100_requests']:+g}"),
        Column("asyncio tasks (caller / callee)",
               lambda f: f"{_span(f, 'caller_tasks')} / {_span(f, 'callee_tasks')}"),
        Column("/forward p50", lambda f: f"{f['forward_p50_ms']} ms"),
    )  # fmt: skip
    charts = (
        Chart("caller_close_wait", "Caller sockets to the callee in CLOSE_WAIT", "sockets",
              lambda s: s.get("caller_close_wait")),
        Chart("caller_established", "Caller sockets to the callee, ESTABLISHED", "sockets",
              lambda s: s.get("caller_established")),
        Chart("callee_established", "Callee connections from the caller, ESTABLISHED",
              "sockets", lambda s: s.get("callee_established")),
        Chart("caller_fds", "Caller open fds", "fds", lambda s: s.get("caller_fds")),
        Chart("callee_fds", "Callee open fds", "fds", lambda s: s.get("callee_fds")),
        Chart("tasks", "asyncio tasks, caller + callee (flat: idle connections cost none)",
              "tasks", lambda s: _sum(s.get("caller_tasks"), s.get("callee_tasks"))),
        Chart("requests", "Requests done (/forward, one after the other)", "requests",
              lambda s: s.get("requests_done")),
    )  # fmt: skip

    def matrix(self, scope: Scope, only: Mapping[str, tuple[str, ...]] | None = None) -> list[Cell]:
        """quick: the leak, its mask (2 s keep-alive), both fixes; default and full: more."""
        return build_matrix(scope, only)

    def expected(self, cell: Cell) -> Verdict:
        """A kept unclosed client leaks; a short keep-alive masks it; the rest is healthy."""
        verdict: Verdict = expected_verdict(cell)  # type: ignore[assignment]
        return verdict

    async def run_cell(
        self, cell: Cell, options: LabOptions, logs: Path, on_sample: Callable[[Sample], None]
    ) -> CellRun:
        """A fresh callee and caller for the cell, the lab's requests, a sample a second."""
        return await run_cell(cell, options, logs, on_sample)

    def judge(self, cell: Cell, samples: Sequence[Sample]) -> CellResult:
        """The figures and the verdict of the rules in :mod:`.verdict`."""
        return judge_cell(samples)

    def live(self, sample: Sample) -> str:
        """Requests done, and each side's fds and link sockets, on one line."""
        return (
            f"requests={sample.get('requests_done')} "
            f"caller fds={sample.get('caller_fds')} "
            f"est={sample.get('caller_established')} close_wait={sample.get('caller_close_wait')} "
            f"callee fds={sample.get('callee_fds')} est={sample.get('callee_established')}"
        )


def _sum(*values: int | None) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


STORY: Story = KeepAliveStory()
