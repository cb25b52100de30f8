"""Story ``ws-read-handler``: a WebSocket service that never reads what its clients send.

The clients' pings pile up in the kernel's receive buffers of the service, where no process
metric sees them; server keepalive hides the leak by killing the sessions (1011), and a
reader that drains and discards client messages fixes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from leaklab.stories.ws_read_handler.cell import run_cell
from leaklab.stories.ws_read_handler.matrix import AXES, Cell, build_matrix, expected_verdict
from leaklab.stories.ws_read_handler.verdict import RULES, figure, judge_cell
from leaklab.story import CellResult, CellRun, Chart, Column, LabOptions, Sample, Scope, Verdict
from leaklab.taskdump import last_task_groups
from ping_client.view import format_bytes

MIB = 1024 * 1024


def _mib(value: float | None) -> float | None:
    return None if value is None else value / MIB


def _first_close(figures: dict[str, Any]) -> str:
    first = figures["first_close"]
    return f"{first['code']} at {first['after_s']:.0f} s" if first else "none"


class ReadHandlerStory:
    """The missing WebSocket read handler, its mask (keepalive) and its fix (a reader)."""

    name = "ws-read-handler"
    title = "The missing WebSocket read handler"
    summary = "clients' pings pile up unread in the service's kernel receive buffers"
    rules = RULES
    axes = AXES
    columns = (
        Column("kernel TCP mem growth (MB/min)",
               lambda f: f"{f['kernel_mem_growth_mb_per_min']:+.2f}"),
        Column("held for service growth (MB/min)", lambda f: f"{f['held_growth_mb_per_min']:+.2f}"),
        Column("peak Recv-Q per socket", lambda f: f"{f['recv_q_peak_bytes'] / 1024:.0f} KiB"),
        Column("peak Recv-Q, all sockets", lambda f: format_bytes(f["recv_q_sum_peak_bytes"])),
        Column("peak server receive memory (skmem r)",
               lambda f: f"{f.get('skmem_r_peak_bytes', 0) / MIB:.1f} MiB"),
        Column("kernel held for service, peak", lambda f: format_bytes(f["held_peak_bytes"])),
        Column("RSS change", lambda f: f"{f['rss_change_bytes'] / MIB:+.1f} MiB"),
        Column("closes",
               lambda f: ", ".join(f"{c}: {n}" for c, n in f["closes"].items()) or "none"),
        Column("first close", _first_close),
        Column("events lost", lambda f: str(f["events_lost"])),
    )  # fmt: skip
    charts = (
        Chart("recv_q", "Server Recv-Q (sum over connections)", "MiB",
              lambda s: _mib(figure(s, "server.recv_q_bytes"))),
        Chart("kernel_tcp_mem", "Kernel TCP memory (host-wide, /proc/net/sockstat)", "MiB",
              lambda s: _mib(figure(s, "server.kernel_tcp_mem_bytes"))),
        Chart("rss", "Server RSS (flat in the leak: the memory is the kernel's)", "MiB",
              lambda s: _mib(figure(s, "server.rss_bytes"))),
        Chart("closes", "Connections closed by the server or keepalive (cumulative)",
              "connections",
              lambda s: sum(s["closes"].values()) if s.get("closes") is not None else None),
    )  # fmt: skip

    def matrix(self, scope: Scope, only: Mapping[str, tuple[str, ...]] | None = None) -> list[Cell]:
        """quick: READ_HANDLER x keepalive off/2s; default: keepalive 20s; full: every axis."""
        only = only or {}
        return build_matrix(
            quick=scope == "quick",
            full=scope == "full",
            ws_impls=only.get("ws_impl"),
            ping_kinds=only.get("ping_kind"),
        )

    def expected(self, cell: Cell) -> Verdict:
        """Unread data messages leak unless keepalive kills the sessions."""
        verdict: Verdict = expected_verdict(cell)  # type: ignore[assignment]
        return verdict

    async def run_cell(
        self, cell: Cell, options: LabOptions, logs: Path, on_sample: Callable[[Sample], None]
    ) -> CellRun:
        """A fresh service for the cell and a swarm against it."""
        return await run_cell(cell, options, logs, on_sample)

    def judge(self, cell: Cell, samples: Sequence[Sample]) -> CellResult:
        """The figures and the verdict of the rules in :mod:`.verdict`, and the task dump."""
        result = judge_cell(samples, data_messages=cell.ping_kind == "message")
        result["figures"]["task_groups"] = last_task_groups(samples)
        return result

    def live(self, sample: Sample) -> str:
        """connected, server Recv-Q, kernel TCP memory, RSS and closes, on one line."""
        closes = ",".join(f"{code}:{n}" for code, n in sample["closes"].items()) or "-"
        return (
            f"connected={sample['connected']} "
            f"recv_q={format_bytes(figure(sample, 'server.recv_q_bytes') or 0)} "
            f"tcp_mem={format_bytes(figure(sample, 'server.kernel_tcp_mem_bytes') or 0)} "
            f"rss={format_bytes(figure(sample, 'server.rss_bytes') or 0)} closes={closes}"
        )


STORY = ReadHandlerStory()
