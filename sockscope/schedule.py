"""A fixed schedule: the lab's samplers tick on it, and a late tick does not shift the next ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

__all__ = ["every"]


async def every(interval_s: float, *, first_at_once: bool = False) -> AsyncIterator[int]:
    """Yield 1, 2, 3... every ``interval_s`` on the loop's clock, for ever (cancel to stop).

    The deadlines are fixed from the start: a slow iteration makes the next tick come
    sooner, not the whole schedule drift. Ticks missed entirely are skipped, not bunched.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() if first_at_once else loop.time() + interval_s
    tick = 0
    while True:
        delay_s = deadline - loop.time()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        else:
            await asyncio.sleep(0)  # let others run even when late
        tick += 1
        yield tick
        deadline += interval_s
        behind_s = loop.time() - deadline
        if behind_s > interval_s:  # more than one whole tick late: skip what was missed
            deadline += interval_s * int(behind_s / interval_s)
