"""Tests for event_service.hub: fan-out by type, bounded queues, stop marks, counters."""

from event_service.counters import Counters
from event_service.events import make_event
from event_service.hub import Hub


def drain(subscriber):
    """Everything queued for ``subscriber``, in order (event types, None for the stop mark)."""
    items = []
    while not subscriber.queue.empty():
        item = subscriber.queue.get_nowait()
        items.append(None if item is None else item.type)
    return items


async def test_publish_reaches_subscribers_of_the_type_and_wildcards():
    counters = Counters()
    hub = Hub(counters, queue_size=8)
    orders, ticks, everything = (
        hub.subscribe(frozenset({"order"})),
        hub.subscribe(frozenset({"tick"})),
        hub.subscribe(None),
    )
    assert hub.publish(make_event("order", {"n": 1})) == 2
    assert (drain(orders), drain(ticks), drain(everything)) == (["order"], [], ["order"])
    assert counters.events_received == 1 and counters.events_dropped == 0


async def test_full_queue_drops_the_event_and_counts_it():
    counters = Counters()
    hub = Hub(counters, queue_size=2)
    subscriber = hub.subscribe(None)
    queued = [hub.publish(make_event("tick", n)) for n in range(3)]
    assert queued == [1, 1, 0]
    assert (counters.events_received, counters.events_dropped) == (3, 1)
    assert subscriber.queue.qsize() == 2


async def test_unsubscribe_twice_is_safe_and_counts_once():
    counters = Counters()
    hub = Hub(counters, queue_size=2)
    subscriber = hub.subscribe(None)
    hub.unsubscribe(subscriber)
    hub.unsubscribe(subscriber)
    assert len(hub) == 0
    assert (counters.connections_opened, counters.connections_closed) == (1, 1)
    assert hub.publish(make_event("tick", None)) == 0


async def test_stop_all_puts_the_stop_mark_even_into_a_full_queue():
    hub = Hub(Counters(), queue_size=2)
    full, empty = hub.subscribe(frozenset({"tick"})), hub.subscribe(frozenset({"order"}))
    hub.publish(make_event("tick", 1))
    hub.publish(make_event("tick", 2))
    hub.stop_all()
    assert hub.is_stopping
    assert drain(full) == ["tick", None]
    assert drain(empty) == [None]


async def test_subscriber_registered_after_stop_all_is_stopped_at_once():
    counters = Counters()
    hub = Hub(counters, queue_size=2)
    hub.stop_all()
    late = hub.subscribe(None)
    assert drain(late) == [None]
    assert counters.connections_opened == 1
