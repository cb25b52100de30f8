"""Figures and a verdict for one cell, computed from its per-second samples. Pure functions.

The thresholds are explicit constants, and the same rules judge every cell:

- **masked**: the server was not reading (some socket's Recv-Q went past ``BACKLOG_BYTES``,
  or the app read none of the data messages the clients sent) and it closed connections
  with 1011 (keepalive ping timeout): keepalive killed the sessions, which frees the kernel
  memory and loses events. The second sign matters for legacy websockets, which buffers
  messages in user space before the kernel's queue grows.
- **leak**: a Recv-Q went past ``BACKLOG_BYTES``, was not killed, and was still past it at the
  last sample: the bytes stay held in the kernel for as long as the session.
- **healthy**: neither (a 1011 close of a reading server, unread messages without a backlog
  yet, or a backlog that drained, is said).
- **unknown**: no sample carried the server's figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

from leaklab.stories.ws_read_handler.sample import FirstClose, ReadHandlerSample
from leaklab.story import CellResult, Verdict
from sockscope.procfs import percentile

BACKLOG_BYTES = 64 * 1024
KEEPALIVE_CLOSE = "1011"
MB = 1_000_000


# The rules above in one sentence, for the report (kept next to the code that applies them).
RULES = (
    f"**masked** when the server was not reading (a socket's Recv-Q passed "
    f"{BACKLOG_BYTES // 1024} KiB, or the app read none of the clients' data messages) and it "
    "closed connections with 1011 (keepalive ping timeout); **leak** when a Recv-Q passed "
    f"{BACKLOG_BYTES // 1024} KiB, nothing killed the sessions and it was still past that at "
    "the last sample; **healthy** otherwise (a 1011 close of a reading server, unread "
    "messages without a backlog yet, or a backlog that drained, is said in the verdict); "
    "**unknown** when no sample carried the server's figures"
)


class KernelRead(TypedDict):
    """What the samples' kernel reads cost: how many, median and largest, wall and CPU ms."""

    samples: int
    p50_ms: float
    max_ms: float
    cpu_p50_ms: float
    cpu_max_ms: float


class CellFigures(TypedDict):
    """The figures of one cell (every shape has them; summary.json's ``figures``)."""

    samples: int
    duration_s: float
    kernel_mem_growth_mb_per_min: float
    held_growth_mb_per_min: float
    held_peak_bytes: int
    held_end_bytes: int
    recv_q_peak_bytes: int
    recv_q_sum_peak_bytes: int
    rss_change_bytes: int
    closes: dict[str, int]
    first_close: FirstClose | None
    first_keepalive_close_s: float | None
    stats_samples: int
    recv_q_end_bytes: int
    skmem_r_peak_bytes: int
    events_lost: int | None  # None where it cannot be known (churn and vanished cells)
    client_messages_sent: int | None
    client_messages_drained: int | None
    kernel_tcp_mem_peak_bytes: int | None  # host-wide (/proc/net/sockstat, from /stats)
    kernel_read: KernelRead | None  # None where no sample read the kernel


def kernel_read(samples: Sequence[ReadHandlerSample]) -> KernelRead | None:
    """The cost of the samples' kernel reads (``kernel_read_ms``, ``kernel_read_cpu_ms``)."""
    wall = sorted(s["kernel_read_ms"] for s in samples if s.get("kernel_read_ms") is not None)
    cpu = sorted(
        s["kernel_read_cpu_ms"] for s in samples if s.get("kernel_read_cpu_ms") is not None
    )
    if not wall or not cpu:
        return None
    return {
        "samples": len(wall),
        "p50_ms": round(percentile(wall, 50), 3),
        "max_ms": round(wall[-1], 3),
        "cpu_p50_ms": round(percentile(cpu, 50), 3),
        "cpu_max_ms": round(cpu[-1], 3),
    }


def slope_per_min(points: Iterable[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute; 0 with fewer than 2 points."""
    pts = list(points)
    if len(pts) < 2:
        return 0.0
    mean_t = sum(t for t, _ in pts) / len(pts)
    mean_v = sum(v for _, v in pts) / len(pts)
    var_t = sum((t - mean_t) ** 2 for t, _ in pts)
    if var_t == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in pts)
    return cov / var_t * 60


def figure(sample: ReadHandlerSample, key: str) -> Any:
    """``sample[key]``, where ``server.x`` is the server's figure ``x``; None if absent.

    For keys chosen at run time (charts, series); code that names a key reads it directly.
    """
    if key.startswith("server."):
        server: Mapping[str, Any] | None = sample.get("server")
        return None if server is None else server.get(key.removeprefix("server."))
    values: Mapping[str, Any] = sample
    return values.get(key)


def series(samples: Sequence[ReadHandlerSample], key: str) -> list[tuple[float, float]]:
    """(t_s, value) for the samples that have ``key`` (missing or None values are skipped)."""
    return [
        (s["t_s"], float(v)) for s in samples if (v := figure(s, key)) is not None and "t_s" in s
    ]


def held_bytes(sample: ReadHandlerSample) -> float | None:
    """Bytes the kernel holds for this service: server Recv-Q plus client Send-Q."""
    recv, send = figure(sample, "server.recv_q_bytes"), sample.get("client_send_q_bytes")
    if recv is None or send is None:
        return None
    return float(recv + send)


def events_lost(samples: Sequence[ReadHandlerSample]) -> int:
    """Events the subscribers should have had but did not receive (approximate at the edges).

    Every event the service received between the first and the last sample should reach each
    of the swarm's clients (``clients``, else the sessions registered at the time), also those
    keepalive killed; what the clients counted over the same window is subtracted.
    """
    expected = 0.0
    first: ReadHandlerSample | None = None
    previous: ReadHandlerSample | None = None
    previous_published = 0
    for sample in samples:
        published = figure(sample, "server.events_received")
        subscribers = sample.get("clients", figure(sample, "server.connections"))
        if published is None or subscribers is None:
            continue
        if previous is None:
            first = sample
        else:
            expected += max(0, published - previous_published) * subscribers
        previous, previous_published = sample, published
    if first is None or previous is None:
        return 0
    received = (previous.get("events_received") or 0) - (first.get("events_received") or 0)
    return max(0, round(expected) - received)


def _last(samples: Sequence[ReadHandlerSample], key: str) -> int | None:
    """The last value of ``key`` in the samples (None if no sample has it)."""
    return next((int(v) for s in reversed(samples) if (v := figure(s, key)) is not None), None)


def cell_figures(samples: Sequence[ReadHandlerSample]) -> CellFigures:
    """The figures of one cell: growth, peaks, RSS change, first close, events lost."""
    held = [(s["t_s"], h) for s in samples if "t_s" in s and (h := held_bytes(s)) is not None]
    rss = series(samples, "server.rss_bytes")
    closes: dict[str, int] = next(
        (s["closes"] for s in reversed(samples) if s.get("closes") is not None), {}
    )
    first_keepalive_close_s = next(
        (s["first_close_s"].get(KEEPALIVE_CLOSE) for s in reversed(samples)
         if s.get("first_close_s")),
        None,
    )  # fmt: skip
    recv_q_max = series(samples, "server.recv_q_max_bytes")
    first_close = next((s["first_close"] for s in samples if s.get("first_close")), None)
    return {
        "samples": len(samples),
        "duration_s": max((s["t_s"] for s in samples if "t_s" in s), default=0.0),
        "kernel_mem_growth_mb_per_min": round(
            slope_per_min(series(samples, "server.kernel_tcp_mem_bytes")) / MB, 3
        ),
        "held_growth_mb_per_min": round(slope_per_min(held) / MB, 3),
        "held_peak_bytes": int(max((h for _, h in held), default=0)),
        "held_end_bytes": int(held[-1][1]) if held else 0,
        "recv_q_peak_bytes": int(max((v for _, v in recv_q_max), default=0)),
        "recv_q_sum_peak_bytes": int(max((v for _, v in series(samples, "server.recv_q_bytes")),
                                         default=0)),
        "rss_change_bytes": int(rss[-1][1] - rss[0][1]) if rss else 0,
        "closes": dict(closes),
        "first_close": first_close,
        "first_keepalive_close_s": first_keepalive_close_s,
        "stats_samples": len(series(samples, "server.recv_q_max_bytes")),
        "recv_q_end_bytes": int(recv_q_max[-1][1]) if recv_q_max else 0,
        # What the kernel charges for the server's receive queues (skb overhead included).
        "skmem_r_peak_bytes": int(max((v for _, v in series(samples, "skmem_r_bytes")),
                                      default=0)),
        "events_lost": events_lost(samples),
        "client_messages_sent": _last(samples, "pings_sent"),
        "client_messages_drained": _last(samples, "server.client_messages"),
        "kernel_tcp_mem_peak_bytes": max(
            (int(v) for _, v in series(samples, "server.kernel_tcp_mem_bytes")), default=None
        ),
        "kernel_read": kernel_read(samples),
    }  # fmt: skip


def judge(figures: CellFigures, *, data_messages: bool = True) -> tuple[Verdict, str]:
    """The verdict (one of ``VERDICTS``) and a sentence saying why, in plain words.

    ``data_messages``: the clients sent data messages (not control frames), which the app
    should have read.
    """
    if not figures["stats_samples"]:
        return "unknown", "no server figures were sampled: nothing to judge"
    backlog = figures["recv_q_peak_bytes"] > BACKLOG_BYTES
    sent, drained = figures.get("client_messages_sent"), figures.get("client_messages_drained")
    unread = data_messages and bool(sent) and drained == 0
    killed = figures["closes"].get(KEEPALIVE_CLOSE, 0)
    if killed and (backlog or unread):
        at = figures["first_keepalive_close_s"]
        after = f" after ~{at:.0f} s" if at is not None else ""
        return "masked", (
            f"masked: keepalive kills connections with 1011{after}, "
            f"events are lost ({figures['events_lost']})"
        )
    if backlog and figures["recv_q_end_bytes"] > BACKLOG_BYTES:
        return "leak", (
            "leaks: kernel memory grows without bound "
            f"({figures['held_growth_mb_per_min']:.1f} MB/min held for this service, "
            f"Recv-Q peak {figures['recv_q_peak_bytes'] / 1024:.0f} KiB per socket)"
        )
    if killed:
        return "healthy", (
            f"healthy: no backlog, but {killed} connections closed with 1011: "
            "the server or the host was too slow to answer keepalive pings"
        )
    if backlog:
        return "healthy", "healthy: a backlog built up and drained again"
    if unread:
        return "healthy", (
            f"healthy so far: no backlog in the kernel yet, but none of the {sent} client "
            "messages was read by the app (the WebSocket library buffers some in user space)"
        )
    if not data_messages:
        return "healthy", "healthy: control frames are answered by the server, nothing piles up"
    return "healthy", "healthy: client messages are read, nothing piles up"


def judge_cell(samples: Sequence[ReadHandlerSample], *, data_messages: bool) -> CellResult:
    """The figures of one cell's samples and the verdict the rules give them."""
    figures = cell_figures(samples)
    verdict, reason = judge(figures, data_messages=data_messages)
    return {"figures": {**figures}, "verdict": verdict, "reason": reason}
