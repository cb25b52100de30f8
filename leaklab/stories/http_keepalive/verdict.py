"""Figures and a verdict for one http-keepalive cell, from its per-second samples. Pure.

Idle keep-alive connections cost no asyncio task on either side, so the rules look at what
they do cost: a socket (an fd) on each side, by TCP state, at the end of the cell's idle hold.
A side *holds* connections when at the last sample it still has at least ``HELD_MIN``
sockets on the link, and at least ``HELD_FRACTION`` of one per request sent:

- **leak**: the callee holds connections (and, by the physics, so does the caller: one
  ESTABLISHED pair per request), or the caller holds connections that are not CLOSE_WAIT;
- **masked**: the callee does not hold any, but the caller does, most of them in CLOSE_WAIT:
  the callee's keep-alive timeout closed its ends and it looks healthy, while the caller
  keeps every socket for good (httpx never reads an idle pooled connection, so it never
  sees the callee's FIN);
- **healthy**: neither side holds connections at the end;
- **unknown**: no sample carried both sides' socket figures, fewer than ``MIN_REQUESTS``
  requests were done, or the cell was idle less than ``MIN_IDLE_S`` at its end (nothing can
  be said about connections staying).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from leaklab.story import CellResult, Sample, Verdict

__all__ = ["HELD_FRACTION", "HELD_MIN", "MIN_IDLE_S", "MIN_REQUESTS", "RULES", "judge_cell"]

HELD_MIN = 10
HELD_FRACTION = 0.5
MIN_IDLE_S = 2.0
MIN_REQUESTS = 20
SIDES = ("caller", "callee")

# The rules above in one sentence, for the report (kept next to the code that applies them).
RULES = (
    "a side *holds* connections when, at the end of the idle hold, it still has at least "
    f"{HELD_MIN} sockets on the caller-callee link and at least {HELD_FRACTION:g} per request "
    "sent; **leak** when the callee holds connections (or the caller holds ones not in "
    "CLOSE_WAIT); **masked** when the callee holds none but the caller does, mostly in "
    "CLOSE_WAIT (the callee's keep-alive timeout closed its ends, the caller never noticed); "
    f"**healthy** when neither side holds connections; **unknown** with fewer than "
    f"{MIN_REQUESTS} requests, less than {MIN_IDLE_S:g} s idle at the end, or no socket "
    "figures of both sides"
)


def _values(samples: Sequence[Sample], key: str) -> list[Any]:
    return [s[key] for s in samples if s.get(key) is not None]


def _side_figures(samples: Sequence[Sample], side: str, requests: int) -> dict[str, Any]:
    """One side's figures: fds and tasks at start and end, link sockets at the end and peak."""
    fds, tasks = _values(samples, f"{side}_fds"), _values(samples, f"{side}_tasks")
    sockets = _values(samples, f"{side}_link_sockets")
    links = _values(samples, f"{side}_link")
    fd_growth = fds[-1] - fds[0] if fds else 0
    return {
        f"{side}_fds_start": fds[0] if fds else None,
        f"{side}_fds_end": fds[-1] if fds else None,
        f"{side}_fds_peak": max(fds, default=None),
        f"{side}_fds_per_100_requests": round(fd_growth / requests * 100, 1) if requests else 0.0,
        f"{side}_tasks_start": tasks[0] if tasks else None,
        f"{side}_tasks_end": tasks[-1] if tasks else None,
        f"{side}_tasks_peak": max(tasks, default=None),
        f"{side}_link_sockets_end": sockets[-1] if sockets else None,
        f"{side}_link_sockets_peak": max(sockets, default=None),
        f"{side}_link_end": dict(links[-1]) if links else {},
    }


def cell_figures(samples: Sequence[Sample]) -> dict[str, Any]:
    """The figures of one cell: requests, idle time at the end, and each side's counts."""
    requests = max(_values(samples, "requests_done"), default=0)
    last = samples[-1] if samples else {}
    last_request_s = last.get("last_request_s")
    idle_s = (
        round(last["t_s"] - last_request_s, 2)
        if last_request_s is not None and "t_s" in last
        else 0.0
    )
    latencies = _values(samples, "forward_p50_ms")
    figures: dict[str, Any] = {
        "samples": len(samples),
        "duration_s": max(_values(samples, "t_s"), default=0.0),
        "requests": requests,
        "errors": max(_values(samples, "errors"), default=0),
        "first_error": next((s["first_error"] for s in samples if s.get("first_error")), None),
        "idle_s": idle_s,
        "forward_p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "held_threshold": held_threshold(requests),
    }
    for side in SIDES:
        figures |= _side_figures(samples, side, requests)
    return figures


def held_threshold(requests: int) -> int:
    """The fewest link sockets at the end that count as held, for ``requests`` sent."""
    return max(HELD_MIN, round(HELD_FRACTION * requests))


def judge(figures: dict[str, Any]) -> tuple[Verdict, str]:
    """The verdict (one of ``VERDICTS``) and a sentence saying why, in plain words."""
    caller_end, callee_end = figures["caller_link_sockets_end"], figures["callee_link_sockets_end"]
    if caller_end is None or callee_end is None:
        return "unknown", "unknown: no sample carried both sides' socket figures"
    requests = figures["requests"]
    if requests < MIN_REQUESTS:
        return "unknown", f"unknown: only {requests} requests were done"
    if figures["idle_s"] < MIN_IDLE_S:
        return "unknown", (
            f"unknown: the cell was idle only {figures['idle_s']:.1f} s at its end; "
            "nothing can be said about connections staying"
        )
    threshold = figures["held_threshold"]
    close_wait = figures["caller_link_end"].get("CLOSE_WAIT", 0)
    after = f"after {requests} requests and {figures['idle_s']:.0f} s idle"
    fds = (
        f"+{figures['caller_fds_per_100_requests']:g} / +{figures['callee_fds_per_100_requests']:g}"
        " fds per 100 requests on caller / callee"
    )
    tasks = (
        f"tasks {figures['caller_tasks_start']} -> {figures['caller_tasks_end']} / "
        f"{figures['callee_tasks_start']} -> {figures['callee_tasks_end']}"
    )
    if callee_end >= threshold:
        return "leak", (
            f"leaks on both sides: {after} the caller holds {caller_end} sockets to the callee "
            f"and the callee {callee_end} ({fds}; {tasks})"
        )
    if caller_end >= threshold and close_wait * 2 >= caller_end:
        return "masked", (
            f"masked: the callee closed its idle connections (peak "
            f"{figures['callee_link_sockets_peak']}, {callee_end} left) and looks healthy, but "
            f"{after} the caller holds {close_wait} sockets in CLOSE_WAIT ({fds}; {tasks})"
        )
    if caller_end >= threshold:
        return "leak", f"leaks on the caller: {after} it holds {caller_end} sockets ({fds})"
    errors = f", {figures['errors']} errors" if figures["errors"] else ""
    return "healthy", (
        f"healthy: {after} the caller holds {caller_end} sockets to the callee and the callee "
        f"{callee_end} (peaks {figures['caller_link_sockets_peak']} / "
        f"{figures['callee_link_sockets_peak']}){errors}"
    )


def judge_cell(samples: Sequence[Sample]) -> CellResult:
    """The figures of one cell's samples and the verdict the rules give them."""
    figures = cell_figures(samples)
    verdict, reason = judge(figures)
    return {"figures": figures, "verdict": verdict, "reason": reason}
