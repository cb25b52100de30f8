"""Pure arithmetic over measurements: medians, rates over windows, CPU per delivery, verdicts.

Everything here takes plain numbers and returns plain numbers, so it can be checked with
literal inputs; the modules that talk to processes only collect the readings.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values (a table shows it as a dash)."""
    return statistics.median(values) if values else float("nan")


def us_per_item(cpu_cores: float, items_per_s: float) -> float:
    """CPU microseconds spent per item (delivery, message) at a steady rate."""
    return cpu_cores / items_per_s * 1e6 if items_per_s > 0 else float("nan")


def ratio(value: float, baseline: float) -> float:
    """``value / baseline``, NaN when the baseline is zero."""
    return value / baseline if baseline else float("nan")


def is_sustained(delivered_per_s: float, expected_per_s: float, tolerance: float = 0.05) -> bool:
    """Whether deliveries keep up with what was asked (within ``tolerance``, default 5%)."""
    return expected_per_s > 0 and delivered_per_s >= (1 - tolerance) * expected_per_s


def highest_sustained(steps: Sequence[tuple[float, bool]]) -> float | None:
    """The highest rate sustained before the first rate that was not; None if none was."""
    best = None
    for rate, sustained in steps:
        if not sustained:
            break
        best = rate
    return best


def per_item_bytes(total_bytes: float, baseline_bytes: float, items: int) -> float:
    """``(total - baseline) / items``: memory each item (subscriber, connection) adds."""
    return (total_bytes - baseline_bytes) / items if items else float("nan")


_LINE_RE = re.compile(r":\d+\)$")


def frame_function(frame: str) -> str:
    """``send (pkg/mod.py:506)`` -> ``send (pkg/mod.py)``: py-spy frames without the line."""
    return _LINE_RE.sub(")", frame)


def _stacks(lines: Sequence[str], by_line: bool) -> list[tuple[list[str], int]]:
    stacks = []
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        stacks.append((frames if by_line else [frame_function(f) for f in frames], int(count_text)))
    return stacks


def collapsed_stacks_top(
    lines: Sequence[str], limit: int = 15, *, by_line: bool = False
) -> list[tuple[str, float, float]]:
    """From py-spy ``--format raw`` (collapsed stacks), the functions with the most samples.

    Returns ``(function, self_fraction, total_fraction)`` sorted by total, where ``total``
    counts a sample once for every function on its stack (inclusive time).
    """
    self_counts: dict[str, int] = {}
    total_counts: dict[str, int] = {}
    samples = 0
    for frames, count in _stacks(lines, by_line):
        samples += count
        for frame in set(frames):
            total_counts[frame] = total_counts.get(frame, 0) + count
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
    if not samples:
        return []
    ranked = sorted(total_counts.items(), key=lambda item: item[1], reverse=True)
    return [
        (frame, self_counts.get(frame, 0) / samples, total / samples)
        for frame, total in ranked[:limit]
    ]


def self_top(
    lines: Sequence[str], limit: int = 15, *, by_line: bool = False
) -> list[tuple[str, float]]:
    """From collapsed stacks, the functions (or lines) with the most samples of their own."""
    counts: dict[str, int] = {}
    samples = 0
    for frames, count in _stacks(lines, by_line):
        samples += count
        counts[frames[-1]] = counts.get(frames[-1], 0) + count
    ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
    return [(frame, count / samples) for frame, count in ranked[:limit]] if samples else []
