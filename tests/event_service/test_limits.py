"""Limits of the service against real clients: slow consumers, the session cap, guarded endpoints.

Real uvicorn child processes on real sockets. A server-side socket is identified by its exact
address pair (``ss`` with both ends given), never by the port number alone.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Opcode
from websockets.uri import parse_uri

from event_service.hub import SLOW_CODE
from tests.conftest import BOTH_FANOUTS, Launch
from tests.utils import wait_until

pytestmark = pytest.mark.timeout(90)

TOKEN = "s3cret-token-for-tests"


class RawSubscriber:
    """A WebSocket client on a blocking socket that reads only when told to.

    Its receive buffer is small, so that the server's send path fills after a few KiB.
    """

    def __init__(self, port: int, *, rcvbuf_bytes: int = 4096) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.address_before_close = self.address
        self.protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/ws"), max_size=None)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.handshake_exc is None and not self.protocol.events_received():
            self.protocol.receive_data(self.sock.recv(65536))
        assert self.protocol.handshake_exc is None

    @property
    def address(self) -> tuple[str, int]:
        """The client's own (address, port)."""
        host, port = self.sock.getsockname()
        return host, port

    def read_until_closed(self, timeout_s: float) -> tuple[int, int | None]:
        """Read everything until the connection ends: (data frames, close code or None)."""
        frames = 0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                data = b""
            if not data:
                self.protocol.receive_eof()
            else:
                self.protocol.receive_data(data)
            for frame in self.protocol.events_received():
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                    frames += 1
            self._flush()
            if self.protocol.close_rcvd is not None:
                return frames, self.protocol.close_rcvd.code
            if not data:
                return frames, None
        raise AssertionError("the server did not close the connection in time")

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.address_before_close = self.address
        self.sock.close()

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)


def server_socket_exists(port: int, client: tuple[str, int]) -> bool:
    """Whether the kernel holds the server-side socket of this exact connection in a state
    that can hold buffers (TIME-WAIT, the normal end of a close the server began, holds none)."""
    src, dst = f"127.0.0.1:{port}", f"{client[0]}:{client[1]}"
    out = subprocess.run(
        ["ss", "-tnH", "state", "all", "src", src, "dst", dst],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    return any(line.split()[0] != "TIME-WAIT" for line in out.splitlines() if line.strip())


@BOTH_FANOUTS
@pytest.mark.parametrize("read_handler", ["off", "on"])
async def test_a_subscriber_that_stops_reading_is_closed_past_its_budget(
    launch: Launch, read_handler: str
) -> None:
    """Past SLOW_CONSUMER_BYTES the session is closed with 4008 and its buffers are freed,
    while the subscribers that read get every event without delay."""
    service = launch(READ_HANDLER=read_handler, SLOW_CONSUMER_BYTES="262144", PUBLISH_RATE="0")
    stalled = [RawSubscriber(service.port) for _ in range(3)]
    latencies: list[float] = []
    received = [0] * 10
    events = 200

    async def read(index: int) -> None:
        async with connect(service.ws_url, ping_interval=None, compression=None, proxy=None) as ws:
            ready.release()
            while received[index] < events:
                event = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
                latencies.append(time.time() - event["ts"])
                received[index] += 1

    ready = asyncio.Semaphore(0)
    try:
        async with asyncio.TaskGroup() as tasks:
            for index in range(len(received)):
                tasks.create_task(read(index))
            for _ in received:
                await ready.acquire()
            payload = "x" * 8000
            async with httpx.AsyncClient(base_url=service.base_url) as http:
                for _ in range(events):  # 1.6 MB for each subscriber
                    post = await http.post("/events", json={"type": "bulk", "payload": payload})
                    post.raise_for_status()
        await wait_until(
            lambda: service.stats()["slow_consumers"] == 3, timeout_s=10, what="3 slow consumers"
        )
        for client in stalled:  # reading again in time, each one learns why it was closed
            frames, code = client.read_until_closed(timeout_s=20)
            client.close()
            assert code == SLOW_CODE
            assert 0 < frames < events
        stats = service.stats()
        assert received == [events] * len(received)
        assert stats["events_dropped"] >= 3  # only the stalled ones missed events
        assert sorted(latencies)[int(len(latencies) * 0.99)] < 1.0
        for client in stalled:
            address = client.address_before_close
            await wait_until(
                lambda a=address: not server_socket_exists(service.port, a),  # type: ignore[misc]
                timeout_s=10,
                what="the slow consumer's server socket is gone",
            )
    finally:
        for client in stalled:
            client.close()


@BOTH_FANOUTS
async def test_a_subscriber_that_never_reads_again_is_dropped_with_its_buffers(
    launch: Launch,
) -> None:
    """A slow consumer that does not take its close frame within the grace is aborted (RST):
    no server socket of it remains in the kernel, in any state."""
    service = launch(READ_HANDLER="off", SLOW_CONSUMER_BYTES="131072", PUBLISH_RATE="0")
    client = RawSubscriber(service.port)
    address = client.address
    try:
        await wait_until(lambda: service.stats()["connections"] == 1, timeout_s=10, what="1 sub")
        payload = "x" * 8000
        async with httpx.AsyncClient(base_url=service.base_url) as http:
            for _ in range(100):
                (
                    await http.post("/events", json={"type": "t", "payload": payload})
                ).raise_for_status()
        await wait_until(
            lambda: service.stats()["slow_consumers"] == 1, timeout_s=10, what="a slow consumer"
        )
        await wait_until(
            lambda: not server_socket_exists(service.port, address),
            timeout_s=15,
            what="the aborted consumer's server socket is gone",
        )
        assert service.stats()["connections"] == 0
    finally:
        client.close()


@pytest.mark.parametrize("ws_impl", ["websockets-sansio", "websockets", "wsproto"])
async def test_at_the_session_cap_a_new_client_is_refused_and_health_answers(
    launch: Launch, ws_impl: str
) -> None:
    """MAX_SESSIONS sessions are served; the next handshake gets an HTTP 503 with
    Retry-After, is counted, and logged."""
    service = launch(WS_IMPL=ws_impl, MAX_SESSIONS="5", READ_HANDLER="on")
    opts = {"ping_interval": None, "compression": None, "proxy": None}
    sessions = [await connect(service.ws_url, **opts) for _ in range(5)]
    try:
        with pytest.raises(InvalidStatus) as refused:
            await connect(service.ws_url, **opts)
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["retry-after"] == "5"
        assert httpx.get(f"{service.base_url}/healthz", timeout=5).status_code == 200
        stats = service.stats()
        assert (stats["sessions_refused"], stats["max_sessions"]) == (1, 5)
        log = service.log_path.read_text()
        assert "session refused status=" in log
        assert "ERROR" not in log  # a denial is an answer, not an unfinished handshake
        await sessions.pop().close()
        await wait_until(lambda: service.stats()["connections"] == 4, timeout_s=10, what="4 left")
        sessions.append(await connect(service.ws_url, **opts))
    finally:
        for ws in sessions:
            await ws.close()


@BOTH_FANOUTS
async def test_a_leaky_client_cannot_exhaust_the_fds(launch: Launch) -> None:
    """Under a 256-fd limit, a client that opens 300 sessions and never closes them gets the
    derived cap and then 503s, while /healthz and /stats keep answering; refusals are logged
    a bounded number of times, not once each."""
    service = launch(fd_limit=256, READ_HANDLER="off")
    cap = service.stats()["max_sessions"]
    assert 150 <= cap <= 224  # the fd limit less a reserve for everything else
    opts = {"ping_interval": None, "compression": None, "proxy": None, "open_timeout": 10}
    held = []
    statuses: list[int] = []
    try:
        for _ in range(300):
            try:
                held.append(await connect(service.ws_url, **opts))
            except InvalidStatus as exc:
                statuses.append(exc.response.status_code)
        assert len(held) == cap
        assert statuses == [503] * (300 - cap)
        for _ in range(15):
            assert httpx.get(f"{service.base_url}/healthz", timeout=5).status_code == 200
        stats = service.stats()
        assert (stats["connections"], stats["sessions_refused"]) == (cap, 300 - cap)
        assert stats["open_fds"] < 256
        log = service.log_path.read_text()
        assert 1 <= log.count("session refused") <= 3
        assert "ERROR" not in log
    finally:
        for ws in held:
            await ws.close()


async def test_admin_token_guards_publish_stats_and_metrics_but_not_health(
    launch: Launch,
) -> None:
    service = launch(ADMIN_TOKEN=TOKEN)
    base = service.base_url
    auth = {"Authorization": f"Bearer {TOKEN}"}
    wrong = {"Authorization": "Bearer not-the-token-at-all"}
    for method, path in [("POST", "/events"), ("GET", "/stats"), ("GET", "/metrics")]:
        body = {"type": "t"} if method == "POST" else None
        for headers in ({}, wrong):
            response = httpx.request(method, base + path, json=body, headers=headers, timeout=5)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        allowed = httpx.request(method, base + path, json=body, headers=auth, timeout=5)
        assert allowed.status_code == (202 if method == "POST" else 200), path
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    assert TOKEN not in service.log_path.read_text()


@BOTH_FANOUTS
async def test_ws_token_and_origin_allow_list(launch: Launch) -> None:
    service = launch(WS_TOKEN=TOKEN, WS_ORIGINS="https://app.example.com")
    opts = {"ping_interval": None, "compression": None, "proxy": None}
    with pytest.raises(InvalidStatus) as no_token:
        await connect(service.ws_url, **opts)
    assert no_token.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as bad_origin:
        await connect(f"{service.ws_url}?token={TOKEN}", origin="https://evil.example.com", **opts)
    assert bad_origin.value.response.status_code == 403
    by_query = await connect(f"{service.ws_url}?token={TOKEN}", **opts)
    by_header = await connect(
        service.ws_url,
        origin="https://app.example.com",
        additional_headers={"Authorization": f"Bearer {TOKEN}"},
        **opts,
    )
    await by_query.close()
    await by_header.close()
    assert service.stats()["sessions_refused"] == 2


async def test_publish_refuses_oversized_bodies_and_events(launch: Launch) -> None:
    service = launch(EVENT_MAX_BYTES="4096", PUBLISH_RATE="0")
    url = f"{service.base_url}/events"
    big = {"type": "t", "payload": "x" * 5000}
    assert httpx.post(url, json=big, timeout=5).status_code == 413

    def chunks():  # no Content-Length: the limit holds on the stream too
        yield b'{"type": "t", "payload": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    assert httpx.post(url, content=chunks(), timeout=5).status_code == 413
    # Under the body limit, but every character escaped to six in the event's JSON.
    escaped = {"type": "t", "payload": "\u00e9" * 1500}
    assert httpx.post(url, json=escaped, timeout=5).status_code == 413
    assert httpx.post(url, json={"type": "t", "payload": "x" * 1000}, timeout=5).status_code == 202
    assert service.stats()["events_received"] == 1


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "t", "payload": ' + b"1" * 5000 + b"}",  # past Python's int-string limit
        b'{"type": "t", "payload": ' + b"[" * 3000 + b"]" * 3000 + b"}",  # deep nesting
        b'{"type": "t", "payload": 1e400}',
        b"not json",
    ],
    ids=["huge-int", "deep", "overflow", "garbage"],
)
async def test_publish_answers_422_to_poison_bodies(launch: Launch, body: bytes) -> None:
    service = launch(PUBLISH_RATE="0")
    response = httpx.post(
        f"{service.base_url}/events",
        content=body,
        headers={"content-type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 422
    assert "Traceback" not in service.log_path.read_text()


def test_publish_rate_limit_answers_429(launch: Launch) -> None:
    service = launch(PUBLISH_RATE="5")
    codes = []
    with httpx.Client(base_url=service.base_url, timeout=5) as http:
        for _ in range(30):
            response = http.post("/events", json={"type": "t"})
            codes.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 0
    assert codes.count(202) >= 5 and codes.count(429) >= 10
    stats = service.stats()
    assert stats["publish_refused"] == codes.count(429)
    assert stats["events_received"] == codes.count(202)
