"""The large cells' rule: what the service's receive queues keep of what the clients send,
after the ramp. Pure functions over samples.

A large cell's clients connect over a ramp of tens of seconds, and each pings from its own
connection on: during the ramp the backlog grows with the clients as well as with time, so
neither its size nor its slope says how fast one connection leaks. The rule looks at the
**steady part** only: the samples from the first one where the ramp is over (every client
connected or failed) to the last before the swarm closes its connections. Over them it fits
a line through the service's summed Recv-Q (the lab's netlink read of the service's sockets)
and one through the bytes the clients sent, and takes the **kept share**, the first slope
over the second (the queues hold whole frames, 8 bytes more than each 1 KiB message, so a
service that reads nothing keeps about 101%):

- **leak**: the receive queues kept at least ``KEPT_LEAK_SHARE`` of what the clients sent,
  steadily (r² of the Recv-Q line at least ``LINEAR_R2``): nobody reads;
- **healthy**: they kept at most ``KEPT_HEALTHY_SHARE``: the service reads what it is sent;
- **unknown**: in between (a reader slower than its clients: an overloaded service, not a
  missing reader), fewer than ``MIN_STEADY_SAMPLES`` steady samples, or fewer than
  ``MIN_CONNECTED_SHARE`` of the clients connected (the service could not take the ramp:
  not the large cell).

Per connection, the same line gives the growth of one socket's Recv-Q in bytes a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from leaklab.stories.ws_read_handler.growth import LINEAR_R2, linear_fit
from leaklab.stories.ws_read_handler.sample import ReadHandlerSample
from leaklab.stories.ws_read_handler.verdict import CellFigures, cell_figures
from leaklab.story import CellResult, Verdict

__all__ = [
    "KEPT_HEALTHY_SHARE",
    "KEPT_LEAK_SHARE",
    "LARGE_RULES",
    "MIN_CONNECTED_SHARE",
    "MIN_STEADY_SAMPLES",
    "LargeCellFigures",
    "LargeFigures",
    "is_ramp_over",
    "judge_large",
    "judge_large_cell",
    "large_figures",
    "steady_part",
]

KEPT_LEAK_SHARE = 0.5
KEPT_HEALTHY_SHARE = 0.05
MIN_STEADY_SAMPLES = 8
MIN_CONNECTED_SHARE = 0.9
MIB = 1024 * 1024

LARGE_RULES = (
    "a large cell is judged on its steady part only (from the end of the ramp, every client "
    "connected or failed, to the swarm's close): lines through the service's summed Recv-Q "
    "(netlink) and through the bytes the clients sent give the share of what was sent that "
    f"the receive queues kept: **leak** when they kept at least {KEPT_LEAK_SHARE:.0%} with "
    f"r² of at least {LINEAR_R2}; **healthy** when they kept at most "
    f"{KEPT_HEALTHY_SHARE:.0%}; **unknown** in between (a reader slower than its clients), "
    f"with fewer than {MIN_STEADY_SAMPLES} steady samples, or when fewer than "
    f"{MIN_CONNECTED_SHARE:.0%} of the clients connected"
)


class LargeFigures(TypedDict):
    """The ramp and the steady part of a large cell."""

    target_clients: int | None
    ramp_end_s: float | None  # None: the ramp never ended
    connected_at_ramp_end: int | None
    connect_failures: int
    steady_samples: int
    steady_s: float
    steady_connections: int | None  # the service's sockets at the last steady sample
    steady_sent_mib_per_min: float
    steady_recv_q_growth_mib_per_min: float
    steady_recv_q_r2: float
    kept_share: float | None  # None: nothing was sent in the steady part
    recv_q_per_connection_growth_bytes_per_s: float | None
    recv_q_per_connection_end_bytes: int | None


class LargeCellFigures(CellFigures, LargeFigures):
    """A large cell's figures: the static ones too, for the shared columns."""


def is_ramp_over(sample: ReadHandlerSample) -> bool:
    """Whether every client of the swarm had connected or failed by this sample."""
    target = sample.get("target")
    done = (sample.get("opened") or 0) + (sample.get("connect_failures") or 0)
    return target is not None and done >= target


def steady_part(samples: Sequence[ReadHandlerSample]) -> list[ReadHandlerSample]:
    """The samples from the end of the ramp to the swarm's close that have the figures."""
    start = next((i for i, s in enumerate(samples) if is_ramp_over(s)), len(samples))
    return [
        s for s in samples[start:]
        if not s.get("swarm_closing") and "sockets_recv_q_bytes" in s and "bytes_sent" in s
    ]  # fmt: skip


def large_figures(samples: Sequence[ReadHandlerSample]) -> LargeFigures:
    """The ramp's end, and the lines of Recv-Q and bytes sent over the steady part."""
    ramp_end = next((s for s in samples if is_ramp_over(s)), None)
    steady = steady_part(samples)
    recv_q = [(s["t_s"], float(s["sockets_recv_q_bytes"])) for s in steady]
    sent = [(s["t_s"], float(s["bytes_sent"])) for s in steady]
    recv_fit, sent_fit = linear_fit(recv_q), linear_fit(sent)
    last = steady[-1] if steady else None
    sockets = None if last is None else last.get("skmem_sockets")
    kept = recv_fit.slope_per_min / sent_fit.slope_per_min if sent_fit.slope_per_min > 0 else None
    return {
        "target_clients": next((s["target"] for s in samples if "target" in s), None),
        "ramp_end_s": None if ramp_end is None else ramp_end["t_s"],
        "connected_at_ramp_end": None if ramp_end is None else ramp_end.get("connected"),
        "connect_failures": max((s.get("connect_failures") or 0 for s in samples), default=0),
        "steady_samples": len(steady),
        "steady_s": round(steady[-1]["t_s"] - steady[0]["t_s"], 1) if steady else 0.0,
        "steady_connections": sockets,
        "steady_sent_mib_per_min": round(sent_fit.slope_per_min / MIB, 2) + 0.0,
        "steady_recv_q_growth_mib_per_min": round(recv_fit.slope_per_min / MIB, 2) + 0.0,
        "steady_recv_q_r2": round(recv_fit.r2, 3),
        "kept_share": None if kept is None else round(kept, 3) + 0.0,
        "recv_q_per_connection_growth_bytes_per_s": (
            round(recv_fit.slope_per_min / 60 / sockets, 1) + 0.0 if sockets else None
        ),
        "recv_q_per_connection_end_bytes": (
            round(last["sockets_recv_q_bytes"] / sockets) if last is not None and sockets else None
        ),
    }


def judge_large(figures: LargeCellFigures) -> tuple[Verdict, str]:
    """The verdict of a large cell's figures and a sentence saying why."""
    target, connected = figures["target_clients"], figures["connected_at_ramp_end"]
    if not figures["stats_samples"] or not target:
        return "unknown", "unknown: no server figures were sampled: nothing to judge"
    if figures["ramp_end_s"] is None or connected is None:
        return "unknown", "unknown: the ramp never ended (clients still connecting at the end)"
    if connected < MIN_CONNECTED_SHARE * target:
        return "unknown", (
            f"unknown: only {connected:,} of {target:,} clients connected "
            f"({figures['connect_failures']:,} failed): the service could not take the ramp"
        )
    steady = figures["steady_samples"]
    if steady < MIN_STEADY_SAMPLES:
        return "unknown", (
            f"unknown: {steady} samples after the ramp (it ended at "
            f"{figures['ramp_end_s']:.0f} s), {MIN_STEADY_SAMPLES} needed"
        )
    # (rounded, so that a hair below zero reads 0%, not -0%)
    kept, r2 = round(figures["kept_share"] or 0.0, 2) + 0.0, figures["steady_recv_q_r2"]
    growth, sent = figures["steady_recv_q_growth_mib_per_min"], figures["steady_sent_mib_per_min"]
    what = (
        f"the receive queues kept {kept:.0%} of what {connected:,} clients sent after the "
        f"ramp ({round(growth):+d} of {round(sent)} MiB/min"
    )
    per_connection = figures["recv_q_per_connection_growth_bytes_per_s"]
    if kept >= KEPT_LEAK_SHARE and r2 >= LINEAR_R2:
        per = "" if per_connection is None else f", {per_connection:+.0f} B/s per connection"
        return "leak", f"leaks: {what}{per}, r² {r2:.2f})"
    if kept <= KEPT_HEALTHY_SHARE:
        return "healthy", f"healthy: {what}): the service reads what it is sent"
    return "unknown", (
        f"unknown: {what}, r² {r2:.2f}): a reader slower than its clients, or unsteady growth"
    )


def judge_large_cell(samples: Sequence[ReadHandlerSample]) -> CellResult:
    """A large cell's figures (the static ones too, for the shared columns) and verdict."""
    figures: LargeCellFigures = {**cell_figures(samples), **large_figures(samples)}
    verdict, reason = judge_large(figures)
    return {"figures": {**figures}, "verdict": verdict, "reason": reason}
