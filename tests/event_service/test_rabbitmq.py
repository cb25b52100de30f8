"""Events through the real RabbitMQ broker at 127.0.0.1:5672 reach exactly their subscribers,
poison never stops the feed, and no confirmed event is lost across a broker outage.

The broker is shared with other test runs: every test declares its own exchange
(``AMQP_EXCHANGE``, a uuid) and deletes it, and its dead letters, at the end. The outage is a
relay of the test's own between the service and the broker: the broker is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import ChannelLockedResource, ChannelNotFoundEntity, DeliveryError
from websockets.asyncio.client import ClientConnection, connect

from event_service.events import Event, make_event
from event_service.publish import publish
from event_service.settings import settings_from_env
from leaklab.children import ServiceProcess
from tests.conftest import Launch
from tests.relay import RelayThread
from tests.utils import AMQP_URL, wait_until

pytestmark = [pytest.mark.timeout(60), pytest.mark.rabbitmq]

_QUEUE_RE = re.compile(r"amqp connected exchange=\S+ queue=(\S+)")

Send = Callable[[Event], Awaitable[str]]


@pytest.fixture
async def exchange() -> AsyncIterator[str]:
    """A fanout exchange name of this test's own; it and its dead letters go away after."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(f"{name}.dead")
        await channel.exchange_delete(f"{name}.dead")
        await channel.exchange_delete(name)


def subscribe(url: str) -> connect:
    """A plain websockets client with the lab's defaults."""
    return connect(url, ping_interval=None, compression=None, proxy=None, max_size=1 << 20)


def instance_queue(service: ServiceProcess) -> str:
    """The name of the service's own queue, from its start-up line."""
    match = _QUEUE_RE.search(service.log_path.read_text())
    assert match, service.log_tail()
    return match.group(1)


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


@contextlib.asynccontextmanager
async def confirmed_publisher(exchange_name: str, url: str = AMQP_URL) -> AsyncIterator[Send]:
    """``send(event)`` publishes to the exchange and returns once the broker confirmed it
    routed to a queue (an unroutable message raises)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        target = await channel.get_exchange(exchange_name)

        async def send(event: Event) -> str:
            await target.publish(aio_pika.Message(event.text.encode()), routing_key="")
            return event.id

        yield send


async def publish_raw(exchange_name: str, *bodies: bytes) -> None:
    """Publish messages to the exchange as they are, with publisher confirms."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        target = await channel.get_exchange(exchange_name)
        for body in bodies:
            await target.publish(aio_pika.Message(body), routing_key="")


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


async def take_dead_letter(
    queue_name: str, body: bytes, *, timeout_s: float
) -> AbstractIncomingMessage:
    """Remove the message with ``body`` from the dead-letter queue, leaving the others there."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
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
    pytest.fail(f"{body!r} not in {queue_name} after {timeout_s} s")


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


async def queue_length(name: str) -> int:
    """Messages ready in queue ``name``."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        return 0 if count is None else count


async def async_wait_until(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str
) -> None:
    """Poll an async ``condition`` until it holds; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting until {what}")
        await asyncio.sleep(0.05)


async def test_events_reach_exactly_the_subscribers_of_their_type(
    exchange: str, launch: Launch
) -> None:
    """a -> subscribers of a and of everything; b -> subscribers of b and of everything."""
    service = launch(AMQP_URL=AMQP_URL, AMQP_EXCHANGE=exchange)
    async with (
        subscribe(f"{service.ws_url}?events=a") as only_a,
        subscribe(f"{service.ws_url}?events=b") as only_b,
        subscribe(service.ws_url) as every,
    ):
        await wait_until(lambda: service.stats()["connections"] == 3, timeout_s=10, what="3 subs")
        await publish(AMQP_URL, "a", rate=1000, count=2, size=0, exchange_name=exchange)
        await publish(AMQP_URL, "b", rate=1000, count=3, size=0, exchange_name=exchange)
        for type_ in ("a", "b"):
            await publish_raw(exchange, make_event(type_, "last").text.encode())
        assert await collect_until_last(only_a, {"a"}) == ["a", "a"]
        assert await collect_until_last(only_b, {"b"}) == ["b", "b", "b"]
        assert await collect_until_last(every, {"a", "b"}) == ["a", "a", "b", "b", "b"]
    stats = service.stats()
    assert stats["events_received"] == 7
    assert stats["events_rejected"] == 0


async def test_malformed_message_is_rejected_counted_and_next_event_delivered(
    exchange: str, launch: Launch
) -> None:
    """A message that is not an event is rejected and counted; the next valid one arrives."""
    service = launch(AMQP_URL=AMQP_URL, AMQP_EXCHANGE=exchange)
    async with subscribe(service.ws_url) as ws:
        await wait_until(lambda: service.stats()["connections"] == 1, timeout_s=10, what="1 sub")
        valid = make_event("after", {"n": 1})
        await publish_raw(exchange, b"this is not an event", b'{"type": "x"}', valid.text.encode())
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert event["id"] == valid.id
    stats = service.stats()
    assert stats["events_rejected"] == 2
    assert stats["events_received"] == 1


async def test_poison_messages_are_dead_lettered_and_the_feed_never_stops(
    exchange: str, launch: Launch
) -> None:
    """The three poison bodies, one oversized and 100 deep ones (more than the prefetch window
    of 64) are rejected without requeue and dead-lettered; the next valid event arrives."""
    max_bytes = 256 * 1024  # the 200 KB deep body gets past the size check, to the depth check
    service = launch(
        AMQP_URL=AMQP_URL,
        AMQP_EXCHANGE=exchange,
        AMQP_PREFETCH="64",
        EVENT_MAX_BYTES=str(max_bytes),
    )
    deep = b"[" * 100_000 + b"]" * 100_000  # RecursionError in json.loads, unbounded
    ts_400_digits = b'{"type":"a","id":"x","ts":1' + b"0" * 399 + b',"payload":null}'  # Overflow
    int_5000_digits = b'{"type":"a","id":"x","ts":1,"payload":' + b"9" * 5000 + b"}"  # ValueError
    oversized = make_event("big", "x" * max_bytes).text.encode()
    poison = [ts_400_digits, int_5000_digits, oversized, *[deep] * 100]
    valid = make_event("after", {"n": 1})
    async with subscribe(service.ws_url) as ws:
        await wait_until(lambda: service.stats()["connections"] == 1, timeout_s=10, what="1 sub")
        await publish_raw(exchange, *poison, valid.text.encode())
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
    assert event["id"] == valid.id
    stats = service.stats()
    assert (stats["events_rejected"], stats["events_received"]) == (len(poison), 1)

    async def all_dead_lettered() -> bool:
        return await queue_length(f"{exchange}.dead") == len(poison)

    await async_wait_until(all_dead_lettered, timeout_s=10, what="every poison dead-lettered")
    log = service.log_path.read_text()
    assert "Traceback" not in log and "Consumer callback failed" not in log
    assert log.count("event rejected reason=") == len(poison)


async def test_post_events_goes_through_the_broker(exchange: str, launch: Launch) -> None:
    """With AMQP_URL set, ``POST /events`` publishes to RabbitMQ and comes back to subscribers."""
    service = launch(AMQP_URL=AMQP_URL, AMQP_EXCHANGE=exchange)
    async with subscribe(service.ws_url) as ws:
        await wait_until(lambda: service.stats()["connections"] == 1, timeout_s=10, what="1 sub")
        response = httpx.post(f"{service.base_url}/events", json={"type": "manual", "payload": 7})
        assert response.status_code == 202
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert event["id"] == response.json()["id"]
    assert service.stats()["events_received"] == 1


async def test_every_instance_receives_every_event(exchange: str, launch: Launch) -> None:
    """Two services on one broker each get all events: one queue per instance, no sharing."""
    first = launch(AMQP_URL=AMQP_URL, AMQP_EXCHANGE=exchange)
    second = launch(AMQP_URL=AMQP_URL, AMQP_EXCHANGE=exchange)
    assert instance_queue(first) != instance_queue(second)
    count = 50
    async with (
        subscribe(first.ws_url) as to_first,
        subscribe(second.ws_url) as to_second,
    ):
        await wait_until(
            lambda: [s.stats()["connections"] for s in (first, second)] == [1, 1],
            timeout_s=10,
            what="1 sub each",
        )
        async with httpx.AsyncClient(base_url=first.base_url, timeout=5) as client:
            published = []
            for n in range(count):
                response = await client.post("/events", json={"type": "fanout", "payload": n})
                assert response.status_code == 202
                published.append(response.json()["id"])
        received = await asyncio.gather(
            collect_ids(to_first, count, timeout_s=10), collect_ids(to_second, count, timeout_s=10)
        )
    assert len(set(published)) == count
    for name, ids in zip(("first", "second"), received, strict=True):
        assert ids == published, f"{name} got {len(ids)} of {count}"


async def test_malformed_message_is_dead_lettered_not_requeued(
    exchange: str, launch: Launch
) -> None:
    """A malformed message goes once from the instance's own queue to <exchange>.dead; the
    queue is named, open to other connections, and a clean stop deletes it."""
    service = launch(AMQP_URL=AMQP_URL, AMQP_EXCHANGE=exchange)
    body = f"not an event {uuid.uuid4().hex}".encode()
    async with subscribe(service.ws_url) as ws:
        await wait_until(lambda: service.stats()["connections"] == 1, timeout_s=10, what="1 sub")
        valid = make_event("after", "after")
        await publish_raw(exchange, body, valid.text.encode())
        dead = await take_dead_letter(f"{exchange}.dead", body, timeout_s=10)
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert event["id"] == valid.id
    (death,) = cast(list[dict[str, Any]], dead.headers["x-death"])
    assert (death["reason"], death["count"], death["exchange"]) == ("rejected", 1, exchange)
    assert service.stats()["events_rejected"] == 1  # a requeued message would come back
    queue = instance_queue(service)
    assert death["queue"] == queue and queue.startswith(f"{exchange}.")
    assert await queue_access(queue) == "open"  # named, not exclusive: it outlives a connection
    service.stop()
    assert await queue_access(queue) == "gone"
    assert f"amqp queue deleted queue={queue}" in service.log_path.read_text()


async def test_a_killed_service_queue_is_reaped_by_x_expires(exchange: str, launch: Launch) -> None:
    """No clean stop (SIGKILL): the queue stays for AMQP_QUEUE_EXPIRES, then the broker drops it.

    Probed by publishing to the exchange (mandatory): a passive declare would renew the lease.
    """
    service = launch(AMQP_URL=AMQP_URL, AMQP_EXCHANGE=exchange, AMQP_QUEUE_EXPIRES="10")
    service.signal(signal.SIGKILL)
    service.wait(timeout_s=10)
    killed_at = time.monotonic()
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(on_return_raises=True)
        target = await channel.get_exchange(exchange)

        async def unroutable() -> bool:
            try:
                await target.publish(aio_pika.Message(b"probe"), routing_key="", mandatory=True)
            except DeliveryError:
                return True
            return False

        assert not await unroutable()  # the queue outlived its connection
        await async_wait_until(unroutable, timeout_s=30, what="x-expires reaped the queue")
    assert time.monotonic() - killed_at >= 9  # not before its expiry (10 s, timer granularity)


async def read_into(ws: ClientConnection, received: list[tuple[str, float]]) -> None:
    """Append (event id, arrival time) for every event until the connection ends."""
    async for text in ws:
        received.append((json.loads(text)["id"], time.monotonic()))


async def broker_state(http: httpx.AsyncClient) -> tuple[str, int]:
    """(``broker`` in /healthz, the status of /readyz)."""
    health = await http.get("/healthz")
    assert health.status_code == 200  # liveness holds whatever the broker does
    return health.json()["broker"], (await http.get("/readyz")).status_code


@pytest.mark.timeout(90)
async def test_no_confirmed_event_is_lost_across_a_broker_outage(
    exchange: str, tmp_path: Path
) -> None:
    """Cut off from the broker for 10 s while 200 events are confirmed, with 30 deliveries
    unacked at the cut: a subscriber connected all along gets every event, in order, once
    (the redelivered 30 are dropped); delivery resumes within 6 s of the broker's return;
    /healthz says down, /readyz and POST /events answer 503 meanwhile; the service logs the
    loss and the return."""
    loop = asyncio.get_running_loop()
    with (
        RelayThread("127.0.0.1", 5672) as relay,
        # Stopped before the relay closes, so that it can delete its queue through it.
        ServiceProcess(
            settings_from_env(
                {
                    "PORT": "0",
                    "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{relay.port}/",
                    "AMQP_EXCHANGE": exchange,
                    "AMQP_QUEUE_EXPIRES": "60",  # if the test fails half-way
                    "EVENT_RATE": "0",
                }
            ),
            tmp_path / "service.log",
        ) as service,
    ):
        queue = instance_queue(service)
        received: list[tuple[str, float]] = []
        async with (
            subscribe(service.ws_url) as ws,
            httpx.AsyncClient(base_url=service.base_url, timeout=5) as http,
            confirmed_publisher(exchange) as send,  # to the broker itself, not through the relay
        ):
            await wait_until(lambda: service.stats()["connections"] == 1, timeout_s=10, what="sub")
            reader = asyncio.create_task(read_into(ws, received))
            try:
                published = [await send(make_event("outage", {"n": n})) for n in range(20)]
                await wait_until(lambda: len(received) == 20, timeout_s=10, what="20 before")
                # 30 more delivered, whose acks are lost on the way: the broker redelivers them.
                relay.mute_clients()
                published += [await send(make_event("outage", {"n": n})) for n in range(20, 50)]
                await wait_until(lambda: len(received) == 50, timeout_s=10, what="50 before")

                relay.cut()

                async def is_down() -> bool:
                    return await broker_state(http) == ("down", 503)

                await async_wait_until(is_down, timeout_s=5, what="/healthz says broker down")
                metrics = (await http.get("/metrics")).text
                assert re.search(r"^event_service_broker_up\{.*\} 0\.0$", metrics, re.M)
                refused = await http.post("/events", json={"type": "outage", "payload": None})
                assert refused.status_code == 503  # not lost in silence: the caller may retry
                cut_ends = loop.time() + 10
                states: set[tuple[str, int]] = set()
                while loop.time() < cut_ends:  # 20 events per second, each confirmed
                    published.append(await send(make_event("outage", {"n": len(published)})))
                    if len(published) % 20 == 0:
                        states.add(await broker_state(http))
                    await asyncio.sleep(0.05)
                assert states == {("down", 503)}
                assert len(received) == 50  # nothing came through the cut
                during = len(published) - 50

                relay.restore()
                restored_at = time.monotonic()
                await wait_until(
                    lambda: len(received) >= len(published), timeout_s=15, what="the backlog"
                )
                resumed_s = received[50][1] - restored_at
                published += [await send(make_event("outage", {"n": n})) for n in range(20)]
                await wait_until(
                    lambda: len(received) >= len(published), timeout_s=10, what="events after"
                )
            finally:
                reader.cancel()
                await asyncio.wait([reader])
            assert await broker_state(http) == ("up", 200)
            metrics = (await http.get("/metrics")).text
            stats = (await http.get("/stats")).json()
        ids = [event_id for event_id, _ in received]
        assert during >= 150
        assert len(ids) == len(set(ids)), "duplicates"
        assert ids == published, f"got {len(ids)} of {len(published)}"
        assert resumed_s < 6, f"delivery resumed {resumed_s:.2f} s after the broker's return"
        assert relay.connections == 1  # one connection again, none left over
        # The 30 unacked, redelivered and dropped (and any ack of the 20 still on its way).
        assert 30 <= stats["events_duplicates"] <= 50
        assert (stats["events_dropped"], stats["broker_reconnects"]) == (0, 1)
        assert re.search(r"^event_service_broker_up\{.*\} 1\.0$", metrics, re.M)
        assert re.search(r"^event_service_broker_reconnects_total\{.*\} 1\.0$", metrics, re.M)
        log = service.log_path.read_text()
        assert re.search(r"WARNING event_service\.rabbitmq: amqp connection lost error=", log)
        reconnected = re.search(
            r"INFO event_service\.rabbitmq: amqp reconnected after_s=(\S+)", log
        )
        assert reconnected, service.log_tail()
        print(
            f"\noutage: {during} events confirmed during the cut, resumed_s={resumed_s:.2f}, "
            f"reconnected after_s={reconnected.group(1)}, refused={relay.refused}, "
            f"duplicates dropped={stats['events_duplicates']}"
        )
    assert await queue_access(queue) == "gone"  # the same queue all along, deleted at the stop
