"""Tests for event_service.sources.delivery: every delivery is settled, poison is rejected
without requeue and counted, redeliveries of events already handed to the hub are dropped."""

from __future__ import annotations

import asyncio

import pytest
from aiormq.exceptions import ChannelInvalidStateError

from event_service.counters import Counters
from event_service.events import Event, make_event
from event_service.hub import Hub, Subscriber
from event_service.sources.delivery import MessageHandler, RecentIds

DEEP = b"[" * 100_000 + b"]" * 100_000
TS_400_DIGITS = b'{"type":"a","id":"x","ts":1' + b"0" * 399 + b',"payload":null}'
INT_5000_DIGITS = b'{"type":"a","id":"x","ts":1,"payload":' + b"9" * 5000 + b"}"


class FakeDelivery:
    """An incoming message that records how it was settled."""

    def __init__(self, body: bytes, *, redelivered: bool = False, fail: bool = False) -> None:
        self.body = body
        self.redelivered = redelivered
        self.settled: list[str] = []
        self._fail = fail

    async def ack(self, multiple: bool = False) -> None:
        self._settle("ack")

    async def reject(self, requeue: bool = False) -> None:
        self._settle("reject-requeue" if requeue else "reject")

    def _settle(self, how: str) -> None:
        if self._fail:
            raise ChannelInvalidStateError("channel closed")
        self.settled.append(how)


class ExplodingHub(Hub):
    """A hub whose fan-out fails: routing errors must not leave a delivery unsettled."""

    def publish(self, event: Event) -> int:
        raise RuntimeError("routing failed")


def handler_with_subscriber(
    hub_class: type[Hub] = Hub, *, max_bytes: int = 1 << 20
) -> tuple[MessageHandler, Counters, Subscriber]:
    """A handler over a real hub with one subscriber of every type."""
    counters = Counters()
    hub = hub_class(counters, queue_size=1000)
    subscriber = hub.subscribe(None)
    return MessageHandler(hub, counters, max_bytes=max_bytes, recent_ids=8), counters, subscriber


async def ids(subscriber: Subscriber) -> list[str]:
    """The ids of the events buffered for ``subscriber``, in order."""
    found = []
    while len(subscriber):
        event = await subscriber.next()
        assert event is not None
        found.append(event.id)
    return found


@pytest.mark.parametrize(
    "body",
    [DEEP, TS_400_DIGITS, INT_5000_DIGITS, b"not json", b'{"type":"a"}', b"x" * (2 << 20)],
    ids=["deep", "ts-400-digits", "int-5000-digits", "not-json", "missing-fields", "oversized"],
)
async def test_poison_is_rejected_without_requeue_and_counted(body: bytes) -> None:
    handler, counters, subscriber = handler_with_subscriber()
    message = FakeDelivery(body)
    await handler.handle(message)
    assert message.settled == ["reject"]
    assert counters.events_rejected == 1 and await ids(subscriber) == []


async def test_a_hundred_deep_bodies_then_a_valid_event_is_delivered() -> None:
    """More poison than a prefetch window: each is settled, and the next event goes through."""
    handler, counters, subscriber = handler_with_subscriber()
    messages = [FakeDelivery(DEEP) for _ in range(100)]
    await asyncio.gather(*(handler.handle(m) for m in messages))
    valid = make_event("after", None)
    last = FakeDelivery(valid.text.encode())
    await handler.handle(last)
    assert all(m.settled == ["reject"] for m in messages)
    assert last.settled == ["ack"] and await ids(subscriber) == [valid.id]
    assert counters.events_rejected == 100 and counters.events_received == 1


async def test_any_routing_error_rejects_the_message_and_the_feed_goes_on() -> None:
    handler, counters, _ = handler_with_subscriber(ExplodingHub)
    message = FakeDelivery(make_event("a", None).text.encode())
    await handler.handle(message)
    assert message.settled == ["reject"] and counters.events_rejected == 1


async def test_a_failed_settle_does_not_raise() -> None:
    """The channel went away under the delivery: the broker requeues it, nothing to do here."""
    handler, _, subscriber = handler_with_subscriber()
    event = make_event("a", None)
    await handler.handle(FakeDelivery(event.text.encode(), fail=True))
    assert await ids(subscriber) == [event.id]


async def test_a_redelivery_of_an_event_already_routed_is_acked_not_delivered_again() -> None:
    handler, counters, subscriber = handler_with_subscriber()
    event = make_event("a", None)
    first = FakeDelivery(event.text.encode())
    again = FakeDelivery(event.text.encode(), redelivered=True)
    await handler.handle(first)
    await handler.handle(again)
    assert (first.settled, again.settled) == (["ack"], ["ack"])
    assert await ids(subscriber) == [event.id] and counters.events_duplicates == 1


async def test_a_redelivery_never_routed_before_is_delivered() -> None:
    """Sent by the broker but lost in flight at the cut: it must not be dropped."""
    handler, counters, subscriber = handler_with_subscriber()
    event = make_event("a", None)
    await handler.handle(FakeDelivery(event.text.encode(), redelivered=True))
    assert await ids(subscriber) == [event.id] and counters.events_duplicates == 0


async def test_the_size_limit_is_the_handlers() -> None:
    handler, counters, _ = handler_with_subscriber(max_bytes=256)
    message = FakeDelivery(make_event("a", "x" * 300).text.encode())
    await handler.handle(message)
    assert message.settled == ["reject"] and counters.events_rejected == 1


def test_recent_ids_forget_the_oldest_past_their_bound() -> None:
    recent = RecentIds(3)
    for event_id in ("a", "b", "c", "a", "d"):
        recent.add(event_id)
    assert len(recent) == 3
    assert "a" not in recent and all(i in recent for i in ("b", "c", "d"))
