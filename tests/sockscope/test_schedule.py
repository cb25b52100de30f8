"""Tests for sockscope.schedule: the deadline arithmetic of both policies on literal clocks, and
the schedule on a real loop with a consumer that stalls for ten intervals."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import pytest

from sockscope.schedule import Missed, every, next_deadline


def test_on_time_the_next_deadline_is_one_interval_on_under_either_policy() -> None:
    for missed in ("skip", "catch-up"):
        assert next_deadline(10.0, 10.2, 1.0, missed) == 11.0


def test_one_interval_late_is_kept_under_either_policy() -> None:
    """Less than a whole tick behind: the next tick comes at once, the grid stays."""
    for missed in ("skip", "catch-up"):
        assert next_deadline(10.0, 11.5, 1.0, missed) == 11.0


def test_catch_up_keeps_every_missed_deadline() -> None:
    assert next_deadline(10.0, 15.5, 1.0, "catch-up") == 11.0


def test_skip_jumps_over_the_missed_deadlines_to_the_latest_past_one_on_the_grid() -> None:
    following = next_deadline(10.0, 15.5, 1.0, "skip")
    assert following == 15.0
    assert 15.5 - following < 1.0  # at most one tick comes late


async def _tick_times(missed: Missed, interval_s: float, ticks: int, stall_s: float) -> list[float]:
    """Loop times of ``ticks`` ticks; the consumer blocks the loop for ``stall_s`` at tick 1."""
    loop = asyncio.get_running_loop()
    times = [loop.time()]
    async with aclosing(every(interval_s, missed=missed)) as schedule:
        async for tick in schedule:
            times.append(loop.time())
            if tick == 1:
                time.sleep(stall_s)  # noqa: ASYNC251 - the stall of a slow iteration is the point
            if tick == ticks:
                break
    return times


async def test_catch_up_gives_back_the_ticks_a_stall_missed_back_to_back() -> None:
    interval_s = 0.1
    times = await _tick_times("catch-up", interval_s, 12, stall_s=10 * interval_s)
    start, stall_end = times[0], times[1] + 10 * interval_s
    # No tick comes before its deadline...
    assert all(t >= start + n * interval_s - 1e-3 for n, t in enumerate(times[1:], start=1))
    # ...and ticks 2 to 10, due during the stall, come right after it (in skip mode tick 10
    # would come 7 intervals later); the bound is generous for a busy machine.
    assert times[10] - stall_end < 5 * interval_s


async def test_skip_drops_the_ticks_a_stall_missed() -> None:
    interval_s = 0.1
    times = await _tick_times("skip", interval_s, 4, stall_s=10 * interval_s)
    stall_end = times[1] + 10 * interval_s
    # One late tick right after the stall, then the grid again: tick 3 is not due before the
    # stall ended (under catch-up it would have been due 8 intervals before).
    assert times[3] >= stall_end - 1e-3


async def test_first_at_once_ticks_without_waiting_an_interval() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aclosing(every(30.0, first_at_once=True)) as schedule:
        async for tick in schedule:
            assert tick == 1
            break
    assert loop.time() - started < 15.0


async def test_an_interval_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        async with aclosing(every(0.0)) as schedule:
            async for _ in schedule:
                pass
