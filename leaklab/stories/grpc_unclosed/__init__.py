"""Story ``grpc-unclosed``: a controller that makes a gRPC channel per call and never closes it.

The soda server (one unary RPC, a random number after 10 ms) runs under a low fd limit. With
``grpc.use_local_subchannel_pool`` every held channel costs one connection and one fd on each
side, until the server's fds run out and a new client gets UNAVAILABLE "... before receiving
SETTINGS frame" (Go's "failed to receive server preface"). With grpc's default shared pool the
same code makes one connection for all channels: the trap that hides the bug. Fixes: close
each channel (a ``with`` block) or reuse one; the server-side mitigation is
``grpc.max_connection_idle_ms``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from leaklab.stories.grpc_unclosed.cell import SERVER_FD_LIMIT, run_cell
from leaklab.stories.grpc_unclosed.matrix import AXES, Cell, build_matrix, expected_verdict
from leaklab.stories.grpc_unclosed.verdict import RULES, judge_cell
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


def side(sample: Sample, name: str, key: str) -> Any:
    """``sample[name][key]`` (``name`` is "server", "client" or "calls"); None if absent."""
    figures = sample.get(name)
    return figures.get(key) if isinstance(figures, dict) else None


def _span(figures: dict[str, Any], key: str) -> str:
    span = figures[key]
    return "-" if span["start"] is None else f"{span['start']} -> {span['peak']}"


def _errors(figures: dict[str, Any]) -> str:
    return ", ".join(f"{code}: {n}" for code, n in sorted(figures["errors"].items())) or "none"


def _first_error(figures: dict[str, Any]) -> str:
    """The code, the time and the last clause of the details (grpc nests the causes)."""
    error = figures["first_error"]
    if not error:
        return "none"
    return f"{error['code']} at {error['at_s']:.1f} s: {error['details'].rsplit(': ', 1)[-1]}"


def _limit(figures: dict[str, Any]) -> str:
    reached = figures["fd_limit_reached_s"]
    return f"{figures['fd_limit']} at {reached:.0f} s" if reached is not None else "no"


def _threads(figures: dict[str, Any]) -> str:
    return f"{_span(figures, 'server_threads')} / {_span(figures, 'client_threads')}"


def _after_exit(figures: dict[str, Any]) -> str:
    after = figures["server_after_exit"]
    if after["established"] is None:
        return "-"
    recovered = figures["recovered_s"]
    when = f", {recovered:.1f} s after it exited" if recovered is not None else " (not recovered)"
    return f"{after['established']} connections, {after['fds']} fds{when}"


def _errors_total(sample: Sample) -> int | None:
    errors = side(sample, "calls", "errors")
    return None if errors is None else sum(errors.values())


def _held(sample: Sample) -> int | None:
    if sample.get("phase") == "recovery":
        return 0
    held: int | None = side(sample, "calls", "open_channels")
    return held


class GrpcUnclosedStory:
    """gRPC channels created per call and never closed; the shared pool's mask; the fixes."""

    name = "grpc-unclosed"
    title = "A gRPC channel per call, never closed"
    summary = "each held channel costs the server a connection and an fd, until its fds run out"
    rules = RULES
    axes = AXES
    columns = (
        Column("held channels", lambda f: str(f["held_channels"])),
        Column("server connections", lambda f: _span(f, "server_connections")),
        Column("server fds", lambda f: _span(f, "server_fds")),
        Column("fd limit reached", _limit),
        Column("client fds", lambda f: _span(f, "client_fds")),
        Column("threads server / client", _threads),
        Column("calls ok", lambda f: str(f["calls_ok"])),
        Column("errors", _errors),
        Column("first error", _first_error),
        Column("server after the client exits", _after_exit),
    )
    charts = (
        Chart("server_connections", "Server ESTABLISHED connections (its own sockets)",
              "connections", lambda s: side(s, "server", "established")),
        Chart("server_fds", f"Server open fds (its fd limit is {SERVER_FD_LIMIT})", "fds",
              lambda s: side(s, "server", "fds")),
        Chart("held_channels", "Channels the client holds open (0 once it exited)", "channels",
              _held),
        Chart("errors", "Failed calls (cumulative)", "calls", _errors_total),
        Chart("threads", "Server threads (flat: a connection costs no thread)", "threads",
              lambda s: side(s, "server", "threads")),
    )  # fmt: skip

    def matrix(self, scope: Scope, only: Mapping[str, tuple[str, ...]] | None = None) -> list[Cell]:
        """quick: leak, the shared-pool trap, close-each and reuse-one; see :func:`build_matrix`."""
        return build_matrix(scope, dict(only or {}))

    def expected(self, cell: Cell) -> Verdict:
        """Held channels leak with the local pool; the shared pool or an idle timeout masks it."""
        verdict: Verdict = expected_verdict(cell)  # type: ignore[assignment]
        return verdict

    async def run_cell(
        self, cell: Cell, options: LabOptions, logs: Path, on_sample: Callable[[Sample], None]
    ) -> CellRun:
        """A fresh soda server for the cell and a client against it."""
        return await run_cell(cell, options, logs, on_sample)

    def judge(self, cell: Cell, samples: Sequence[Sample]) -> CellResult:
        """The figures and the verdict of the rules in :mod:`.verdict`."""
        return judge_cell(samples)

    def live(self, sample: Sample) -> str:
        """Held channels, server connections and fds, calls and errors, on one line."""
        errors = side(sample, "calls", "errors") or {}
        return (
            f"held={side(sample, 'calls', 'open_channels')} "
            f"conns={side(sample, 'server', 'established')} "
            f"fds={side(sample, 'server', 'fds')}/{sample.get('fd_limit')} "
            f"ok={side(sample, 'calls', 'calls_ok')} "
            f"errors={','.join(f'{c}:{n}' for c, n in errors.items()) or '-'}"
        )


STORY: Story = GrpcUnclosedStory()
