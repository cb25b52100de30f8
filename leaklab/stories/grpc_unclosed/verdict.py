"""Figures and a verdict for one cell, computed from its per-second samples. Pure functions.

The thresholds are explicit constants, and the same rules judge every cell. "Held channels"
are the channels the client had open at the end of its load (all it created, for the leak;
one for reuse-one; none for close-each):

- **leak**: the client held at least ``MIN_HELD_CHANNELS`` channels and the server kept at
  least ``LEAK_CONNECTIONS_PER_HELD`` ESTABLISHED connections per held channel, or its fds
  stood at the fd limit: every held channel costs the server a connection and an fd.
- **masked**: the client held that many channels, and the server did not pay for them: either
  they all shared at most ``SHARED_CONNECTIONS_MAX`` connections (grpc's shared subchannel
  pool: the client still holds every channel object, and its memory grows), or the server
  closed the idle ones (``grpc.max_connection_idle_ms``).
- **healthy**: the client held fewer channels (it closed or reused them).
- **unknown**: no sample carried the server's figures or the client's counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leaklab.story import CellResult, Sample, Verdict

__all__ = ["RULES", "cell_figures", "judge", "judge_cell"]

MIN_HELD_CHANNELS = 50
LEAK_CONNECTIONS_PER_HELD = 0.5
SHARED_CONNECTIONS_MAX = 2
FD_LIMIT_MARGIN = 2  # fds within this of the limit count as "at the limit"
MIB = 1024 * 1024

# The rules above in one sentence, for the report (kept next to the code that applies them).
RULES = (
    f"**leak** when the client held at least {MIN_HELD_CHANNELS} channels at the end of its load "
    f"and the server kept at least {LEAK_CONNECTIONS_PER_HELD:g} ESTABLISHED connections per held "
    f"channel, or its fds stood within {FD_LIMIT_MARGIN} of the fd limit; **masked** when the "
    f"client held that many channels but they shared at most {SHARED_CONNECTIONS_MAX} "
    "connections (grpc's shared subchannel pool hides them; the client's memory still grows) "
    "or the server closed the idle ones; **healthy** when the client held fewer (it closed or "
    "reused its channels); **unknown** when no sample carried the server's figures or the "
    "client's counts"
)


def _values(samples: Sequence[Sample], side: str, key: str) -> list[tuple[float, Any]]:
    """(t_s, value) of ``sample[side][key]`` where present (missing samples are skipped)."""
    out = []
    for sample in samples:
        figures = sample.get(side)
        if isinstance(figures, dict) and figures.get(key) is not None and "t_s" in sample:
            out.append((float(sample["t_s"]), figures[key]))
    return out


def _span(points: list[tuple[float, Any]]) -> dict[str, Any]:
    """Start, peak and end of a series (None when it is empty)."""
    if not points:
        return {"start": None, "peak": None, "end": None}
    return {"start": points[0][1], "peak": max(v for _, v in points), "end": points[-1][1]}


def cell_figures(samples: Sequence[Sample]) -> dict[str, Any]:
    """The figures of one cell: connections, fds and threads of both sides, calls, recovery."""
    load = [s for s in samples if s.get("phase", "load") == "load"]
    recovery = [s for s in samples if s.get("phase") == "recovery"]
    fd_limit = next((s["fd_limit"] for s in samples if s.get("fd_limit")), None)
    # The client's totals: its final line, written as it exits, is the most complete.
    calls = next((s["calls"] for s in reversed(samples) if s.get("calls")), None)
    # Held channels and server connections are compared in the same sample.
    paired = next(
        (s for s in reversed(load) if s.get("calls") and isinstance(s.get("server"), dict)), None
    )
    server_fds = _values(load, "server", "fds")
    at_limit = [
        t for t, fds in server_fds if fd_limit is not None and fds >= fd_limit - FD_LIMIT_MARGIN
    ]
    rss = _values(load, "client", "rss_bytes")
    first_error = next((s["first_error"] for s in samples if s.get("first_error")), None)
    recovered = next(
        (s.get("since_client_exit_s") for s in recovery
         if isinstance(s.get("server"), dict) and s["server"].get("established") == 0),
        None,
    )  # fmt: skip
    after: dict[str, Any] = next(
        (s["server"] for s in reversed(recovery) if isinstance(s.get("server"), dict)), {}
    )
    return {
        "samples": len(samples),
        "duration_s": max((float(s["t_s"]) for s in samples if "t_s" in s), default=0.0),
        "fd_limit": fd_limit,
        "server_connections": _span(_values(load, "server", "established")),
        "held_channels": paired["calls"]["open_channels"] if paired else None,
        "server_connections_with_held": paired["server"]["established"] if paired else None,
        "server_fds": _span(server_fds),
        "server_threads": _span(_values(load, "server", "threads")),
        "client_connections": _span(_values(load, "client", "established")),
        "client_fds": _span(_values(load, "client", "fds")),
        "client_threads": _span(_values(load, "client", "threads")),
        "client_rss_change_bytes": int(rss[-1][1] - rss[0][1]) if rss else None,
        "fd_limit_reached_s": at_limit[0] if at_limit else None,
        "fds_at_limit_at_end": bool(at_limit) and at_limit[-1] == server_fds[-1][0],
        "held_channels_at_exit": calls["open_channels"] if calls else None,
        "channels_created": calls["loops"] if calls else None,
        "held_capped": bool(calls and calls.get("capped")),
        "calls_ok": calls["calls_ok"] if calls else None,
        "errors": dict(calls["errors"]) if calls else {},
        "first_error": first_error,
        "recovered_s": recovered,
        "server_after_exit": {"established": after.get("established"), "fds": after.get("fds")},
    }


def _first_error_text(figures: dict[str, Any]) -> str:
    error = figures["first_error"]
    if not error:
        return "no call failed"
    return f"first error {error['code']} at {error['at_s']:.1f} s ({error['details']})"


def judge(figures: dict[str, Any]) -> tuple[Verdict, str]:
    """The verdict (one of ``VERDICTS``) and a sentence saying why, in plain words."""
    connections = figures["server_connections"]
    held, with_held = figures["held_channels"], figures["server_connections_with_held"]
    if held is None or with_held is None:
        return "unknown", "no sample carried the server's figures and the client's counts"
    fds, limit = figures["server_fds"], figures["fd_limit"]
    errors = sum(figures["errors"].values())
    if held >= MIN_HELD_CHANNELS and (
        with_held >= LEAK_CONNECTIONS_PER_HELD * held or figures["fds_at_limit_at_end"]
    ):
        reached = figures["fd_limit_reached_s"]
        limit_text = (
            f"fd limit {limit} reached at {reached:.0f} s, {errors} calls failed, "
            if reached is not None
            else f"below the fd limit {limit} so far, "
        )
        return "leak", (
            f"leak: {held} held channels cost the server {with_held} ESTABLISHED "
            f"connections and {fds['peak']} fds (threads {figures['server_threads']['start']}"
            f"->{figures['server_threads']['peak']}); {limit_text}{_first_error_text(figures)}"
        )
    if held >= MIN_HELD_CHANNELS:
        rss = figures["client_rss_change_bytes"]
        rss_text = f", client RSS {rss / MIB:+.1f} MiB" if rss is not None else ""
        if connections["peak"] <= SHARED_CONNECTIONS_MAX:
            return "masked", (
                f"masked: {held} held channels share {connections['peak']} TCP connection(s) "
                "through grpc's shared subchannel pool, so the server sees nothing; the client "
                f"still holds every channel{rss_text}, and one option that differs per channel "
                "(or grpc.use_local_subchannel_pool) turns it into one connection each"
            )
        return "masked", (
            f"masked: the server closed idle connections (peak {connections['peak']}, "
            f"{with_held} at the end) while the client held {held} channels{rss_text}"
        )
    failed = f"; {errors} calls failed ({_first_error_text(figures)})" if errors else ""
    return "healthy", (
        f"healthy: {held} channel(s) open at the end, at most {connections['peak']} server "
        f"connections and {fds['peak']} fds{failed}"
    )


def judge_cell(samples: Sequence[Sample]) -> CellResult:
    """The figures of one cell's samples and the verdict the rules give them."""
    figures = cell_figures(samples)
    verdict, reason = judge(figures)
    return {"figures": figures, "verdict": verdict, "reason": reason}
