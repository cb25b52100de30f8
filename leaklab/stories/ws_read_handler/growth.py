"""The churn cells' rule: do dead sessions grow, steadily? Pure functions over samples.

A churn cell's clients arrive, ping for a few seconds and leave with a normal close. A
**dead session** is one the service still has registered although its client left: the
service's sessions (``/stats`` ``connections``) minus the swarm's clients that are connected
and not leaving. The rule fits a line through the dead sessions of the samples taken while
the swarm was churning, from the first departure on (before it nobody could be dead):

- **leak**: they grow by at least ``DEAD_GROWTH_PER_MIN`` a minute, steadily
  (r² at least ``LINEAR_R2``), and more than ``DEAD_ALLOWED`` are dead at the end;
- **masked**: more than ``DEAD_ALLOWED`` are dead at the end but they do not grow: something
  reaps them after a delay (keepalive), so they plateau;
- **healthy**: at most ``DEAD_ALLOWED`` dead at the end and no growth: sessions are reaped
  as their clients leave;
- **unknown**: fewer than ``MIN_SAMPLES`` such samples (no server figures, or a cell shorter
  than the clients' lifetime), or growth that is not steady (r² below ``LINEAR_R2``).

The summed Recv-Q of the service's sockets is fitted the same way and reported beside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypedDict

from leaklab.stories.ws_read_handler.sample import ReadHandlerSample
from leaklab.stories.ws_read_handler.verdict import CellFigures, cell_figures, figure
from leaklab.story import CellResult, Verdict

__all__ = [
    "CHURN_RULES",
    "DEAD_ALLOWED",
    "DEAD_GROWTH_PER_MIN",
    "LINEAR_R2",
    "MIN_SAMPLES",
    "ChurnCellFigures",
    "ChurnFigures",
    "Fit",
    "churn_figures",
    "dead_sessions",
    "judge_churn",
    "judge_churn_cell",
    "linear_fit",
]

MIN_SAMPLES = 4
DEAD_GROWTH_PER_MIN = 30.0
LINEAR_R2 = 0.9
# A healthy server may still be closing a session or two of the clients that just left.
DEAD_ALLOWED = 2
MIB = 1024 * 1024

CHURN_RULES = (
    "a churn cell's dead sessions (sessions the service still has registered minus the "
    "clients connected and not leaving) are fitted with a line from the first departure to "
    f"the end of the churn: **leak** when they grow at least {DEAD_GROWTH_PER_MIN:.0f} a "
    f"minute with r² of at least {LINEAR_R2} and more than {DEAD_ALLOWED} are dead at the "
    f"end; **masked** when more than {DEAD_ALLOWED} are dead at the end but they do not grow "
    f"(a plateau: something reaps them late); **healthy** when at most {DEAD_ALLOWED} are "
    f"dead and they do not grow; **unknown** with fewer than {MIN_SAMPLES} samples to fit "
    "or growth that is not steady"
)


@dataclasses.dataclass(frozen=True)
class Fit:
    """A least-squares line through (seconds, value) points."""

    slope_per_min: float
    r2: float
    points: int


class ChurnFigures(TypedDict):
    """Dead sessions and Recv-Q over a churn: the fits, the values at the end."""

    dead_sessions_growth_per_min: float
    dead_sessions_r2: float
    dead_sessions_end: int | None
    dead_sessions_fit_samples: int
    recv_q_growth_mib_per_min: float
    recv_q_r2: float
    clients_opened: int
    clients_left: int
    left_unanswered: int
    sockets_by_state_end: dict[str, int]


class ChurnCellFigures(CellFigures, ChurnFigures):
    """A churn cell's figures: the static ones too, for the shared columns."""


def linear_fit(points: Sequence[tuple[float, float]]) -> Fit:
    """The least-squares line through ``points``; slope per minute and r².

    r² is 0 when the values do not vary (a flat line explains nothing) or there are fewer
    than two distinct times.
    """
    n = len(points)
    if n < 2:
        return Fit(0.0, 0.0, n)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in points)
    var_v = sum((v - mean_v) ** 2 for _, v in points)
    if var_t == 0 or var_v == 0:
        return Fit(0.0, 0.0, n)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    slope = cov / var_t
    r2 = cov * cov / (var_t * var_v)
    return Fit(slope * 60, r2, n)


def dead_sessions(sample: ReadHandlerSample) -> int | None:
    """Sessions the service has registered whose client is gone (never below 0); None if
    the sample lacks the service's or the swarm's count."""
    sessions, active = figure(sample, "server.connections"), sample.get("active")
    if sessions is None or active is None:
        return None
    return max(0, int(sessions) - int(active))


def _fit_window(samples: Sequence[ReadHandlerSample]) -> list[ReadHandlerSample]:
    """The samples taken while the swarm churned, from its first departure on."""
    return [
        s for s in samples
        if "t_s" in s and (s.get("left") or 0) > 0 and not s.get("swarm_closing")
    ]  # fmt: skip


def churn_figures(samples: Sequence[ReadHandlerSample]) -> ChurnFigures:
    """Dead sessions and Recv-Q over the churn: fits, values at the end, sockets by state."""
    window = _fit_window(samples)
    dead = [(s["t_s"], float(d)) for s in window if (d := dead_sessions(s)) is not None]
    recv_q = [
        (s["t_s"], v / MIB) for s in window if (v := figure(s, "server.recv_q_bytes")) is not None
    ]
    dead_fit, recv_fit = linear_fit(dead), linear_fit(recv_q)
    states: dict[str, int] = next(
        (s["sockets_by_state"] for s in reversed(window) if s.get("sockets_by_state")), {}
    )
    left = max((s.get("left") or 0 for s in samples), default=0)
    return {
        # (+ 0.0: a flat line's -0.0 reads 0)
        "dead_sessions_growth_per_min": round(dead_fit.slope_per_min, 1) + 0.0,
        "dead_sessions_r2": round(dead_fit.r2, 3),
        "dead_sessions_end": int(dead[-1][1]) if dead else None,
        "dead_sessions_fit_samples": dead_fit.points,
        "recv_q_growth_mib_per_min": round(recv_fit.slope_per_min, 2) + 0.0,
        "recv_q_r2": round(recv_fit.r2, 3),
        "clients_opened": max((s.get("opened") or 0 for s in samples), default=0),
        "clients_left": left,
        "left_unanswered": max((s.get("left_unanswered") or 0 for s in samples), default=0),
        "sockets_by_state_end": dict(states),
    }


def judge_churn(figures: ChurnCellFigures) -> tuple[Verdict, str]:
    """The verdict of a churn cell's figures and a sentence saying why."""
    points, end = figures["dead_sessions_fit_samples"], figures["dead_sessions_end"]
    growth, r2 = figures["dead_sessions_growth_per_min"], figures["dead_sessions_r2"]
    if points < MIN_SAMPLES or end is None:
        return "unknown", (
            f"unknown: {points} samples after the first client left, {MIN_SAMPLES} needed "
            "(no server figures, or a cell shorter than the clients' lifetime)"
        )
    grows = growth >= DEAD_GROWTH_PER_MIN
    recv_q = f"Recv-Q {figures['recv_q_growth_mib_per_min']:+.1f} MiB/min"
    if grows and r2 >= LINEAR_R2 and end > DEAD_ALLOWED:
        return "leak", (
            f"leaks: dead sessions grow {growth:.0f}/min (r² {r2:.2f}), {recv_q}; {end} "
            "clients that left are still registered (the service's sockets: "
            f"{_states(figures['sockets_by_state_end'])})"
        )
    if grows and end > DEAD_ALLOWED:
        return (
            "unknown",
            f"unknown: dead sessions rise {growth:.0f}/min but not steadily (r² {r2:.2f})",
        )
    if end > DEAD_ALLOWED:
        return "masked", (
            f"masked: {end} dead sessions at the end but no growth ({round(growth):+d}/min): "
            "something reaps them late"
        )
    return "healthy", (
        f"healthy: sessions are reaped as clients leave ({figures['clients_left']} left, "
        f"{end} dead at the end, {round(growth):+d}/min)"
    )


def judge_churn_cell(samples: Sequence[ReadHandlerSample]) -> CellResult:
    """A churn cell's figures (the static ones too, for the shared columns) and verdict."""
    # Its clients subscribe to a type nobody publishes: no event can be lost.
    figures: ChurnCellFigures = {
        **cell_figures(samples),
        **churn_figures(samples),
        "events_lost": None,
    }
    verdict, reason = judge_churn(figures)
    return {"figures": {**figures}, "verdict": verdict, "reason": reason}


def _states(states: dict[str, int]) -> str:
    return ", ".join(f"{state} {n}" for state, n in sorted(states.items())) or "no sockets"
