"""The workers' figures as one swarm's: live samples and summaries merged (pure).

Counters add up. Latency percentiles do not, so each worker exports a uniform subsample of
its latencies with how many it saw, and the merged percentiles weigh each value by that
(:func:`~ping_client.stats.merged_percentiles_ms`); the maximum is exact. The first close is
the earliest of the workers' (each worker counts time from its own start, a few
milliseconds apart).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ping_client.stats import merged_percentiles_ms

__all__ = ["SAMPLE_SUMS", "SUMMARY_SUMS", "merge_samples", "merge_summaries"]

SAMPLE_SUMS = (
    "connected", "connecting", "connect_failures", "pings_sent", "pings_blocked", "bytes_sent",
    "blocked_in_send_s", "events_received", "opened", "left", "leaving", "active",
)  # fmt: skip
SUMMARY_SUMS = (
    "clients", "opened", "left", "left_unanswered", "pings_sent", "pings_blocked", "bytes_sent",
    "blocked_in_send_s", "events_received", "events_invalid", "connected_at_end",
)  # fmt: skip


def merge_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One live sample of the workers' latest samples (sums; merged latency and closes)."""
    merged: dict[str, Any] = {name: _sum(samples, name) for name in SAMPLE_SUMS}
    merged["latency"] = merged_percentiles_ms([s["latency_export"] for s in samples])
    merged["closes"] = _sum_counts(s["closes"] for s in samples)
    merged["sending"] = all(s["sending"] for s in samples) if samples else True
    return merged


def merge_summaries(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The workers' summaries as one, with the fields of a one-process summary."""
    merged: dict[str, Any] = {name: _sum(summaries, name) for name in SUMMARY_SUMS}
    merged["connected_peak"] = _sum(summaries, "connected_peak")  # an upper bound
    merged["connect_failures"] = _sum_counts(s["connect_failures"] for s in summaries)
    merged["latency"] = merged_percentiles_ms([s["latency_export"] for s in summaries])
    merged["closes"] = _sum_counts(s["closes"] for s in summaries)
    firsts = [s["first_close"] for s in summaries if s["first_close"]]
    merged["first_close"] = min(firsts, key=lambda f: f["after_s"]) if firsts else None
    return merged


def _sum(items: Sequence[dict[str, Any]], name: str) -> Any:
    total = sum(item.get(name, 0) for item in items)
    return round(total, 3) if isinstance(total, float) else total


def _sum_counts(mappings: Any) -> dict[str, int]:
    total: Counter[str] = Counter()
    for mapping in mappings:
        total.update(mapping)
    return dict(sorted(total.items(), key=lambda item: (len(item[0]), item[0])))
