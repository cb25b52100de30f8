"""The guards below ASGI: head limits, the request deadline, message size, on real uvicorn.

Every HTTP implementation (httptools, what uvicorn[standard] picks, and h11) and every
WebSocket implementation must answer an oversized head with 414/431 and close, and close a
request that trickles in once ``HANDSHAKE_TIMEOUT`` has passed.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import random
import socket
import time
from typing import Any

import httpx
import pytest
from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from event_service.uvicorn_guards import (
    VERIFIED_UVICORN,
    is_verified_uvicorn,
    plain_response,
    ws_protocol,
)
from sockscope.diag import DiagSocket
from sockscope.tcp import TCP_INFO_MIN_BYTES, parse_tcp_info
from tests.conftest import BOTH_FANOUTS, Launch
from tests.utils import kernel_server_sockets, wait_until

pytestmark = pytest.mark.timeout(60)

HTTP_IMPLS = ["httptools", "h11"]
WS_IMPLS = ["websockets-sansio", "wsproto", "websockets"]
KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
UPGRADE = b"Upgrade: websocket\r\nConnection: Upgrade\r\n" + KEY
HANDSHAKE = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n" + UPGRADE + b"\r\n"


def test_installed_uvicorn_is_in_the_verified_range() -> None:
    """The guards use uvicorn internals: a uvicorn outside the tested range fails here first."""
    version = importlib.metadata.version("uvicorn")
    low, high = (".".join(map(str, v)) for v in VERIFIED_UVICORN)
    assert is_verified_uvicorn(version), f"uvicorn {version}: verified >={low}, <{high} only"


@pytest.mark.parametrize(
    ("version", "verified"),
    [("0.54.0", True), ("0.54.7", True), ("0.53.2", False), ("0.55.0", False), ("1.0", False)],
)
def test_verified_range_is_compared_by_release(version: str, verified: bool) -> None:
    assert is_verified_uvicorn(version) is verified


async def exchange(port: int, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send ``data`` on a new connection; everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()


@pytest.mark.parametrize("ws_impl", WS_IMPLS)
@pytest.mark.parametrize("http_impl", HTTP_IMPLS)
async def test_oversized_heads_get_414_or_431_and_the_connection_closes(
    launch: Launch, http_impl: str, ws_impl: str
) -> None:
    """Request line over 8 KiB: 414; a header line over 8 KiB or a head over 16 KiB: 431.

    For handshakes and plain HTTP alike, and the connection is closed (the read ends).
    """
    service = launch(HTTP_IMPL=http_impl, WS_IMPL=ws_impl)
    long_target = b"/ws?pad=" + b"a" * 9000
    cases = {
        "handshake, long request line": (
            b"GET " + long_target + b" HTTP/1.1\r\nHost: x\r\n" + UPGRADE + b"\r\n",
            b"HTTP/1.1 414 ",
        ),
        "handshake, long header": (
            b"GET /ws HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 9000 + b"\r\n" + UPGRADE + b"\r\n",
            b"HTTP/1.1 431 ",
        ),
        "handshake, large head": (
            b"GET /ws HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 4000) for i in range(5))
            + UPGRADE
            + b"\r\n",
            b"HTTP/1.1 431 ",
        ),
        "http, long request line": (
            b"GET /healthz?pad=" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HTTP/1.1 414 ",
        ),
        "http, long header": (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n",
            b"HTTP/1.1 431 ",
        ),
        "http garbage": (b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 400 "),
    }
    for name, (request, expected) in cases.items():
        reply = await exchange(service.port, request)
        assert reply.startswith(expected), f"{name}: {reply[:60]!r}"
        assert b"connection: close" in reply.lower(), name
    # A normal handshake right at the limits still works.
    within = b"GET /ws?pad=" + b"a" * 8000 + b" HTTP/1.1\r\nHost: x\r\n" + UPGRADE + b"\r\n"
    assert (await read_status(service.port, within)).startswith(b"HTTP/1.1 101 ")
    assert httpx.get(f"{service.base_url}/healthz").status_code == 200


async def read_status(port: int, request: bytes) -> bytes:
    """The status line the server answers ``request`` with (the connection stays open)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


async def trickle(port: int, data: bytes, rng: random.Random) -> tuple[bytes, float]:
    """Send ``data`` a byte at a time, 0.2-1 s apart, until the server answers and closes.

    Returns what it answered and how long after connecting the connection was closed.
    """
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send_slowly() -> None:
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(rng.uniform(0.2, 1.0))

    sender = asyncio.create_task(send_slowly())
    try:
        reply = await asyncio.wait_for(reader.read(), 15)
        return reply, time.monotonic() - started
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()


@pytest.mark.parametrize("http_impl", HTTP_IMPLS)
async def test_slowloris_handshakes_are_closed_after_the_timeout(
    launch: Launch, http_impl: str
) -> None:
    """20 handshakes at 1 byte per 0.2-1 s get 408 and are closed at HANDSHAKE_TIMEOUT (2 s).

    Meanwhile a normal client connects and receives an event.
    """
    timeout_s = 2.0
    service = launch(HTTP_IMPL=http_impl, HANDSHAKE_TIMEOUT=str(timeout_s))
    rng = random.Random(8)
    slow = [asyncio.create_task(trickle(service.port, HANDSHAKE, rng)) for _ in range(20)]
    async with connect(service.ws_url, ping_interval=None, compression=None, proxy=None) as ws:
        response = httpx.post(f"{service.base_url}/events", json={"type": "a"})
        assert response.status_code == 202
        assert '"type":"a"' in str(await asyncio.wait_for(ws.recv(), 5)).replace(" ", "")
    results = await asyncio.gather(*slow)
    for reply, closed_after_s in results:
        assert reply.startswith(b"HTTP/1.1 408 "), reply[:60]
        assert timeout_s - 0.1 < closed_after_s < timeout_s + 1.5
    assert httpx.get(f"{service.base_url}/healthz").status_code == 200


@pytest.mark.parametrize("http_impl", HTTP_IMPLS)
async def test_deadline_covers_silent_connections_and_later_keep_alive_requests(
    launch: Launch, http_impl: str
) -> None:
    """A connection that sends nothing, or whose second request trickles, gets 408 in time.

    A completed first request is not cut: the deadline starts again with the next request.
    """
    timeout_s = 1.0
    service = launch(HTTP_IMPL=http_impl, HANDSHAKE_TIMEOUT=str(timeout_s))
    started = time.monotonic()
    silent = await exchange(service.port, b"", timeout_s=5)
    assert silent.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < timeout_s + 1.5

    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
                     .split(b":")[1])  # fmt: skip
        await reader.readexactly(length)
        writer.write(b"GET /hea")  # ... and never the rest
        started = time.monotonic()
        rest = await asyncio.wait_for(reader.read(), 5)
        assert rest.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < timeout_s + 1.5
    finally:
        writer.close()


@pytest.mark.parametrize("ws_impl", WS_IMPLS)
async def test_client_message_over_ws_max_size_is_closed_with_1009(
    launch: Launch, ws_impl: str
) -> None:
    """A client message past WS_MAX_SIZE ends the connection with 1009; one at it passes."""
    service = launch(WS_IMPL=ws_impl, WS_MAX_SIZE="4096", READ_HANDLER="on")
    async with connect(service.ws_url, ping_interval=None, compression=None, proxy=None) as ws:
        await ws.send(b"x" * 4096)
        await wait_until(
            lambda: service.stats()["client_bytes"] == 4096, timeout_s=5, what="4096 bytes read"
        )
        await ws.send(b"x" * 4097)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1009
    assert service.stats()["client_messages"] == 1


class StubTransport:
    """Just enough of an asyncio transport to drive a uvicorn protocol by hand."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False
        self.eof_written = False

    def write(self, data: bytes) -> None:
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def feed_sansio(protocol_class: type, request: bytes) -> StubTransport:
    async def app(scope: object, receive: object, send: object) -> None: ...

    protocol = protocol_class(config=Config(app), server_state=ServerState(), app_state={})
    transport = StubTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    return transport


# A header line of 8193 bytes with its CRLF: one past websockets' limit (the HTTP layer's
# own limit keeps such lines away from it; this drives the protocol directly).
LINE_TOO_LONG_FOR_WEBSOCKETS = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nx: " + b"v" * 8188 + b"\r\n" + UPGRADE + b"\r\n"
)


async def test_sansio_protocol_writes_the_refusal_websockets_queued() -> None:
    """Our websockets-sansio protocol writes websockets' 431 and closes the connection."""
    transport = await feed_sansio(ws_protocol("websockets-sansio"), LINE_TOO_LONG_FOR_WEBSOCKETS)  # type: ignore[arg-type]
    assert transport.written.startswith(b"HTTP/1.1 431 ")
    assert transport.closed


async def test_sansio_protocol_answers_400_to_a_request_websockets_cannot_parse() -> None:
    """Where websockets queues no answer (only its EOF), the connection still gets one."""
    request = b"GET /ws HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n" + UPGRADE + b"\r\n"
    transport = await feed_sansio(ws_protocol("websockets-sansio"), request)  # type: ignore[arg-type]
    assert transport.written == plain_response(400, "invalid WebSocket handshake")
    assert transport.closed


async def test_upstream_sansio_protocol_still_leaves_the_refusal_unwritten() -> None:
    """The upstream bug the workaround is for. When this fails, uvicorn writes the refusal
    itself: drop ``GuardedWebSocketsSansIO`` from event_service/uvicorn_guards.py."""
    transport = await feed_sansio(WebSocketsSansIOProtocol, LINE_TOO_LONG_FOR_WEBSOCKETS)
    assert transport.written == b"" and not transport.closed


class LateReader:
    """A WebSocket client on a bare socket that reads only when told to: a busy client.

    It talks websockets' sans-I/O protocol, so what it finally reads is parsed as the
    swarm's clients parse it.
    """

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.protocol = protocol
        # The connection's (server end, client end), as the kernel names them.
        self.pair: tuple[tuple[str, int], tuple[str, int]] = (("", 0), ("", 0))

    @classmethod
    async def connect(cls, url: str) -> LateReader:
        """Connect and complete the handshake, then stop reading."""
        loop = asyncio.get_running_loop()
        uri = parse_uri(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        client = cls(sock, ClientProtocol(uri, max_size=None))
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (uri.host, uri.port)), 5)
            client.pair = sock.getpeername(), sock.getsockname()
            client.protocol.send_request(client.protocol.connect())
            await client.flush()
            while not any(isinstance(e, Response) for e in client.protocol.events_received()):
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
                assert data, "the server closed during the handshake"
                client.protocol.receive_data(data)
            assert client.protocol.handshake_exc is None
        except BaseException:
            sock.close()
            raise
        return client

    @property
    def tcp_state(self) -> str:
        """This socket's TCP state, from the kernel (``TCP_INFO``)."""
        raw = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_MIN_BYTES)
        return parse_tcp_info(raw).state

    async def send_binary(self, data: bytes) -> None:
        """Send one data message (raises if the kernel says the connection was reset)."""
        self.protocol.send_binary(data)
        await self.flush()

    async def flush(self) -> None:
        """Write what the protocol queued; its EOF as a half-close."""
        loop = asyncio.get_running_loop()
        for data in self.protocol.data_to_send():
            if data:
                await asyncio.wait_for(loop.sock_sendall(self.sock, data), 5)
            else:
                self.sock.shutdown(socket.SHUT_WR)

    async def read_to_eof(self) -> None:
        """Read (at last) everything the server sent, until its EOF."""
        loop = asyncio.get_running_loop()
        while data := await asyncio.wait_for(loop.sock_recv(self.sock, 65536), 5):
            self.protocol.receive_data(data)
        self.protocol.receive_eof()

    def close(self) -> None:
        self.sock.close()


def server_end(service_port: int, client: LateReader) -> list[DiagSocket]:
    """The service's socket of ``client``'s connection, by its exact address pair."""
    server, local = client.pair
    return [s for s in kernel_server_sockets(service_port, server[0]) if s.remote == local]


@BOTH_FANOUTS
@pytest.mark.timeout(30)
async def test_keepalive_timeout_sends_fin_after_1011_and_drains_for_a_late_reader(
    launch: Launch,
) -> None:
    """READ_HANDLER off, keepalive 1 s / 1 s: the close frame is followed by a FIN, not a RST.

    uvicorn 0.54 closed the socket over the unread client messages in its receive queue:
    Linux then sends a RST, and a client that writes before it has read the close frame
    gets ECONNRESET and drops the frame unread (the swarm recorded 1006 on a busy host).
    Here the client keeps writing and reads only once the server has closed its side:
    the connection must not be reset, the frame must say 1011, and the server must read
    and drop what the client sent (the app still reads nothing) and close on the client's EOF.
    """
    service = launch(READ_HANDLER="off", WS_PING_INTERVAL="1", WS_PING_TIMEOUT="1")
    client = await LateReader.connect(service.ws_url)
    try:
        for _ in range(4):  # the first waits for the app, which never takes it; the rest
            await client.send_binary(random.randbytes(4096))  # stay in the kernel
        await wait_until(
            lambda: sum(s.recv_q_bytes for s in server_end(service.port, client)) > 4096,
            timeout_s=5,
            what="the client's messages wait unread in the server's receive queue",
        )
        await wait_until(
            lambda: client.tcp_state != "ESTABLISHED", timeout_s=10, what="the server closes"
        )
        assert client.tcp_state == "CLOSE_WAIT"  # a FIN came; after a RST it is CLOSE
        await client.send_binary(random.randbytes(4096))  # as the swarm's ticker does
        await client.read_to_eof()
        close = client.protocol.close_rcvd
        assert close is not None and (close.code, close.reason) == (
            1011,
            "keepalive ping timeout",
        )
        await wait_until(
            lambda: all(s.recv_q_bytes == 0 for s in server_end(service.port, client)),
            timeout_s=5,
            what="the server drained its receive queue",
        )
        await client.flush()  # our close reply, then EOF: the server closes at once
        await wait_until(
            lambda: not server_end(service.port, client), timeout_s=5, what="the server closed"
        )
        assert service.stats()["client_messages"] == 0
    finally:
        client.close()


# uvicorn's close_timeout: how long a failed connection may take to send its EOF.
CLOSE_TIMEOUT_S = 10.0


@pytest.mark.timeout(40)
async def test_keepalive_timeout_aborts_a_client_that_never_closes(launch: Launch) -> None:
    """A client that never reads nor closes is dropped with a RST after the close timeout:
    the drain is bounded, no socket outlives it."""
    service = launch(READ_HANDLER="off", WS_PING_INTERVAL="1", WS_PING_TIMEOUT="1")
    client = await LateReader.connect(service.ws_url)
    try:
        await client.send_binary(random.randbytes(4096))
        await wait_until(
            lambda: client.tcp_state != "ESTABLISHED", timeout_s=10, what="the server closes"
        )
        half_closed_at = time.monotonic()
        assert client.tcp_state == "CLOSE_WAIT"
        await wait_until(
            lambda: client.tcp_state == "CLOSE",
            timeout_s=CLOSE_TIMEOUT_S + 10,
            what="the server aborts the connection",
        )
        assert time.monotonic() - half_closed_at > CLOSE_TIMEOUT_S - 1
        assert not server_end(service.port, client)
    finally:
        client.close()


async def accepted_sansio(protocol_class: type) -> tuple[Any, StubTransport]:
    """A websockets-sansio protocol whose handshake the app accepted, on a stub transport,
    its ping timer stopped (the tests call the pong timer's callback themselves)."""

    async def app(scope: object, receive: object, send: object) -> None: ...

    protocol = protocol_class(config=Config(app), server_state=ServerState(), app_state={})
    transport = StubTransport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE)
    await protocol.send({"type": "websocket.accept"})
    protocol.stop_keepalive()
    transport.written = b""
    return protocol, transport


async def finish_sansio(protocol: Any) -> None:
    """Lose the stub connection and let the protocol's ASGI task end."""
    protocol.connection_lost(None)
    await asyncio.gather(*protocol.tasks)


KEEPALIVE_CLOSE = Frame(Opcode.CLOSE, Close(1011, "keepalive ping timeout").serialize())


async def test_sansio_protocol_half_closes_after_a_keepalive_timeout() -> None:
    """Our protocol writes the 1011 frame, then EOF, keeps the transport open, and tells the
    app at once that the client is gone (its receive and its send)."""
    protocol, transport = await accepted_sansio(ws_protocol("websockets-sansio"))  # type: ignore[arg-type]
    try:
        protocol.keepalive_timeout()
        assert transport.written == KEEPALIVE_CLOSE.serialize(mask=False)
        assert transport.eof_written and not transport.closed
        assert (await protocol.receive())["type"] == "websocket.connect"
        assert await protocol.receive() == {
            "type": "websocket.disconnect",
            "code": 1011,
            "reason": "keepalive ping timeout",
        }
        with pytest.raises(ClientDisconnected):
            await protocol.send({"type": "websocket.send", "text": "event"})
    finally:
        await finish_sansio(protocol)


async def test_upstream_sansio_protocol_still_closes_at_once_on_a_keepalive_timeout() -> None:
    """The upstream behaviour the override is for. When this fails, uvicorn half-closes
    itself: drop ``GuardedWebSocketsSansIO.keepalive_timeout`` (and check the test above)."""
    protocol, transport = await accepted_sansio(WebSocketsSansIOProtocol)
    try:
        protocol.keepalive_timeout()
        assert transport.written == KEEPALIVE_CLOSE.serialize(mask=False)
        assert transport.closed and not transport.eof_written
    finally:
        await finish_sansio(protocol)
