"""Shutdown on real uvicorn: readers get 1001, stuck clients are aborted, the kernel keeps nothing.

The service's sockets are identified by inode while it runs (its ``/proc/PID/fd`` links), and
by their exact (local address:port, remote address:port) pair after it exits: a socket the
process closed loses its inode (0) but keeps its addresses. Other programs on this machine
have loopback sockets too, so never by port alone. ``ss`` is the independent witness.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import BOTH_FANOUTS, Launch
from tests.event_service.test_session import open_stalled_subscriber
from tests.utils import wait_until

pytestmark = [pytest.mark.timeout(90), BOTH_FANOUTS]

STALLED_CLIENTS = 20
READERS = 3
EVENTS = 30
# Past what the test sends, so that the stalled subscribers stay connected, stuck, until
# the shutdown (the slow-consumer policy closes them otherwise, and has its own tests).
BIG_LIMITS = {"EVENT_MAX_BYTES": "262144", "SLOW_CONSUMER_BYTES": "268435456"}


@dataclasses.dataclass(frozen=True, slots=True)
class TcpRow:
    """One row of /proc/net/tcp{,6}, with the raw ``ADDR:PORT`` hex fields kept as its identity."""

    local: str
    remote: str
    state: int
    send_q_bytes: int
    recv_q_bytes: int
    inode: int


LISTEN, TIME_WAIT = 0x0A, 0x06


def read_tcp_rows() -> list[TcpRow]:
    rows = []
    for name in ("tcp", "tcp6"):
        for line in Path("/proc/net", name).read_text().splitlines()[1:]:
            fields = line.split()
            send_q, recv_q = (int(q, 16) for q in fields[4].split(":"))
            rows.append(
                TcpRow(fields[1], fields[2], int(fields[3], 16), send_q, recv_q, int(fields[9]))
            )
    return rows


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
            if match:
                inodes.add(int(match.group(1)))
    return inodes


def ipv4_endpoint(field: str) -> str:
    """``0100007F:1F90`` → ``127.0.0.1:8080`` (the address is little-endian)."""
    address, port = field.split(":")
    return f"{socket.inet_ntoa(bytes.fromhex(address)[::-1])}:{int(port, 16)}"


def ss_states(pairs: set[tuple[str, str]]) -> list[str]:
    """States ``ss`` reports for these (local, remote) IPv4 pairs, as an independent witness."""
    wanted = {(ipv4_endpoint(local), ipv4_endpoint(remote)) for local, remote in pairs}
    output = subprocess.run(["ss", "-tanH"], capture_output=True, text=True, check=True).stdout
    states = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 5 and (fields[3], fields[4]) in wanted:
            states.append(fields[0])
    return states


@dataclasses.dataclass
class Reader:
    """A subscriber that keeps reading; remembers how many events it got and its close code."""

    ws: ClientConnection
    received: int = 0

    async def run(self) -> int | None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in self.ws:
                self.received += 1
        return self.ws.close_code


@pytest.mark.parametrize(
    ("read_handler", "ws_impl"),
    [
        ("off", "websockets-sansio"),
        ("on", "websockets-sansio"),
        ("off", "wsproto"),
        ("on", "websockets"),
    ],
)
async def test_sigterm_gives_readers_1001_and_leaves_no_socket_in_the_kernel(
    launch: Launch, read_handler: str, ws_impl: str
) -> None:
    """SIGTERM with 20 clients that stopped reading (MiBs in the kernel) and 3 that read.

    The readers get 1001, the process exits 0 within 5 s without an ERROR line, and none of
    its sockets is left in the kernel but TIME_WAIT ones (closed politely, no buffers).
    """
    service = launch(READ_HANDLER=read_handler, WS_IMPL=ws_impl, **BIG_LIMITS)
    assert service.pid is not None
    stalled = [open_stalled_subscriber(service.port) for _ in range(STALLED_CLIENTS)]
    readers = [
        Reader(await connect(service.ws_url, ping_interval=None, compression=None, proxy=None))
        for _ in range(READERS)
    ]
    reading = [asyncio.create_task(reader.run()) for reader in readers]
    try:
        sessions = STALLED_CLIENTS + READERS
        await wait_until(lambda: service.stats()["connections"] == sessions, timeout_s=10,
                         what=f"{sessions} sessions")  # fmt: skip
        big = {"type": "bulk", "payload": "x" * 200_000}
        for _ in range(EVENTS):  # 6 MB per subscriber: more than the kernel buffers for one
            httpx.post(f"{service.base_url}/events", json=big).raise_for_status()
        inodes = socket_inodes(service.pid)

        def own_rows() -> list[TcpRow]:
            return [r for r in read_tcp_rows() if r.inode in inodes and r.state != LISTEN]

        def stalled_and_read() -> bool:
            stuck = sum(1 for r in own_rows() if r.send_q_bytes > 0)
            return stuck >= STALLED_CLIENTS and all(r.received == EVENTS for r in readers)

        await wait_until(stalled_and_read, timeout_s=20, what="stalled sockets hold Send-Q")
        rows = own_rows()
        pairs = {(r.local, r.remote) for r in rows}
        assert sum(r.send_q_bytes for r in rows) > STALLED_CLIENTS * 64 * 1024

        started = time.monotonic()
        service.signal(signal.SIGTERM)
        codes = await asyncio.wait_for(asyncio.gather(*reading), 10)
        assert service.wait(timeout_s=10) == 0
        assert time.monotonic() - started < 5
        assert codes == [1001] * READERS

        log = service.log_path.read_text()
        assert "ERROR" not in log and "Traceback" not in log, log[-2000:]
        assert f"aborted={STALLED_CLIENTS} " in log

        left = [r for r in read_tcp_rows() if (r.local, r.remote) in pairs or r.inode in inodes]
        assert all(r.state == TIME_WAIT for r in left), left
        assert sum(r.send_q_bytes + r.recv_q_bytes for r in left) == 0
        assert set(ss_states(pairs)) <= {"TIME-WAIT"}
    finally:
        for task in reading:
            task.cancel()
        await asyncio.gather(*reading, return_exceptions=True)
        for reader in readers:
            await reader.ws.close()
        for sock in stalled:
            sock.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_exits_with_status_0(launch: Launch, signum: signal.Signals) -> None:
    """SIGTERM and Ctrl-C are clean stops: exit status 0, no KeyboardInterrupt traceback."""
    service = launch()
    service.signal(signum)
    assert service.wait(timeout_s=10) == 0
    assert "Traceback" not in service.log_path.read_text()
