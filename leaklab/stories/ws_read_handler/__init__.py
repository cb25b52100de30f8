"""Story ``ws-read-handler``: a WebSocket service that never reads what its clients send.

The clients' pings pile up in the kernel's receive buffers of the service, where no process
metric sees them; server keepalive hides the leak by killing the sessions (1011), and a
reader that drains and discards client messages fixes it. Clients that come and go (churn)
make it grow without end, because the service never learns that they left; clients that
vanish (no FIN, no RST) are found by keepalive alone. The large cells (``--full``) show the
leak at 10,000 clients, judged on the steady part after the ramp.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from leaklab.stories.ws_read_handler.cell import run_cell
from leaklab.stories.ws_read_handler.growth import CHURN_RULES, dead_sessions, judge_churn_cell
from leaklab.stories.ws_read_handler.matrix import AXES, Cell, build_matrix, expected_verdict
from leaklab.stories.ws_read_handler.sample import ReadHandlerSample
from leaklab.stories.ws_read_handler.steady import LARGE_RULES, judge_large_cell
from leaklab.stories.ws_read_handler.vanished import VANISHED_RULES, judge_vanished_cell
from leaklab.stories.ws_read_handler.vanished_cell import run_vanished_cell
from leaklab.stories.ws_read_handler.verdict import RULES, figure, judge_cell
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
from ping_client.view import format_bytes

MIB = 1024 * 1024


def own(sample: Sample) -> ReadHandlerSample:
    """One of this story's samples, handed back by the runner, the report or the charts.

    They only ever pass a story the samples its own ``run_cell`` made (see ``leaklab.runner``),
    so the generic ``Sample`` they hold is a :class:`ReadHandlerSample`; this says so to mypy.
    """
    return cast(ReadHandlerSample, sample)


def own_all(samples: Sequence[Sample]) -> Sequence[ReadHandlerSample]:
    """:func:`own` for a cell's samples."""
    return cast(Sequence[ReadHandlerSample], samples)


def _chart(value: Callable[[ReadHandlerSample], float | None]) -> Callable[[Sample], float | None]:
    """A chart's value of one of this story's samples, as the generic :class:`Chart` takes it."""
    return lambda sample: value(own(sample))


def _mib(value: float | None) -> float | None:
    return None if value is None else value / MIB


def _first_close(figures: dict[str, Any]) -> str:
    first = figures["first_close"]
    return f"{first['code']} at {first['after_s']:.0f} s" if first else "none"


def _dead(figures: dict[str, Any]) -> str:
    if figures.get("dead_sessions_end") is None:
        return "-"
    return (
        f"{figures['dead_sessions_end']} ({round(figures['dead_sessions_growth_per_min']):+d}/min, "
        f"r² {figures['dead_sessions_r2']:.2f})"
    )


def _recv_q_growth(figures: dict[str, Any]) -> str:
    if figures.get("dead_sessions_end") is None:  # not a churn cell, or nothing to fit
        return "-"
    return f"{figures['recv_q_growth_mib_per_min']:+.1f} (r² {figures['recv_q_r2']:.2f})"


def _steady(figures: dict[str, Any]) -> str:
    if figures.get("steady_samples") is None:  # not a large cell
        return "-"
    if figures["kept_share"] is None or figures["ramp_end_s"] is None:
        return f"{figures['steady_samples']} samples, nothing to fit"
    per = figures["recv_q_per_connection_growth_bytes_per_s"] or 0
    growth, sent = figures["steady_recv_q_growth_mib_per_min"], figures["steady_sent_mib_per_min"]
    kept = round(figures["kept_share"], 2) + 0.0  # a hair below zero reads 0%, not -0%
    return (
        f"{figures['connected_at_ramp_end']:,} connected at {figures['ramp_end_s']:.0f} s; "
        f"{figures['steady_s']:.0f} s: Recv-Q {round(growth):+d} of {round(sent)} MiB/min sent "
        f"({kept:.0%}; {round(per):+d} B/s per connection)"
    )


def _kernel_read(figures: dict[str, Any]) -> str:
    read = figures.get("kernel_read")
    if not read:
        return "-"
    return (
        f"{read['p50_ms']:.0f} / {read['cpu_p50_ms']:.0f} ms "
        f"(max {read['max_ms']:.0f} / {read['cpu_max_ms']:.0f})"
    )


def _peak_tcp_mem(figures: dict[str, Any]) -> str:
    peak = figures.get("kernel_tcp_mem_peak_bytes")
    return "-" if peak is None else format_bytes(peak)


def _states(figures: dict[str, Any]) -> str:
    states = figures.get("sockets_by_state_end")
    if states is None:
        return "-"
    return ", ".join(f"{state} {n}" for state, n in sorted(states.items())) or "none"


def _vanished(figures: dict[str, Any]) -> str:
    if figures.get("sessions_at_link_down") is None:
        return "-"
    if figures["reaped_after_s"] is not None:
        return f"reaped after {figures['reaped_after_s']:.0f} s"
    return (
        f"{figures['sessions_end']} of {figures['sessions_at_link_down']} after "
        f"{figures['observed_after_down_s']:.0f} s"
    )


def _closes(sample: ReadHandlerSample) -> float | None:
    closes = sample.get("closes")
    return None if closes is None else sum(closes.values())


def _sockets_closing(sample: ReadHandlerSample) -> float | None:
    states = sample.get("sockets_by_state")
    return None if states is None else sum(n for s, n in states.items() if s != "ESTABLISHED")


def _sockets_established(sample: ReadHandlerSample) -> float | None:
    states = sample.get("sockets_by_state")
    return None if states is None else states.get("ESTABLISHED", 0)


class ReadHandlerStory:
    """The missing WebSocket read handler, its mask (keepalive) and its fix (a reader)."""

    name = "ws-read-handler"
    title = "The missing WebSocket read handler"
    summary = "clients' pings pile up unread in the service's kernel receive buffers"
    rules = (
        f"{RULES}. Churn cells: {CHURN_RULES}. Vanished-client cells: {VANISHED_RULES}. "
        f"Large cells: {LARGE_RULES}"
    )
    axes: Mapping[str, tuple[str, ...]] = AXES
    columns: Sequence[Column] = (
        Column("dead sessions at end (growth, r²)", _dead),
        Column("server Recv-Q growth (MiB/min)", _recv_q_growth),
        Column("service sockets by state", _states),
        Column("vanished sessions kept", _vanished),
        Column("large: after the ramp (Recv-Q kept of sent)", _steady),
        Column("kernel TCP mem growth (MB/min)",
               lambda f: f"{f['kernel_mem_growth_mb_per_min']:+.2f}"),
        Column("held for service growth (MB/min)", lambda f: f"{f['held_growth_mb_per_min']:+.2f}"),
        Column("peak Recv-Q per socket", lambda f: f"{f['recv_q_peak_bytes'] / 1024:.0f} KiB"),
        Column("peak Recv-Q, all sockets", lambda f: format_bytes(f["recv_q_sum_peak_bytes"])),
        Column("peak server receive memory (skmem r)",
               lambda f: f"{f.get('skmem_r_peak_bytes', 0) / MIB:.1f} MiB"),
        Column("kernel held for service, peak", lambda f: format_bytes(f["held_peak_bytes"])),
        Column("kernel TCP mem, peak (host)", _peak_tcp_mem),
        Column("kernel read per sample, p50 wall / CPU", _kernel_read),
        Column("RSS change", lambda f: f"{f['rss_change_bytes'] / MIB:+.1f} MiB"),
        Column("closes",
               lambda f: ", ".join(f"{c}: {n}" for c, n in f["closes"].items()) or "none"),
        Column("first close", _first_close),
        Column("events lost",
               lambda f: "-" if f["events_lost"] is None else str(f["events_lost"])),
    )  # fmt: skip
    charts: Sequence[Chart] = (
        Chart("dead_sessions", "Dead sessions (registered by the service, client gone)",
              "sessions", _chart(dead_sessions)),
        Chart("sessions", "Sessions registered by the service (/stats connections)", "sessions",
              _chart(lambda s: figure(s, "server.connections"))),
        Chart("recv_q", "Server Recv-Q (sum over connections)", "MiB",
              _chart(lambda s: _mib(figure(s, "server.recv_q_bytes")))),
        Chart("skmem_r", "Server receive memory (skmem r, sum over sockets, ss -tm)", "MiB",
              _chart(lambda s: _mib(s.get("skmem_r_bytes")))),
        Chart("sockets_established", "Service's sockets in ESTABLISHED (netlink)", "sockets",
              _chart(_sockets_established)),
        Chart("sockets_closing",
              "Service's sockets in other states: CLOSE-WAIT, FIN-WAIT... (netlink)", "sockets",
              _chart(_sockets_closing)),
        Chart("kernel_tcp_mem", "Kernel TCP memory (host-wide, /proc/net/sockstat)", "MiB",
              _chart(lambda s: _mib(figure(s, "server.kernel_tcp_mem_bytes")))),
        Chart("rss", "Server RSS (flat in the leak: the memory is the kernel's)", "MiB",
              _chart(lambda s: _mib(figure(s, "server.rss_bytes")))),
        Chart("closes", "Connections closed by the server or keepalive (cumulative)",
              "connections",
              _chart(_closes)),
    )  # fmt: skip

    def matrix(self, scope: Scope, only: Mapping[str, tuple[str, ...]] | None = None) -> list[Cell]:
        """quick: churn, then READ_HANDLER x keepalive off/2s; default: keepalive 20s and the
        measured churn; full: every axis, vanished clients and the large cells too."""
        only = only or {}
        return build_matrix(
            quick=scope == "quick",
            full=scope == "full",
            ws_impls=only.get("ws_impl"),
            ping_kinds=only.get("ping_kind"),
            shapes=only.get("shape"),
        )

    def expected(self, cell: Cell) -> Verdict:
        """Unread data messages leak unless keepalive kills the sessions; vanished clients
        leak unless keepalive finds them."""
        verdict: Verdict = expected_verdict(cell)  # type: ignore[assignment]
        return verdict

    async def run_cell(
        self, cell: Cell, options: LabOptions, logs: Path, on_sample: Callable[[Sample], None]
    ) -> CellRun:
        """A fresh service for the cell and a swarm against it (in a namespace: vanished)."""
        if cell.shape == "vanished":
            return await run_vanished_cell(cell, options, logs, on_sample)
        return await run_cell(cell, options, logs, on_sample)

    def judge(self, cell: Cell, samples: Sequence[Sample]) -> CellResult:
        """The figures and the verdict of the shape's rules, and the task dump."""
        return judge_samples(cell, own_all(samples))

    def live(self, sample: Sample) -> str:
        """The key figures of one sample on one line."""
        return live_line(own(sample))


def judge_samples(cell: Cell, samples: Sequence[ReadHandlerSample]) -> CellResult:
    """The figures and the verdict of the shape's rules, and the task dump."""
    if cell.shape == "churn":
        result = judge_churn_cell(samples)
    elif cell.shape == "vanished":
        result = judge_vanished_cell(samples)
    elif cell.shape == "large":
        result = judge_large_cell(samples)
    else:
        result = judge_cell(samples, data_messages=cell.ping_kind == "message")
    result["figures"]["task_groups"] = last_task_groups(samples)
    return result


def live_line(sample: ReadHandlerSample) -> str:
    """The key figures of one sample on one line, for the progress display."""
    recv_q = format_bytes(figure(sample, "server.recv_q_bytes") or 0)
    if "connected" not in sample:  # vanished clients: the server's side only
        return (
            f"sessions={figure(sample, 'server.connections')} recv_q={recv_q} "
            f"link={'down' if sample.get('link_down') else 'up'}"
        )
    closes = ",".join(f"{code}:{n}" for code, n in sample.get("closes", {}).items()) or "-"
    dead = dead_sessions(sample)
    target = f"/{sample['target']}" if "target" in sample else ""
    return (
        f"connected={sample['connected']}{target} "
        + (f"dead={dead} " if sample.get("left") and dead is not None else "")
        + f"recv_q={recv_q} "
        f"tcp_mem={format_bytes(figure(sample, 'server.kernel_tcp_mem_bytes') or 0)} "
        f"rss={format_bytes(figure(sample, 'server.rss_bytes') or 0)} closes={closes}"
        + (
            f" read={read_ms:.0f}ms"
            if (read_ms := sample.get("kernel_read_ms")) is not None
            else ""
        )
    )


# Annotated, so that mypy checks the story against the interface the runner relies on.
STORY: Story = ReadHandlerStory()
