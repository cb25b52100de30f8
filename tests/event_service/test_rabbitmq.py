"""Events through the real RabbitMQ broker at 127.0.0.1:5672 reach exactly their subscribers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, cast

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import ChannelLockedResource, ChannelNotFoundEntity
from websockets.asyncio.client import ClientConnection, connect

from event_service.events import make_event
from event_service.publish import publish
from event_service.sources.rabbitmq import DEAD_LETTER_QUEUE, EXCHANGE
from tests.conftest import Launch
from tests.utils import AMQP_URL, wait_until

pytestmark = pytest.mark.timeout(60)


def subscribe(url: str) -> connect:
    """A plain websockets client with the lab's defaults."""
    return connect(url, ping_interval=None, compression=None, proxy=None)


async def collect_until_last(ws: ClientConnection, last_types: set[str]) -> list[str]:
    """Event types received until a ``last`` event of every type in ``last_types`` arrived."""
    seen: list[str] = []
    pending = set(last_types)
    while pending:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
        if event["payload"] == "last":
            pending.discard(event["type"])
        else:
            seen.append(event["type"])
    return seen


async def publish_raw(body: bytes) -> None:
    """Publish a message to the events exchange as is, with publisher confirms."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EXCHANGE)
        await exchange.publish(aio_pika.Message(body), routing_key="")


async def collect_ids(ws: ClientConnection, count: int, *, timeout_s: float) -> list[str]:
    """Ids of the events received until ``count`` arrived or ``timeout_s`` passed."""
    ids: list[str] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(ids) < count:
                ids.append(json.loads(await ws.recv())["id"])
    except TimeoutError:
        pass
    return ids


async def take_dead_letter(body: bytes, *, timeout_s: float) -> AbstractIncomingMessage:
    """Remove the message with ``body`` from the dead-letter queue, leaving the others there."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(DEAD_LETTER_QUEUE, passive=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            held = []  # unacked until the scan ends, so that get() moves on to the next one
            while (message := await queue.get(fail=False, timeout=5)) is not None:
                if message.body == body:
                    await message.ack()
                    break
                held.append(message)
            for other in held:
                await other.nack(requeue=True)
            if message is not None:
                return message
            await asyncio.sleep(0.05)
    pytest.fail(f"{body!r} not in {DEAD_LETTER_QUEUE} after {timeout_s} s")


async def queue_access(name: str) -> str:
    """How another connection finds queue ``name``: "exclusive" to its owner, "gone" or "open"."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except ChannelLockedResource:
            return "exclusive"
        except ChannelNotFoundEntity:
            return "gone"
    return "open"


async def test_events_reach_exactly_the_subscribers_of_their_type(launch: Launch) -> None:
    """a -> subscribers of a and of everything; b -> subscribers of b and of everything."""
    service = launch(AMQP_URL=AMQP_URL)
    async with (
        subscribe(f"{service.ws_url}?events=a") as only_a,
        subscribe(f"{service.ws_url}?events=b") as only_b,
        subscribe(service.ws_url) as every,
    ):
        await wait_until(lambda: service.stats()["connections"] == 3, timeout_s=10, what="3 subs")
        await publish(AMQP_URL, "a", rate=1000, count=2, size=0)
        await publish(AMQP_URL, "b", rate=1000, count=3, size=0)
        for type_ in ("a", "b"):
            await publish_raw(make_event(type_, "last").text.encode())
        assert await collect_until_last(only_a, {"a"}) == ["a", "a"]
        assert await collect_until_last(only_b, {"b"}) == ["b", "b", "b"]
        assert await collect_until_last(every, {"a", "b"}) == ["a", "a", "b", "b", "b"]
    stats = service.stats()
    assert stats["events_received"] == 7
    assert stats["events_rejected"] == 0


async def test_malformed_message_is_rejected_counted_and_next_event_delivered(
    launch: Launch,
) -> None:
    """A message that is not an event is rejected and counted; the next valid one arrives."""
    service = launch(AMQP_URL=AMQP_URL)
    async with subscribe(service.ws_url) as ws:
        await wait_until(lambda: service.stats()["connections"] == 1, timeout_s=10, what="1 sub")
        await publish_raw(b"this is not an event")
        await publish_raw(b'{"type": "x"}')
        valid = make_event("after", {"n": 1})
        await publish_raw(valid.text.encode())
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert event["id"] == valid.id
    stats = service.stats()
    assert stats["events_rejected"] == 2
    assert stats["events_received"] == 1


async def test_post_events_goes_through_the_broker(launch: Launch) -> None:
    """With AMQP_URL set, ``POST /events`` publishes to RabbitMQ and comes back to subscribers."""
    service = launch(AMQP_URL=AMQP_URL)
    async with subscribe(service.ws_url) as ws:
        await wait_until(lambda: service.stats()["connections"] == 1, timeout_s=10, what="1 sub")
        response = httpx.post(f"{service.base_url}/events", json={"type": "manual", "payload": 7})
        assert response.status_code == 202
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert event["id"] == response.json()["id"]
    assert service.stats()["events_received"] == 1


async def test_every_instance_receives_every_event(launch: Launch) -> None:
    """Two services on one broker each get all events: one queue per instance, no sharing."""
    first, second = launch(AMQP_URL=AMQP_URL), launch(AMQP_URL=AMQP_URL)
    type_ = f"fanout-{uuid.uuid4().hex[:12]}"  # this test's events only, whoever else publishes
    count = 50
    async with (
        subscribe(f"{first.ws_url}?events={type_}") as to_first,
        subscribe(f"{second.ws_url}?events={type_}") as to_second,
    ):
        await wait_until(
            lambda: [s.stats()["connections"] for s in (first, second)] == [1, 1],
            timeout_s=10,
            what="1 sub each",
        )
        async with httpx.AsyncClient(base_url=first.base_url, timeout=5) as client:
            published = []
            for n in range(count):
                response = await client.post("/events", json={"type": type_, "payload": n})
                assert response.status_code == 202
                published.append(response.json()["id"])
        received = await asyncio.gather(
            collect_ids(to_first, count, timeout_s=10), collect_ids(to_second, count, timeout_s=10)
        )
    assert len(set(published)) == count
    for name, ids in zip(("first", "second"), received, strict=True):
        assert sorted(ids) == sorted(published), f"{name} got {len(ids)} of {count}"


async def test_malformed_message_is_dead_lettered_not_requeued(launch: Launch) -> None:
    """A malformed message goes once from the instance's exclusive queue to events.dead."""
    service = launch(AMQP_URL=AMQP_URL)
    body = f"not an event {uuid.uuid4().hex}".encode()
    type_ = f"after-{uuid.uuid4().hex[:12]}"
    async with subscribe(f"{service.ws_url}?events={type_}") as ws:
        await wait_until(lambda: service.stats()["connections"] == 1, timeout_s=10, what="1 sub")
        await publish_raw(body)
        valid = make_event(type_, "after")
        await publish_raw(valid.text.encode())
        dead = await take_dead_letter(body, timeout_s=10)
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert event["id"] == valid.id
    (death,) = cast(list[dict[str, Any]], dead.headers["x-death"])
    assert (death["reason"], death["count"], death["exchange"]) == ("rejected", 1, EXCHANGE)
    assert service.stats()["events_rejected"] == 1  # a requeued message would come back
    # The queue it was rejected from is the instance's own, and goes away with it.
    assert await queue_access(str(death["queue"])) == "exclusive"
    service.stop()
    assert await queue_access(str(death["queue"])) == "gone"
