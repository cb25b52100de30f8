"""Tests for event_service.hub: fan-out by type, bounded buffers, stop marks, counters."""

import asyncio

import pytest

from event_service.counters import Counters
from event_service.events import make_event
from event_service.hub import Hub, Subscriber


async def drain(subscriber):
    """Everything buffered for ``subscriber``, in order (event types, None for the stop mark)."""
    items = []
    while len(subscriber):
        item = await subscriber.next()
        items.append(None if item is None else item.type)
    return items


async def parked_reader(subscriber):
    """A task blocked in ``subscriber.next()`` on an empty buffer."""
    reader = asyncio.create_task(subscriber.next())
    await asyncio.sleep(0)
    assert subscriber.is_waiting and not reader.done()
    return reader


async def test_publish_reaches_subscribers_of_the_type_and_wildcards():
    counters = Counters()
    hub = Hub(counters, queue_size=8)
    orders, ticks, everything = (
        hub.subscribe(frozenset({"order"})),
        hub.subscribe(frozenset({"tick"})),
        hub.subscribe(None),
    )
    assert hub.publish(make_event("order", {"n": 1})) == 2
    assert await drain(orders) == ["order"]
    assert await drain(ticks) == []
    assert await drain(everything) == ["order"]
    assert counters.events_received == 1 and counters.events_dropped == 0


async def test_full_buffer_marks_the_subscriber_slow_and_drops_what_it_misses():
    counters = Counters()
    hub = Hub(counters, queue_size=2)
    subscriber = hub.subscribe(None)
    slow_calls = []
    subscriber.on_slow(lambda: slow_calls.append(True))
    queued = [hub.publish(make_event("tick", n)) for n in range(4)]
    assert queued == [1, 1, 0, 0]
    assert subscriber.is_slow and slow_calls == [True]
    assert (counters.events_received, counters.events_dropped) == (4, 2)
    assert counters.slow_consumers == 1  # counted once, however many events it then misses
    assert len(subscriber) == 0  # its session is closing: nothing more is kept for it


async def test_budget_counts_queued_bytes_and_unsent_bytes_while_the_writer_is_busy():
    counters = Counters()
    hub = Hub(counters, queue_size=100, budget_bytes=1000)
    subscriber = hub.subscribe(None)
    unsent = [0]
    subscriber.unsent = lambda: unsent[0]
    event = make_event("tick", "x" * 200)  # about 270 bytes of JSON
    assert [hub.publish(event) for _ in range(3)] == [1, 1, 1]
    assert not subscriber.is_slow
    unsent[0] = 300  # the transport and the kernel hold 300 more: 4 events would pass 1000
    assert hub.publish(event) == 0
    assert subscriber.is_slow and counters.slow_consumers == 1


async def test_budget_is_not_checked_while_the_writer_waits_for_events():
    hub = Hub(Counters(), queue_size=100, budget_bytes=1000)
    subscriber = hub.subscribe(None)
    calls = []
    subscriber.unsent = lambda: calls.append(1) or 10**9
    reader = await parked_reader(subscriber)
    assert hub.publish(make_event("tick", 1)) == 1  # handed to the parked writer
    assert calls == [] and not subscriber.is_slow
    assert (await reader).type == "tick"


async def test_a_subscriber_that_keeps_up_is_never_slow():
    counters = Counters()
    hub = Hub(counters, queue_size=2, budget_bytes=1000)
    subscriber = hub.subscribe(None)
    for n in range(50):
        assert hub.publish(make_event("tick", n)) == 1
        assert (await subscriber.next()).type == "tick"
    assert not subscriber.is_slow and counters.events_dropped == 0


async def test_unsubscribe_twice_is_safe_and_counts_once():
    counters = Counters()
    hub = Hub(counters, queue_size=2)
    subscriber = hub.subscribe(None)
    hub.unsubscribe(subscriber)
    hub.unsubscribe(subscriber)
    assert len(hub) == 0
    assert (counters.connections_opened, counters.connections_closed) == (1, 1)
    assert hub.publish(make_event("tick", None)) == 0


async def test_stop_all_puts_the_stop_mark_even_into_a_full_buffer():
    hub = Hub(Counters(), queue_size=2)
    full, empty = hub.subscribe(frozenset({"tick"})), hub.subscribe(frozenset({"order"}))
    hub.publish(make_event("tick", 1))
    hub.publish(make_event("tick", 2))
    hub.stop_all()
    assert hub.is_stopping
    assert len(full) == 2  # still bounded: the stop mark took the oldest event's place
    assert await drain(full) == ["tick", None]
    assert await drain(empty) == [None]


async def test_subscriber_registered_after_stop_all_is_stopped_at_once():
    counters = Counters()
    hub = Hub(counters, queue_size=2)
    hub.stop_all()
    late = hub.subscribe(None)
    assert await drain(late) == [None]
    assert counters.connections_opened == 1


async def test_offer_wakes_the_parked_reader_with_the_event():
    subscriber = Subscriber(None, queue_size=2)
    reader = await parked_reader(subscriber)
    assert subscriber.offer(make_event("tick", 1))
    event = await asyncio.wait_for(reader, timeout=1)
    assert event is not None and event.type == "tick"
    assert not subscriber.is_waiting and len(subscriber) == 0


async def test_stop_wakes_the_parked_reader_with_the_stop_mark():
    subscriber = Subscriber(None, queue_size=2)
    reader = await parked_reader(subscriber)
    subscriber.stop()
    assert await asyncio.wait_for(reader, timeout=1) is None


async def test_reader_with_events_buffered_does_not_wait():
    subscriber = Subscriber(None, queue_size=2)
    subscriber.offer(make_event("tick", 1))
    event = await subscriber.next()
    assert event is not None and not subscriber.is_waiting


async def test_cancelled_reader_leaves_no_waiter_and_loses_nothing():
    subscriber = Subscriber(None, queue_size=2)
    reader = await parked_reader(subscriber)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert not subscriber.is_waiting
    assert subscriber.offer(make_event("tick", 1))  # no cancelled future to resolve
    assert await drain(subscriber) == ["tick"]


async def test_reader_cancelled_after_being_woken_leaves_the_event_buffered():
    subscriber = Subscriber(None, queue_size=2)
    reader = await parked_reader(subscriber)
    subscriber.offer(make_event("tick", 1))
    reader.cancel()  # before the reader ran again
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert not subscriber.is_waiting
    assert await drain(subscriber) == ["tick"]


async def test_offer_after_cancel_before_clean_up_does_not_fail():
    """A publish between the reader's cancel and its clean-up finds a cancelled waiter."""
    subscriber = Subscriber(None, queue_size=2)
    reader = await parked_reader(subscriber)
    reader.cancel()
    assert subscriber.offer(make_event("tick", 1))
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert not subscriber.is_waiting and len(subscriber) == 1


async def test_a_second_reader_is_refused():
    subscriber = Subscriber(None, queue_size=2)
    reader = await parked_reader(subscriber)
    with pytest.raises(RuntimeError, match="already has a reader"):
        await subscriber.next()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
