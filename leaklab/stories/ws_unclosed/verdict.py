"""Figures and a verdict for one ws-unclosed cell, from its per-second samples. Pure functions.

A sample (see :mod:`.cell`) has the service's fds and ESTABLISHED sockets read from outside
(``fds``, ``established``), its sessions and tasks from inside (``sessions`` from ``/stats``,
``tasks`` from ``/debug/tasks``; None when the service did not answer), what a new client
saw (``probe``: ``101``, ``http_503``, ``dropped``...), whether ``/healthz`` answered on a
new connection (``healthz``: ``200`` or why not), the client's own counts (``client``) and
whether it was still running (``client_running``). The first sample (t = 0) is taken
before the client starts.

The rules, with their thresholds:

- **leak**: the service's fds grew by at least ``LEAK_MIN_FDS`` (connections held, one per
  request) and either it froze at its limit (fds within ``LIMIT_MARGIN_FDS`` of the fd limit,
  and ``/healthz`` failed or a new client got neither 101 nor 503, while the client ran) or
  nothing stopped the growth.
- **masked**: the same growth, contained: no freeze, and the client got HTTP 503 (the
  session cap). The leak is still there; the cap only keeps fds free for everything else.
- **healthy**: the fds did not grow by ``LEAK_MIN_FDS`` (a failed ``/healthz`` is said).
- **unknown**: fewer than ``MIN_SAMPLES`` samples, or no line from the client.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

from leaklab.story import CellResult, Sample, Verdict

LEAK_MIN_FDS = 50
# The cost of a connection is a slope over at least this many connections of difference.
MIN_CONNECTIONS_FOR_COST = 25
# ...read from samples where the connections held still: within this many of the sample before.
STEADY_CONNECTIONS = 2
MIN_SAMPLES = 3
# At the limit: the service's fds within this margin of its fd limit.
LIMIT_MARGIN_FDS = 4
# Recovered: /healthz answers, a new client gets 101, and the fds are back within this margin.
RECOVERY_FDS_MARGIN = 8
ANSWERED = ("101", "http_503")

RULES = (
    f"**leak** when the service's fds grew by {LEAK_MIN_FDS} or more (one held connection per "
    f"request) and it froze at its fd limit (within {LIMIT_MARGIN_FDS} fds of it, and /healthz "
    "failed or a new client got neither 101 nor 503 while the client ran), or nothing stopped "
    "the growth; **masked** when the same growth was contained: no freeze, and the client got "
    "HTTP 503 from the session cap (the leak is still there); **healthy** when the fds grew by "
    f"less than {LEAK_MIN_FDS}; **unknown** with fewer than {MIN_SAMPLES} samples or no line "
    "from the client"
)


def _values(samples: Sequence[Sample], key: str) -> list[float]:
    return [float(v) for s in samples if (v := s.get(key)) is not None]


def _client(sample: Sample, key: str) -> Any:
    client = sample.get("client")
    return None if client is None else client.get(key)


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points; None when x does not vary."""
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var_x = sum((x - mean_x) ** 2 for x, _ in points)
    if var_x == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var_x


def cost_per_connection(samples: Sequence[Sample], key: str) -> float | None:
    """How much ``key`` grows per ESTABLISHED connection of the service; None if the
    connections did not vary enough to say.

    A slope over the samples taken while the connections held still (within
    ``STEADY_CONNECTIONS`` of the sample before: before the client, on the plateau at the
    cap or the fd limit, after the client): while the client ramps up, the figures read one
    after another (psutil, then ``/stats``, then ``/debug/tasks``) race it, by tens of
    connections on a loaded host.
    """
    points = []
    previous: float | None = None
    for s in samples:
        established, value = s.get("established"), s.get(key)
        if established is not None and value is not None:
            if previous is None or abs(established - previous) <= STEADY_CONNECTIONS:
                points.append((float(established), float(value)))
        previous = established
    xs = [x for x, _ in points]
    if not xs or max(xs) - min(xs) < MIN_CONNECTIONS_FOR_COST:
        return None
    value = slope(points)
    return None if value is None else round(value, 2)


def recovery_s(samples: Sequence[Sample], fds_base: float | None) -> float | None:
    """Seconds from the client's exit to the first sample where the service is back: /healthz
    answers, a new client gets 101, the fds are within ``RECOVERY_FDS_MARGIN`` of the start."""
    for s in samples:
        stopped_at = s.get("client_stopped_at_s")
        if stopped_at is None:
            continue
        fds = s.get("fds")
        back = fds is not None and (fds_base is None or fds <= fds_base + RECOVERY_FDS_MARGIN)
        if back and s.get("healthz") == "200" and s.get("probe") == "101":
            return round(float(s["t_s"]) - float(stopped_at), 1)
    return None


def cell_figures(samples: Sequence[Sample], fd_limit: int) -> dict[str, Any]:
    """The figures of one cell: growth, peaks, cost per connection, what failed, recovery."""
    running = [s for s in samples if s.get("client_running")]
    last_client = next((s["client"] for s in reversed(samples) if s.get("client")), None)
    fds = _values(samples, "fds")
    fds_base = fds[0] if fds else None
    probes = collections.Counter(str(s["probe"]) for s in running if s.get("probe"))
    healthz = [s["healthz"] for s in running if s.get("healthz") is not None]
    tasks = _values(samples, "tasks") + _values(samples, "stats_tasks")
    return {
        "samples": len(samples),
        "duration_s": max((s["t_s"] for s in samples), default=0.0),
        "fd_limit": fd_limit,
        "fds_base": int(fds_base) if fds_base is not None else None,
        "fds_peak": int(max(fds)) if fds else None,
        "fds_end": int(fds[-1]) if fds else None,
        "established_peak": int(max(_values(samples, "established"), default=0)),
        "sessions_peak": int(max(_values(samples, "sessions"), default=0)),
        "tasks_peak": int(max(tasks, default=0)),
        "held_peak": int(max((_client(s, "held") or 0 for s in samples), default=0)),
        "requests": last_client["requests"] if last_client else None,
        "opened": last_client["opened"] if last_client else None,
        "client_failures": dict(last_client["failed"]) if last_client else {},
        "first_failure_s": last_client.get("first_failure_s") if last_client else None,
        "fds_per_connection": cost_per_connection(samples, "fds"),
        "tasks_per_connection": cost_per_connection(samples, "tasks"),
        "probes": dict(sorted(probes.items())),
        "healthz_samples": len(healthz),
        "healthz_failed": sum(h != "200" for h in healthz),
        "stats_failed": sum(s.get("stats") not in (None, "ok") for s in running),
        "recovery_s": recovery_s(samples, fds_base),
        "log_lines": int(max(_values(samples, "log_lines"), default=0)),
        "log_errors": int(max(_values(samples, "log_errors"), default=0)),
    }


def counts_text(counts: dict[str, int]) -> str:
    """``{"http_503": 3, "dropped": 1}`` as ``http_503: 3, dropped: 1`` (``none`` if empty)."""
    return ", ".join(f"{kind}: {n}" for kind, n in counts.items()) or "none"


def judge(figures: dict[str, Any]) -> tuple[Verdict, str]:
    """The verdict (one of ``VERDICTS``) and a sentence saying why, in plain words."""
    if figures["samples"] < MIN_SAMPLES or figures["requests"] is None:
        return "unknown", "unknown: too few samples, or the client never reported"
    fds_peak, fd_limit = figures["fds_peak"] or 0, figures["fd_limit"]
    growth = fds_peak - (figures["fds_base"] or 0)
    healthz = f"{figures['healthz_samples'] - figures['healthz_failed']} of " \
              f"{figures['healthz_samples']} s"  # fmt: skip
    refused = figures["client_failures"].get("http_503", 0)
    failed_probes = {k: n for k, n in figures["probes"].items() if k not in ANSWERED}
    frozen = fds_peak >= fd_limit - LIMIT_MARGIN_FDS and (
        figures["healthz_failed"] > 0 or bool(failed_probes)
    )
    fds_each, tasks_each = figures["fds_per_connection"], figures["tasks_per_connection"]
    held = f"{figures['held_peak']} connections held by the client" + (
        f" (+{fds_each:.1f} fd and +{tasks_each:.1f} tasks each on the service)"
        if fds_each is not None and tasks_each is not None
        else ""
    )
    if growth < LEAK_MIN_FDS:
        return "healthy", (
            f"healthy: {figures['requests']} requests over {figures['opened']} "
            f"connection{'s' if figures['opened'] != 1 else ''}, {figures['held_peak']} held "
            f"at most; service fds +{growth}; /healthz answered {healthz}"
        )
    if frozen:
        recovery = figures["recovery_s"]
        recovered = (
            f"; back {recovery:.1f} s after the client exited" if recovery is not None
            else "; not back by the end of the cell"
        )  # fmt: skip
        return "leak", (
            f"leak: {held}, up to the fd limit ({fds_peak} of {fd_limit} fds): /healthz "
            f"answered {healthz}, a new client got {counts_text(failed_probes)}"
            f"{recovered}"
        )
    if refused:
        return "masked", (
            f"masked (contained): the leak is still there ({held}, never closed), but the "
            f"session cap refused {refused} requests with HTTP 503 and kept "
            f"{fd_limit - fds_peak} fds free: /healthz answered {healthz}"
            + ("; new clients got 503 too" if figures["probes"].get("http_503") else "")
        )
    return "leak", f"leak: {held}, service fds +{growth}; nothing stopped the growth yet"


def judge_cell(samples: Sequence[Sample], fd_limit: int) -> CellResult:
    """The figures of one cell's samples and the verdict the rules give them."""
    figures = cell_figures(samples, fd_limit)
    verdict, reason = judge(figures)
    return {"figures": figures, "verdict": verdict, "reason": reason}
