"""Session life cycle: registration, clean-up, shutdown, bad subscriptions, on real uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import BOTH_FANOUTS, Launch
from tests.utils import eventually, kernel_server_sockets, wait_until

pytestmark = [pytest.mark.timeout(60), BOTH_FANOUTS]


def client(url: str, **kwargs: object) -> connect:
    """A websockets client with the lab's defaults: no keepalive, no compression, no proxy."""
    return connect(url, ping_interval=None, compression=None, proxy=None, **kwargs)  # type: ignore[arg-type]


async def open_clients(url: str, count: int) -> list[ClientConnection]:
    """Open ``count`` connections."""
    return list(await asyncio.gather(*(client(url, close_timeout=0.5) for _ in range(count))))


async def test_fixed_reader_empties_registry_and_tasks_when_clients_leave(launch: Launch) -> None:
    """READ_HANDLER on: after every client leaves, no session and no extra task is left."""
    service = launch(READ_HANDLER="on")
    baseline_tasks = service.stats()["asyncio_tasks"]
    clients = await open_clients(service.ws_url, 20)
    await wait_until(lambda: service.stats()["connections"] == 20, timeout_s=10, what="20 sessions")
    assert service.stats()["asyncio_tasks"] >= baseline_tasks + 20
    await asyncio.gather(*(ws.close() for ws in clients))

    def cleaned_up() -> bool:
        stats = service.stats()
        return stats["connections"] == 0 and stats["asyncio_tasks"] == baseline_tasks

    await wait_until(cleaned_up, timeout_s=10, what="registry empty and tasks at baseline")


async def test_missing_reader_keeps_dead_sessions_until_a_send_fails(launch: Launch) -> None:
    """READ_HANDLER off: clients that left stay registered; only sending events removes them."""
    service = launch(READ_HANDLER="off")
    clients = await open_clients(service.ws_url, 5)
    for ws in clients:
        await ws.send(b"x" * 1024)  # one unread message pauses uvicorn's reading
    await asyncio.gather(*(ws.close() for ws in clients))

    def peers_gone() -> bool:
        # Closed by uvicorn (gone) or waiting for the app to close it (CLOSE_WAIT).
        return all(s.state == "CLOSE_WAIT" for s in kernel_server_sockets(service.port))

    await wait_until(peers_gone, timeout_s=10, what="the kernel saw every client leave")
    assert service.stats()["connections"] == 5  # the service has not noticed

    def no_sessions() -> bool:
        return service.stats()["connections"] == 0

    for _ in range(5):
        httpx.post(f"{service.base_url}/events", json={"type": "tick"}).raise_for_status()
        if await eventually(no_sessions, timeout_s=1):
            break
    assert no_sessions(), "sessions still registered after 5 events"
    assert service.stats()["connections_closed"] == 5


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("read_handler", ["off", "on"])
async def test_stop_signal_closes_sessions_with_1001_and_exits_quickly(
    launch: Launch, read_handler: str, signum: signal.Signals
) -> None:
    """SIGTERM or Ctrl-C stops the service within a few seconds, closing sessions with 1001."""
    service = launch(READ_HANDLER=read_handler)
    clients = await open_clients(service.ws_url, 3)
    for ws in clients:
        await ws.send(b"x" * 1024)
    await wait_until(lambda: service.stats()["connections"] == 3, timeout_s=10, what="3 sessions")
    started = time.monotonic()
    service.signal(signum)
    codes = []
    for ws in clients:
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)
        codes.append(ws.close_code)
    assert codes == [1001, 1001, 1001]
    # uvicorn re-raises the signal it caught once shutdown is done: exit by it, not a crash.
    assert service.wait(timeout_s=5) in (0, -signum)
    assert time.monotonic() - started < 5


async def test_invalid_subscription_is_closed_with_1008(launch: Launch) -> None:
    """An invalid ``events`` parameter gets close code 1008 and a reason, not a crash."""
    service = launch()
    async with client(f"{service.ws_url}?events=bad%20type!") as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)
    assert ws.close_code == 1008
    assert "invalid event type" in (ws.close_reason or "")
    assert service.stats()["connections"] == 0


async def test_subscribers_get_only_their_types_from_post_events(launch: Launch) -> None:
    """``POST /events`` reaches subscribers of its type and wildcard subscribers only."""
    service = launch()
    async with (
        client(f"{service.ws_url}?events=a") as only_a,
        client(f"{service.ws_url}?events=b,c") as b_and_c,
        client(service.ws_url) as every,
    ):
        await wait_until(lambda: service.stats()["connections"] == 3, timeout_s=10, what="3 subs")
        for type_ in ("a", "b"):
            response = httpx.post(f"{service.base_url}/events", json={"type": type_, "payload": 1})
            assert response.status_code == 202
        assert [await recv_type(only_a)] == ["a"]
        assert [await recv_type(b_and_c)] == ["b"]
        assert [await recv_type(every), await recv_type(every)] == ["a", "b"]
    bad = httpx.post(f"{service.base_url}/events", json={"type": "no spaces allowed"})
    assert bad.status_code == 422


async def recv_type(ws: ClientConnection) -> str:
    """The type of the next event."""
    event = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
    assert set(event) >= {"type", "id", "ts", "payload"}
    return str(event["type"])


def open_stalled_subscriber(port: int) -> socket.socket:
    """A subscriber that completes the handshake and then never reads: its window closes."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


@pytest.mark.parametrize("read_handler", ["off", "on"])
async def test_shutdown_is_bounded_when_a_writer_is_stuck_in_send(
    launch: Launch, read_handler: str
) -> None:
    """A client that stops reading blocks its writer in send(); SIGTERM still exits in seconds.

    No close frame can reach that client (its window is shut), so it sees the TCP connection
    drop instead of 1001; the service gives the session 2 s, then uvicorn 3 s, then stops.
    """
    # A budget past what the test sends, so that the writer stays stuck instead of being
    # closed as a slow consumer (tests/event_service/test_limits.py covers that).
    service = launch(
        READ_HANDLER=read_handler, EVENT_MAX_BYTES="262144", SLOW_CONSUMER_BYTES="8388608"
    )
    stalled = open_stalled_subscriber(service.port)
    try:
        await wait_until(lambda: service.stats()["connections"] == 1, timeout_s=10, what="1 sub")
        big = {"type": "bulk", "payload": "x" * 200_000}
        for _ in range(30):  # 6 MB: more than the kernel and uvicorn buffer for one socket
            httpx.post(f"{service.base_url}/events", json=big).raise_for_status()

        def writer_blocked() -> bool:
            sockets = kernel_server_sockets(service.port)
            return any(s.send_q_bytes > 0 for s in sockets) and (
                service.stats()["events_delivered"] < 30
            )

        await wait_until(writer_blocked, timeout_s=10, what="the writer blocks in send")
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.wait(timeout_s=10) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 8
    finally:
        stalled.close()
