"""Repetition, as CPython's test runner does with ``-R``: run a test again and again, and call
it a leak when a figure grows at every run. Pure: figures in, verdict out.

The first of the extra runs warms up (imports, caches, pools filled once); the figures taken
after each later run must each be higher than the one before for the figure to count as
growing. A steady test stays level after the warm-up; a leak of one fd per run does not.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

from leakguard.findings import Growth

__all__ = ["FIGURES", "Sample", "growth"]

FIGURES = ("fds", "tasks", "rss_bytes")


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """The process's figures after one run of the test."""

    fds: int
    tasks: int
    rss_bytes: int


def growth(samples: Sequence[Sample]) -> list[Growth]:
    """The figures that grew from each sample to the next; fewer than 2 samples say nothing."""
    if len(samples) < 2:
        return []
    found = []
    for figure in FIGURES:
        values = [getattr(sample, figure) for sample in samples]
        if all(later > earlier for earlier, later in itertools.pairwise(values)):
            found.append(Growth(figure, tuple(values)))
    return found
