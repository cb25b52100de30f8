"""Events through the real RabbitMQ broker at 127.0.0.1:5672 reach exactly their subscribers."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from event_service.events import make_event
from event_service.publish import publish
from event_service.sources.rabbitmq import EXCHANGE
from tests.conftest import AMQP_URL, Launch, wait_until

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
