"""Figures and a verdict for one cell, computed from its per-second samples. Pure functions.

The thresholds are explicit constants, and the same rules judge every cell:

- **masked**: the server closed connections with 1011 (keepalive ping timeout). The backlog
  was real, but keepalive killed the sessions, which frees the kernel memory and loses events.
- **leak**: some server socket's Recv-Q went past ``BACKLOG_BYTES`` (the server is not
  reading) and was not killed: the bytes stay held in the kernel for as long as the session.
- **healthy**: neither.
- **unknown**: no sample carried the figures needed to judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

BACKLOG_BYTES = 64 * 1024
KEEPALIVE_CLOSE = "1011"
MB = 1_000_000

VERDICTS = ("leak", "masked", "healthy", "unknown")


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


def series(samples: Sequence[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """(t_s, value) for the samples that have ``key`` (missing or None values are skipped)."""
    return [(s["t_s"], float(s[key])) for s in samples if s.get(key) is not None and "t_s" in s]


def held_bytes(sample: dict[str, Any]) -> float | None:
    """Bytes the kernel holds for this service: server Recv-Q plus client Send-Q."""
    recv, send = sample.get("server_recv_q_bytes"), sample.get("client_send_q_bytes")
    if recv is None or send is None:
        return None
    return float(recv + send)


def events_lost(samples: Sequence[dict[str, Any]]) -> int:
    """Events the subscribers should have had but did not receive (approximate at the edges).

    Every event the service received while ``connections`` subscribers were registered should
    reach each of them; what the clients counted is subtracted.
    """
    expected = 0.0
    previous: dict[str, Any] | None = None
    for sample in samples:
        published, connections = sample.get("events_published"), sample.get("connections")
        if published is None or connections is None:
            continue
        if previous is not None:
            expected += max(0, published - previous["events_published"]) * previous["connections"]
        previous = sample
    received = max((s.get("events_received") or 0 for s in samples), default=0)
    return max(0, round(expected) - received)


def cell_figures(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one cell: growth, peaks, RSS change, first close, events lost."""
    held = [(s["t_s"], h) for s in samples if "t_s" in s and (h := held_bytes(s)) is not None]
    rss = series(samples, "rss_bytes")
    closes = next((s["closes"] for s in reversed(samples) if s.get("closes") is not None), {})
    first_close = next(
        ({"code": s["first_close"][0], "after_s": s["first_close"][1]}
         for s in samples if s.get("first_close")),
        None,
    )  # fmt: skip
    return {
        "samples": len(samples),
        "duration_s": max((s["t_s"] for s in samples if "t_s" in s), default=0.0),
        "kernel_mem_growth_mb_per_min": round(
            slope_per_min(series(samples, "kernel_tcp_mem_bytes")) / MB, 3
        ),
        "held_growth_mb_per_min": round(slope_per_min(held) / MB, 3),
        "held_peak_bytes": int(max((h for _, h in held), default=0)),
        "held_end_bytes": int(held[-1][1]) if held else 0,
        "recv_q_peak_bytes": int(max((v for _, v in series(samples, "server_recv_q_max_bytes")),
                                     default=0)),
        "recv_q_sum_peak_bytes": int(max((v for _, v in series(samples, "server_recv_q_bytes")),
                                         default=0)),
        "rss_change_bytes": int(rss[-1][1] - rss[0][1]) if rss else 0,
        "closes": dict(closes),
        "first_close": first_close,
        "events_lost": events_lost(samples),
    }  # fmt: skip


def judge(figures: dict[str, Any]) -> tuple[str, str]:
    """The verdict (one of ``VERDICTS``) and a sentence saying why, in plain words."""
    if not figures["samples"]:
        return "unknown", "no samples: nothing to judge"
    killed = figures["closes"].get(KEEPALIVE_CLOSE, 0)
    if killed:
        first = figures["first_close"]
        after = f" after ~{first['after_s']:.0f} s" if first else ""
        return "masked", (
            f"masked: keepalive kills connections with 1011{after}, "
            f"events are lost ({figures['events_lost']})"
        )
    if figures["recv_q_peak_bytes"] > BACKLOG_BYTES:
        return "leak", (
            "leaks: kernel memory grows without bound "
            f"({figures['held_growth_mb_per_min']:.1f} MB/min held for this service, "
            f"Recv-Q peak {figures['recv_q_peak_bytes'] / 1024:.0f} KiB per socket)"
        )
    return "healthy", "healthy: client messages are read, nothing piles up"


def summarize_cell(
    settings: dict[str, str], expected: str, samples: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """One summary.json entry: settings, figures, verdict and the expected outcome."""
    figures = cell_figures(samples)
    verdict, reason = judge(figures)
    return {
        "settings": settings,
        "figures": figures,
        "verdict": verdict,
        "reason": reason,
        "expected": expected,
        "surprise": verdict != expected,
    }
