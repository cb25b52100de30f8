"""A fixed schedule: deadlines fixed from the start, so a late tick does not shift the next ones.

What happens to ticks missed entirely is the caller's choice: a sampler skips them (one late
sample, then back on the grid), an event source catches up (the late ticks come back to back,
so that the count over any long window is exactly the rate times the window).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Literal

__all__ = ["Missed", "every", "next_deadline"]

#: What to do with ticks whose deadline passed while an earlier one was still running.
Missed = Literal["skip", "catch-up"]


def next_deadline(deadline: float, now: float, interval_s: float, missed: Missed) -> float:
    """The deadline after ``deadline``, the clock being at ``now`` (pure).

    ``catch-up`` keeps every deadline, however late; ``skip`` jumps over the deadlines that
    are more than one whole interval in the past, so at most one tick comes late.
    """
    following = deadline + interval_s
    behind_s = now - following
    if missed == "skip" and behind_s > interval_s:
        following += interval_s * int(behind_s / interval_s)
    return following


async def every(
    interval_s: float, *, first_at_once: bool = False, missed: Missed = "skip"
) -> AsyncGenerator[int, None]:
    """Yield 1, 2, 3... every ``interval_s`` on the loop's clock, for ever (cancel to stop).

    The first tick comes at once with ``first_at_once``, else after one interval. A slow
    iteration makes the next tick come sooner, never the whole schedule drift; ``missed``
    says whether ticks missed entirely are skipped or caught up.
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, not {interval_s}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() if first_at_once else loop.time() + interval_s
    tick = 0
    while True:
        delay_s = deadline - loop.time()
        # Late or not, sleep: a caught-up tick still lets the others run.
        await asyncio.sleep(max(0.0, delay_s))
        tick += 1
        yield tick
        deadline = next_deadline(deadline, loop.time(), interval_s, missed)
