"""What the swarm counts, and the pure arithmetic over it (percentiles, summaries)."""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sockscope.procfs import percentile

__all__ = [
    "INTERVAL_RESERVOIR",
    "LATENCY_RESERVOIR",
    "LatencyReservoir",
    "ReadCost",
    "SwarmStats",
    "merged_percentiles_ms",
    "summarize",
    "timed_read",
]

T = TypeVar("T")

LATENCY_RESERVOIR = 50_000
INTERVAL_RESERVOIR = 5_000


class LatencyReservoir:
    """A bounded uniform sample of latencies (reservoir sampling), plus the exact maximum."""

    def __init__(self, capacity: int = LATENCY_RESERVOIR, seed: int | None = None) -> None:
        self._capacity = capacity
        self._values: list[float] = []
        self._seen = 0
        self._random = random.Random(seed)
        self.max_s = 0.0

    def __len__(self) -> int:
        return self._seen

    @property
    def kept(self) -> int:
        """How many samples the reservoir holds (at most its capacity)."""
        return len(self._values)

    def add(self, value_s: float) -> None:
        """Record one latency in seconds (negative values, from clock skew, count as 0)."""
        value_s = max(0.0, value_s)
        self._seen += 1
        self.max_s = max(self.max_s, value_s)
        if len(self._values) < self._capacity:
            self._values.append(value_s)
            return
        slot = self._random.randrange(self._seen)
        if slot < self._capacity:
            self._values[slot] = value_s

    def export(self, limit: int) -> dict[str, Any]:
        """At most ``limit`` of the kept latencies (a uniform subsample) in ms, for merging.

        With ``seen`` (how many were recorded) and the exact ``max_ms``: each exported value
        stands for ``seen / len(values_ms)`` latencies (see :func:`merged_percentiles_ms`).
        """
        values = self._values
        if len(values) > limit:
            values = self._random.sample(values, limit)
        return {
            "seen": self._seen,
            "max_ms": round(self.max_s * 1000, 3),
            "values_ms": [round(v * 1000, 3) for v in values],
        }

    def percentiles_ms(self) -> dict[str, float]:
        """p50, p99 and max in milliseconds (zeros when nothing was recorded)."""
        ordered = sorted(self._values)
        return {
            "p50_ms": round(percentile(ordered, 50) * 1000, 3),
            "p99_ms": round(percentile(ordered, 99) * 1000, 3),
            "max_ms": round(self.max_s * 1000, 3),
        }


class ReadCost:
    """What the kernel reads cost: wall time, and the CPU time of the thread that read.

    The wall time is what a sample waited; on a busy machine it includes time spent waiting
    for a core, which the CPU time leaves out.
    """

    def __init__(self) -> None:
        self._wall = LatencyReservoir(1000)
        self._cpu = LatencyReservoir(1000)

    def add(self, wall_s: float, cpu_s: float) -> None:
        """Record one read."""
        self._wall.add(wall_s)
        self._cpu.add(cpu_s)

    def summary(self) -> dict[str, float | int] | None:
        """How many reads, their median and largest in ms, wall and CPU; None before any."""
        if not len(self._wall):
            return None
        wall, cpu = self._wall.percentiles_ms(), self._cpu.percentiles_ms()
        return {"samples": len(self._wall), "p50_ms": wall["p50_ms"], "max_ms": wall["max_ms"],
                "cpu_p50_ms": cpu["p50_ms"], "cpu_max_ms": cpu["max_ms"]}  # fmt: skip


def timed_read(read: Callable[[], T]) -> tuple[T, float, float]:
    """``read()``, with the wall and thread CPU seconds it took (call it in its thread)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = read()
    return result, time.perf_counter() - wall, time.thread_time() - cpu


@dataclasses.dataclass
class SwarmStats:
    """Running totals of a swarm; the interval reservoir is replaced every live tick."""

    clients: int = 0
    connecting: int = 0
    connected: int = 0
    connected_peak: int = 0
    # Churn: clients opened in all, clients that left by their lifetime (and of those, the
    # ones still closing, and the ones whose close the server never answered).
    opened: int = 0
    left: int = 0
    leaving: int = 0
    left_unanswered: int = 0
    connect_failures: Counter[str] = dataclasses.field(default_factory=Counter)
    pings_sent: int = 0
    pings_blocked: int = 0
    bytes_sent: int = 0
    blocked_s: float = 0.0
    events_received: int = 0
    events_invalid: int = 0
    closes: Counter[int] = dataclasses.field(default_factory=Counter)
    first_close: tuple[int, float] | None = None
    first_close_s: dict[int, float] = dataclasses.field(default_factory=dict)
    latency: LatencyReservoir = dataclasses.field(default_factory=LatencyReservoir)
    interval_latency: LatencyReservoir = dataclasses.field(
        default_factory=lambda: LatencyReservoir(INTERVAL_RESERVOIR)
    )

    def record_close(self, code: int, elapsed_s: float) -> None:
        """Count a closed connection by close code (1006: closed without a close frame)."""
        self.closes[code] += 1
        if self.first_close is None:
            self.first_close = (code, round(elapsed_s, 3))
        self.first_close_s.setdefault(code, round(elapsed_s, 3))

    def record_latency(self, latency_s: float) -> None:
        """Count one event and its publish-to-receive latency."""
        self.events_received += 1
        self.latency.add(latency_s)
        self.interval_latency.add(latency_s)

    def take_interval_latency(self) -> dict[str, float]:
        """Percentiles of the latencies seen since the last call, then start a new interval."""
        return self.take_interval().percentiles_ms()

    def take_interval(self) -> LatencyReservoir:
        """The latencies seen since the last call; a new interval starts."""
        interval = self.interval_latency
        self.interval_latency = LatencyReservoir(INTERVAL_RESERVOIR)
        return interval


def summarize(stats: SwarmStats, *, elapsed_s: float, extra: dict[str, Any]) -> dict[str, Any]:
    """The final summary of a swarm run as plain JSON-ready data."""
    return {
        "elapsed_s": round(elapsed_s, 3),
        "clients": stats.clients,
        "connected_peak": stats.connected_peak,
        "connect_failures": dict(stats.connect_failures),
        "opened": stats.opened,
        "left": stats.left,
        "left_unanswered": stats.left_unanswered,
        "pings_sent": stats.pings_sent,
        "pings_blocked": stats.pings_blocked,
        "bytes_sent": stats.bytes_sent,
        "blocked_in_send_s": round(stats.blocked_s, 3),
        "events_received": stats.events_received,
        "events_invalid": stats.events_invalid,
        "latency": stats.latency.percentiles_ms(),
        "closes": {str(code): count for code, count in sorted(stats.closes.items())},
        "first_close": (
            {"code": stats.first_close[0], "after_s": stats.first_close[1]}
            if stats.first_close
            else None
        ),
        **extra,
    }


def merged_percentiles_ms(exports: Sequence[dict[str, Any]]) -> dict[str, float]:
    """p50, p99 and max (ms) of several reservoirs' exports, each value weighted by its share.

    A worker that saw 10,000 latencies and exported 500 of them weighs 20 per value; one that
    saw 100 and exported all weighs 1: the merged percentiles are those of all latencies.
    """
    weighted: list[tuple[float, float]] = []
    for export in exports:
        values = export["values_ms"]
        if values:
            weight = export["seen"] / len(values)
            weighted.extend((value, weight) for value in values)
    weighted.sort()
    total = sum(weight for _, weight in weighted)

    def at(pct: float) -> float:
        wanted, running = pct / 100 * total, 0.0
        for value, weight in weighted:
            running += weight
            if running >= wanted - 1e-9:
                return value
        return 0.0

    return {
        "p50_ms": round(at(50), 3),
        "p99_ms": round(at(99), 3),
        "max_ms": round(max((e["max_ms"] for e in exports), default=0.0), 3),
    }
