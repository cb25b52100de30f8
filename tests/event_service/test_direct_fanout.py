"""The direct fan-out inside uvicorn: the version check, what it relies on in uvicorn, and
frame integrity and order on a real server under a burst, for both fan-out paths.

The protocol tests drive :class:`DirectFanoutProtocol` by hand on a stub transport with
websockets' own client protocol on the other side, which rejects any frame that is not whole
and well formed. Each pins one thing the module's docstring says it relies on in uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.uri import parse_uri

from event_service.direct_fanout import (
    FRAME_SINK_KEY,
    DirectFanoutProtocol,
    Flag,
    ReceiveQueue,
    fanout_in_effect,
    frame_sink_of,
)
from event_service.direct_subscriber import Write, text_frame
from event_service.events import make_event
from event_service.server import build_config
from event_service.settings import settings_from_env
from event_service.uvicorn_guards import GuardedWebSocketsSansIO
from tests.conftest import BOTH_FANOUTS, Launch
from tests.utils import wait_until

pytestmark = pytest.mark.timeout(120)


# --- the version check ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "ws_impl", "version", "expected"),
    [
        ("direct", "websockets-sansio", "0.54.0", "direct"),
        ("direct", "websockets-sansio", "0.54.9", "direct"),
        ("direct", "websockets-sansio", "0.55.0", "asgi"),
        ("direct", "websockets-sansio", "0.53.2", "asgi"),
        ("direct", "websockets-sansio", "1.0.0", "asgi"),
        ("direct", "wsproto", "0.54.0", "asgi"),
        ("direct", "websockets", "0.54.0", "asgi"),
        ("asgi", "websockets-sansio", "0.54.0", "asgi"),
    ],
)
def test_direct_runs_only_on_websockets_sansio_of_a_verified_uvicorn(
    requested: str, ws_impl: str, version: str, expected: str
) -> None:
    fanout, why_not = fanout_in_effect(requested, ws_impl, version)
    assert fanout == expected
    assert (why_not is None) == (fanout == requested)


def test_installed_uvicorn_runs_the_direct_fan_out() -> None:
    """When this fails, uvicorn moved: re-verify direct_fanout.py and widen VERIFIED_UVICORN."""
    assert fanout_in_effect("direct", "websockets-sansio", uvicorn.__version__)[0] == "direct"


def test_an_unknown_uvicorn_falls_back_to_asgi_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_from_env({"FANOUT": "direct"})
    assert build_config(settings).ws is DirectFanoutProtocol
    monkeypatch.setattr(uvicorn, "__version__", "0.55.0")
    with caplog.at_level(logging.WARNING, logger="event_service"):
        config = build_config(settings)
    assert config.ws is GuardedWebSocketsSansIO  # no frame sink: every session goes by ASGI
    assert "fanout=asgi instead of direct" in caplog.text
    assert "uvicorn 0.55.0" in caplog.text


def test_fanout_asgi_runs_the_plain_guarded_protocol(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="event_service"):
        config = build_config(settings_from_env({"FANOUT": "asgi"}))
    assert config.ws is GuardedWebSocketsSansIO and caplog.text == ""


# --- what the protocol relies on in uvicorn -------------------------------------------------


class StubTransport:
    """Just enough of a transport for uvicorn's protocol; it keeps what was written."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: object = None) -> object:
        addresses = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}
        return addresses.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


@dataclass
class Connection:
    """A DirectFanoutProtocol on a stub transport, and a websockets client for the far end."""

    protocol: DirectFanoutProtocol
    transport: StubTransport
    client: ClientProtocol
    scope: dict[str, Any]
    release: asyncio.Event
    read_offset: int = 0
    frames: list[Frame] = field(default_factory=list)

    def client_sends(self) -> None:
        """Hand what the client queued to the server protocol."""
        self.protocol.data_received(b"".join(self.client.data_to_send()))

    def client_receives(self) -> list[Frame]:
        """Feed the client what the server wrote since last time; the frames it parsed."""
        data = bytes(self.transport.written[self.read_offset :])
        self.read_offset = len(self.transport.written)
        self.client.receive_data(data)
        assert self.client.parser_exc is None, self.client.parser_exc
        frames = [e for e in self.client.events_received() if isinstance(e, Frame)]
        self.frames += frames
        return frames


@contextlib.asynccontextmanager
async def connection(
    protocol_class: type[GuardedWebSocketsSansIO] = DirectFanoutProtocol,
    *,
    compression: bool = False,
) -> AsyncIterator[Connection]:
    """A handshake through the protocol to a tiny app that accepts and waits."""
    accepted: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set_result(scope)
        await release.wait()
        await send({"type": "websocket.close", "code": 1000})

    config = Config(app, ws_ping_interval=None, log_level="warning")
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = StubTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    extensions = [ClientPerMessageDeflateFactory()] if compression else None
    client = ClientProtocol(parse_uri("ws://127.0.0.1:8000/ws"), extensions=extensions)
    client.send_request(client.connect())
    conn = Connection(protocol, transport, client, {}, release)  # type: ignore[arg-type]
    conn.client_sends()
    conn.scope = await asyncio.wait_for(accepted, 2)
    conn.client_receives()
    assert client.state is OPEN
    try:
        yield conn
    finally:
        release.set()
        await asyncio.sleep(0)


async def test_the_protocol_offers_itself_in_the_scope_before_the_app_runs() -> None:
    """handle_connect sets the scope and only creates the ASGI task: the sink is in time."""
    async with connection() as conn:
        assert frame_sink_of(conn.scope) is conn.protocol
        assert conn.scope["extensions"][FRAME_SINK_KEY] is conn.protocol


async def test_the_handshake_is_forgotten_once_accepted() -> None:
    """uvicorn reads request and response only until the accept: the direct path drops them."""
    async with connection() as conn:
        assert conn.protocol.request is None and conn.protocol.response is None
        # The scope's copy of the headers is left whole for the app.
        assert any(name.lower() == b"sec-websocket-key" for name, _ in conn.scope["headers"])
    async with connection(GuardedWebSocketsSansIO) as conn:
        assert conn.protocol.request is not None  # the plain path keeps uvicorn's ways
        assert "Sec-WebSocket-Key" in conn.protocol.request.headers


async def test_the_direct_path_empties_the_request_websockets_parser_keeps() -> None:
    """websockets' parser generator holds the request as a local: its headers are emptied."""
    async with connection() as conn:
        parser = conn.protocol.conn.parser
        held = [v for v in parser.gi_frame.f_locals.values() if isinstance(v, Request)]
        assert held, "websockets' parser no longer holds the request: the clear can go"
        assert all(len(request.headers) == 0 for request in held)


async def test_the_receive_queue_keeps_order_and_wakes_its_reader() -> None:
    """What uvicorn needs of its asyncio.Queue: FIFO, a reader parked until an item comes."""
    queue: ReceiveQueue[int] = ReceiveQueue()
    assert queue.empty()
    reader = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not reader.done()
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert await asyncio.wait_for(reader, 1) == 1
    assert not queue.empty()
    assert await queue.get() == 2
    assert queue.empty()


async def test_a_reader_cancelled_after_its_wake_up_leaves_the_item_to_the_next() -> None:
    queue: ReceiveQueue[str] = ReceiveQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("only")
    first.cancel()  # woken and cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "only"
    assert first.cancelled()


async def test_the_flag_is_what_uvicorn_uses_of_an_event() -> None:
    flag = Flag()
    assert not flag.is_set()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True]
    flag.clear()
    assert not flag.is_set()
    flag.set()
    assert await flag.wait() is True


async def test_the_direct_protocol_uses_the_lean_queue_and_flag() -> None:
    """And the session still reads through them: the handshake's connect came via the queue."""
    async with connection() as conn:
        assert isinstance(conn.protocol.queue, ReceiveQueue)
        assert isinstance(conn.protocol.writable, Flag) and conn.protocol.writable.is_set()
        conn.protocol.pause_writing()
        assert not conn.protocol.writable.is_set()
        conn.protocol.resume_writing()
        assert conn.protocol.writable.is_set()


async def test_the_asgi_path_offers_no_sink() -> None:
    async with connection(GuardedWebSocketsSansIO) as conn:
        assert frame_sink_of(conn.scope) is None


async def test_frames_written_by_the_hub_arrive_whole_between_uvicorns_own() -> None:
    """A pong uvicorn writes and the frames the hub writes reach the client whole, in order."""
    async with connection() as conn:
        events = [make_event("t", "x" * size) for size in (10, 200, 70_000)]
        frames = b"".join(text_frame(e.text) for e in events)
        assert conn.protocol.write_frames(text_frame(events[0].text), events[:1]) is Write.WRITTEN
        conn.client.send_ping(b"p1")
        conn.client_sends()  # uvicorn answers with a pong, written at once
        assert conn.protocol.conn.writes == []  # nothing left queued in websockets
        assert conn.protocol.write_frames(frames, events) is Write.WRITTEN
        received = conn.client_receives()
        assert [f.opcode for f in received] == [Opcode.TEXT, Opcode.PONG, *[Opcode.TEXT] * 3]
        texts = [f.data.decode() for f in received if f.opcode is Opcode.TEXT]
        assert texts == [events[0].text, *(e.text for e in events)]


async def test_a_paused_transport_is_reported_and_its_resume_calls_back_once() -> None:
    async with connection() as conn:
        calls: list[str] = []
        conn.protocol.pause_writing()
        assert conn.protocol.write_frames(b"", []) is Write.PAUSED
        conn.protocol.call_when_writable(lambda: calls.append("writable"))
        conn.protocol.resume_writing()
        conn.protocol.pause_writing()
        conn.protocol.resume_writing()
        assert calls == ["writable"]
        assert conn.protocol.write_frames(text_frame("a"), []) is Write.WRITTEN


async def test_a_lost_connection_calls_back_and_refuses_writes() -> None:
    async with connection() as conn:
        calls: list[str] = []
        conn.protocol.pause_writing()
        conn.protocol.call_when_writable(lambda: calls.append("lost"))
        conn.protocol.connection_lost(None)
        assert calls == ["lost"]
        assert conn.protocol.write_frames(text_frame("a"), []) is Write.CLOSED


async def test_nothing_is_written_after_a_close_frame_either_way() -> None:
    async with connection() as conn:  # the app closes
        conn.release.set()
        await asyncio.sleep(0.01)
        assert conn.protocol.close_sent
        assert conn.protocol.write_frames(text_frame("late"), []) is Write.CLOSED
        conn.client_receives()
        assert conn.frames[-1].opcode is Opcode.CLOSE
    async with connection() as conn:  # the client closes
        conn.client.send_close(1000)
        conn.client_sends()
        assert conn.protocol.write_frames(text_frame("late"), []) is Write.CLOSED
        assert [f.opcode for f in conn.client_receives()] == [Opcode.CLOSE]


async def test_a_compressed_connection_gets_frames_of_its_own() -> None:
    """With permessage-deflate the frames encoded once do not fit: it encodes its own."""
    async with connection(compression=True) as conn:
        assert conn.protocol.conn.extensions
        events = [make_event("t", "y" * 5000), make_event("t", 2)]
        assert conn.protocol.write_frames(b"not these bytes", events) is Write.WRITTEN
        assert len(conn.transport.written) - conn.read_offset < 5000  # compressed
        received = conn.client_receives()
        assert [f.data.decode() for f in received] == [e.text for e in events]


# --- frame integrity and order under a burst, on a real server --------------------------------

SUBSCRIBERS = 200
SLOW = 10
SMALL_EVENTS = 150  # type "a": frame lengths across 125/126; type "c": random sizes
BIG_EVENTS = 20  # type "b": frame lengths across 65535/65536


def pad_of(type_: str, seq: int) -> str:
    """The padding of event ``seq`` of ``type_``: its size and content follow from both."""
    if type_ == "a":
        size = seq % 60
    elif type_ == "b":
        size = 65_536 - 150 + 4 * seq
    else:
        size = random.Random(seq).randrange(0, 6000)
    return (f"{type_}{seq}-" * (size // 4 + 1))[:size]


EXPECTED = {"a": SMALL_EVENTS, "b": BIG_EVENTS, "c": SMALL_EVENTS}
READ_BOUND_S = 60.0
SUBSCRIPTIONS: list[str | None] = [None, "a,c", "b", "a,b,c", "c"]


@dataclass
class BurstClient:
    """A subscriber that checks every frame and the order and content of every event."""

    port: int
    types: str | None
    slow: bool
    received: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def expected(self) -> int:
        wanted = self.types.split(",") if self.types else list(EXPECTED)
        return sum(EXPECTED[t] for t in wanted)

    async def run(
        self, connected: asyncio.Semaphore, go: asyncio.Event, published: asyncio.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        if self.slow:  # a small window: the server's writes back up within a few KiB
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", self.port))
        # The stream stops reading the socket past twice its limit: a slow one reads nothing.
        limit = 4096 if self.slow else 1 << 20
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        query = f"?events={self.types}" if self.types else ""
        client = ClientProtocol(parse_uri(f"ws://127.0.0.1:{self.port}/ws{query}"), max_size=None)
        client.send_request(client.connect())
        try:
            await self._flush(client, writer)
            while client.state is not OPEN:
                client.receive_data(await reader.read(65536))
                client.events_received()
                assert client.handshake_exc is None, client.handshake_exc
            connected.release()
            await (published if self.slow else go).wait()  # slow: not while the burst goes out
            last_ping = 0.0
            # A bound on the whole read, and asyncio.timeout rather than wait_for: on 3.11 a
            # wait_for whose read completes as it is cancelled swallows the cancellation, and
            # with pings keeping data coming the loop would then never end.
            deadline = loop.time() + READ_BOUND_S
            while len(self.received) < self.expected and not self.errors:
                if loop.time() > deadline:
                    self.errors.append(f"only {len(self.received)} events in {READ_BOUND_S} s")
                    break
                async with asyncio.timeout(20):
                    data = await reader.read(1 << 20)
                if not data:
                    self.errors.append("connection closed")
                    break
                client.receive_data(data)
                if client.parser_exc is not None:
                    self.errors.append(f"bad frame: {client.parser_exc!r}")
                    break
                self._check(client.events_received())
                if time.monotonic() - last_ping > 0.25:  # uvicorn answers with pongs
                    client.send_ping(b"ping")
                    last_ping = time.monotonic()
                await self._flush(client, writer)  # our pings, our pongs to its pings
        finally:
            writer.close()

    def _check(self, events: list[Any]) -> None:
        for frame in events:
            if not isinstance(frame, Frame) or frame.opcode is not Opcode.TEXT:
                continue
            try:
                event = json.loads(frame.data)
            except ValueError as exc:  # a frame with a piece of another inside
                self.errors.append(f"not an event: {exc}")
                return
            type_, seq, pad = event["type"], event["payload"]["seq"], event["payload"]["pad"]
            previous = [s for t, s in self.received if t == type_]
            if seq != len(previous):
                self.errors.append(f"{type_} {seq} after {previous[-1:]}")
            if pad != pad_of(type_, seq):
                self.errors.append(f"{type_} {seq}: wrong payload")
            self.received.append((type_, seq))

    @staticmethod
    async def _flush(client: ClientProtocol, writer: asyncio.StreamWriter) -> None:
        for data in client.data_to_send():
            if data:
                writer.write(data)
        await writer.drain()


async def publish_burst(base_url: str) -> None:
    """Three publishers at once, one per type, each in order as fast as the service takes it."""

    async def publish(type_: str) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=20) as http:
            for seq in range(EXPECTED[type_]):
                body = {"type": type_, "payload": {"seq": seq, "pad": pad_of(type_, seq)}}
                (await http.post("/events", json=body)).raise_for_status()

    await asyncio.gather(*(publish(t) for t in EXPECTED))


def in_subscription(types: str | None) -> Callable[[tuple[str, int]], bool]:
    wanted = set(types.split(",")) if types else set(EXPECTED)
    return lambda item: item[0] in wanted


@BOTH_FANOUTS
@pytest.mark.parametrize("read_handler", ["off", "on"])
async def test_a_burst_reaches_200_subscribers_whole_and_in_order(
    launch: Launch, read_handler: str
) -> None:
    """Mixed sizes (across the 126 and 65536 length encodings), three publishers at once,
    keepalive pings and pongs on the same connections, 10 subscribers that stop reading for
    the burst: every frame is whole, every subscriber gets every event of its types, in the
    order the hub published them (the same for all), and nobody is dropped."""
    service = launch(
        READ_HANDLER=read_handler,
        PUBLISH_RATE="0",
        QUEUE_SIZE="1024",
        EVENT_MAX_BYTES="262144",
        SLOW_CONSUMER_BYTES="3145728",  # the kernel takes about a third: the rest waits in ours
        FANOUT_WINDOW="0.005",
        WS_PING_INTERVAL="0.25",
        WS_PING_TIMEOUT="off",
        # This test is about frames, not the request deadline: on a loaded machine a publisher's
        # request may wait in the kernel longer than the default 10 s and be cut.
        HANDSHAKE_TIMEOUT="120",
    )
    clients = [
        BurstClient(service.port, SUBSCRIPTIONS[i % len(SUBSCRIPTIONS)], slow=i < SLOW)
        for i in range(SUBSCRIBERS)
    ]
    connected = asyncio.Semaphore(0)
    go, published = asyncio.Event(), asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        for client in clients:
            tasks.create_task(client.run(connected, go, published))
        for _ in clients:
            await asyncio.wait_for(connected.acquire(), 30)
        await wait_until(
            lambda: service.stats()["connections"] == SUBSCRIBERS, timeout_s=20, what="all in"
        )
        go.set()
        await publish_burst(service.base_url)
        published.set()
    for client in clients:
        assert client.errors == [], (client.types, client.slow, client.errors[:5])
        assert len(client.received) == client.expected
    # One publish order for everyone: each subscriber's stream is it, filtered by its types.
    everything = next(c for c in clients if c.types is None and not c.slow).received
    for client in clients:
        assert client.received == list(filter(in_subscription(client.types), everything))
    stats = service.stats()
    assert stats["fanout"] == service.settings.fanout
    assert (stats["events_dropped"], stats["slow_consumers"]) == (0, 0)
