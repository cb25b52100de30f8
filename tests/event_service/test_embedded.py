"""Tests for event_service.sources.embedded: tick events numbered from 1 on a fixed schedule,
and the exact rate kept through a stall of the loop (the missed ticks are caught up)."""

from __future__ import annotations

import asyncio
import time

import pytest

from event_service.events import Event
from event_service.sources.embedded import EVENT_TYPE, tick_forever

pytestmark = pytest.mark.timeout(30)


async def _emitted(
    rate_per_s: float, count: int, stall_s: float = 0.0
) -> list[tuple[Event, float]]:
    """The first ``count`` events with the loop time of each; the loop stalls at the first."""
    loop = asyncio.get_running_loop()
    emitted: list[tuple[Event, float]] = []
    enough = asyncio.Event()

    def emit(event: Event) -> None:
        emitted.append((event, loop.time()))
        if len(emitted) == 1:
            time.sleep(stall_s)  # a stall of the whole loop is the point
        if len(emitted) == count:
            enough.set()

    ticker = asyncio.create_task(tick_forever(rate_per_s, emit))
    try:
        await asyncio.wait_for(enough.wait(), timeout=20)
    finally:
        ticker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ticker
    return emitted[:count]


async def test_ticks_are_numbered_from_one_in_order() -> None:
    emitted = await _emitted(rate_per_s=100, count=5)
    assert [event.payload["seq"] for event, _ in emitted] == [1, 2, 3, 4, 5]
    assert {event.type for event, _ in emitted} == {EVENT_TYPE}


async def test_a_stalled_loop_gets_the_missed_ticks_right_after_so_the_rate_holds() -> None:
    interval_s = 0.1
    emitted = await _emitted(rate_per_s=1 / interval_s, count=12, stall_s=10 * interval_s)
    first_at = emitted[0][1]
    # Ticks 2 to 11 were due during the stall: they all come soon after it, not 10 intervals
    # later (the bound is generous for a busy machine).
    assert emitted[10][1] - (first_at + 10 * interval_s) < 5 * interval_s
    assert [event.payload["seq"] for event, _ in emitted] == list(range(1, 13))
