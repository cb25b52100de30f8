"""Wait a little before calling something a leak: retry with backoff, as goleak does.

Cleanup is often a moment late: a thread's last line, a task that ends on the next loop
iteration, a socket a peer is about to close. Go's goleak retries with exponential backoff,
CPython's test runner retries thread clean-up from 10 ms up to 1 s; so does the guard, and a
test that leaked nothing pays for none of it (the first look is taken at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["backoff_delays", "settle"]

T = TypeVar("T")

FIRST_DELAY_S = 0.01
TOTAL_S = 1.0


def backoff_delays(first_s: float = FIRST_DELAY_S, total_s: float = TOTAL_S) -> list[float]:
    """Delays from ``first_s`` doubling, the last one cut so that they add up to ``total_s``."""
    delays: list[float] = []
    delay, left = first_s, total_s
    while left > 1e-9 and delay > 0:
        step = min(delay, left)
        delays.append(step)
        left -= step
        delay *= 2
    return delays


def settle(
    look: Callable[[], T],
    is_clean: Callable[[T], bool],
    wait: Callable[[float], None],
    delays: list[float],
) -> T:
    """Look at once, then again after each delay, until a look is clean; the last look."""
    seen = look()
    for delay in delays:
        if is_clean(seen):
            break
        wait(delay)
        seen = look()
    return seen
