"""``/stats`` and ``/metrics`` count the service's own sockets, as ``ss`` shows them.

The witness is ``ss -tmnHe`` with the service's exact local address and port, kept to the
sockets whose inode the service process holds (``/proc/PID/fd``, read here apart from
sockscope). The decoy is a socket of another process with the same port number on other
loopback addresses, which matching by port number alone counted: it must change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from leaklab.children import ServiceProcess
from tests.conftest import Launch
from tests.utils import SsSocket, kernel_server_sockets, ss_sockets, wait_until

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")

# ss's names of the states sockscope.tcp.CONNECTED_STATES holds.
SS_CONNECTED = ("established", "syn-sent", "fin-wait-1", "fin-wait-2", "close-wait",
                "last-ack", "closing")  # fmt: skip
# The /stats figures that describe the service's sockets.
SOCKET_FIGURES = (
    "sockets", "socket_states", "recv_q_bytes", "recv_q_max_bytes", "recv_q_p99_bytes",
    "send_q_bytes", "send_q_max_bytes", "skmem_r_bytes", "skmem_r_max_bytes",
    "skmem_rb_bytes", "skmem_rb_max_bytes", "skmem_w_bytes", "skmem_w_max_bytes",
)  # fmt: skip

# Another process: a listener on 127.0.0.3:<port> and a client bound to 127.0.0.2:<port>
# connected to it, each with bytes the other end never reads. Three sockets whose local
# port is the service's, none of them the service's.
DECOY = """
import socket, sys
port = int(sys.argv[1])
listener = socket.socket()
listener.bind(("127.0.0.3", port))
listener.listen(4)
client = socket.socket()
client.bind(("127.0.0.2", port))
client.connect(("127.0.0.3", port))
accepted, _ = listener.accept()
client.sendall(bytes(30000))
accepted.sendall(bytes(50000))
print("ready", flush=True)
sys.stdin.read()
"""


def process_socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds, from its ``/proc/PID/fd`` links."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
            if match:
                inodes.add(int(match.group(1)))
    return inodes


def service_sockets(service: ServiceProcess) -> list[SsSocket]:
    """The witness: ss's connected sockets at the service's exact address, held by it."""
    assert service.pid is not None and service.port is not None
    states = [word for state in SS_CONNECTED for word in ("state", state)]
    found = ss_sockets(*states, "src", f"127.0.0.1:{service.port}")
    held = process_socket_inodes(service.pid)
    return sorted((s for s in found if s.inode in held), key=lambda s: s.inode)


def witness_figures(sockets: list[SsSocket]) -> dict[str, Any]:
    """The /stats socket figures computed from ss's sockets, one by one."""
    recv = sorted(s.recv_q_bytes for s in sockets)
    states: dict[str, int] = {}
    for sock in sockets:
        states[sock.state] = states.get(sock.state, 0) + 1

    def total_and_max(values: list[int]) -> tuple[int, int]:
        return sum(values), max(values, default=0)

    figures: dict[str, Any] = {"sockets": len(sockets), "socket_states": states}
    figures["recv_q_bytes"], figures["recv_q_max_bytes"] = total_and_max(recv)
    figures["recv_q_p99_bytes"] = recv[max(0, -(-99 * len(recv) // 100) - 1)] if recv else 0
    figures["send_q_bytes"], figures["send_q_max_bytes"] = total_and_max(
        [s.send_q_bytes for s in sockets]
    )
    for ss_name, name in (("r", "skmem_r"), ("rb", "skmem_rb"), ("w", "skmem_w")):
        figures[f"{name}_bytes"], figures[f"{name}_max_bytes"] = total_and_max(
            [s.skmem[ss_name] for s in sockets]
        )
    return figures


class KeptAlive:
    """One HTTP/1.1 connection to the service, kept open: its socket is one ss can name."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        self.get("/healthz")  # accepted and served: the service holds it from now on

    def get(self, path: str) -> bytes:
        self._connection.request("GET", path)
        response = self._connection.getresponse()
        body = response.read()
        assert response.status == 200, body
        return body

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = json.loads(self.get("/stats"))
        return stats

    def metrics(self) -> dict[str, float]:
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(self.get("/metrics").decode())
            for sample in family.samples
        }

    def close(self) -> None:
        self._connection.close()


async def read_between_equal_witness(
    service: ServiceProcess, read: Callable[[], T], attempts: int = 20
) -> tuple[T, list[SsSocket]]:
    """``read()`` and the witness's sockets just before and just after it, unchanged."""
    for _ in range(attempts):
        before = service_sockets(service)
        value = read()
        if service_sockets(service) == before:
            return value, before
        await asyncio.sleep(0.1)
    pytest.fail(f"the service's sockets kept changing over {attempts} readings")


@contextlib.contextmanager
def decoy(port: int) -> Iterator[None]:
    """The decoy process, ready; stopped on the way out."""
    child = subprocess.Popen(
        [sys.executable, "-c", DECOY, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == b"ready\n"
        yield
    finally:
        child.stdin.close()
        child.wait(10)
        child.stdout.close()


# A client's 8192-byte message on the wire: 2 + 2 bytes of header (16-bit length), 4 of mask.
FRAME_BYTES = 8192 + 8


async def leaking_clients(service: ServiceProcess, count: int) -> list[ClientConnection]:
    """``count`` subscribers whose bytes the service never reads: (2 + index) frames each.

    Each sends one message first, which uvicorn reads and then pauses reading (the missing
    handler never takes it). An HTTP round trip through the same event loop makes sure it
    has. What they send next stays in the kernel, all of it: well under the receive window,
    so no zero-window probing keeps changing the figures.
    """
    clients = [
        await connect(
            service.ws_url, ping_interval=None, compression=None, proxy=None, close_timeout=0.5
        )
        for _ in range(count)
    ]
    for ws in clients:
        await ws.send(bytes(8192))
    assert httpx.get(f"{service.base_url}/healthz", timeout=5).status_code == 200
    for index, ws in enumerate(clients):
        for _ in range(2 + index):
            await ws.send(bytes(8192))
    assert service.port is not None
    port = service.port
    expected = [(2 + index) * FRAME_BYTES for index in range(count)]
    await wait_until(
        lambda: sorted(s.recv_q_bytes for s in kernel_server_sockets(port)) == expected,
        timeout_s=10,
        what=f"Recv-Q is {expected}",
    )
    return clients


async def test_a_socket_of_another_process_on_the_same_port_changes_no_figure(
    launch: Launch,
) -> None:
    """With a decoy sharing the port number, /stats is what it was, and what ss says."""
    service = launch(READ_HANDLER="off")
    assert service.port is not None
    clients = await leaking_clients(service, 3)
    http = KeptAlive(service.port)
    try:
        before, witness = await read_between_equal_witness(service, http.stats)
        assert before["connections"] == 3
        assert len(witness) == 4  # three sessions and this HTTP connection
        assert {name: before[name] for name in SOCKET_FIGURES} == witness_figures(witness)
        assert before["recv_q_bytes"] == (2 + 3 + 4) * FRAME_BYTES

        with decoy(service.port):
            by_port = ss_sockets("state", "established", "sport", "=", f":{service.port}")
            assert len(by_port) == len(witness) + 2  # what matching by port alone counted
            during, witness = await read_between_equal_witness(service, http.stats)
        assert {name: during[name] for name in SOCKET_FIGURES} == witness_figures(witness)
        assert {name: during[name] for name in SOCKET_FIGURES} == {
            name: before[name] for name in SOCKET_FIGURES
        }
    finally:
        http.close()
        await asyncio.gather(*(ws.close() for ws in clients))


async def test_metrics_agree_with_ss_for_the_same_sockets(launch: Launch) -> None:
    """/metrics carries the figures of /stats: queues and skmem of the service's sockets."""
    service = launch(READ_HANDLER="off")
    assert service.port is not None
    clients = await leaking_clients(service, 2)
    http = KeptAlive(service.port)
    try:
        samples, witness = await read_between_equal_witness(service, http.metrics)
    finally:
        http.close()
        await asyncio.gather(*(ws.close() for ws in clients))
    expected = witness_figures(witness)
    assert samples["event_service_connections"] == 2
    assert samples["event_service_sockets"] == expected["sockets"] == 3
    assert samples["event_service_recv_queue_bytes"] == expected["recv_q_bytes"] > 0
    assert samples["event_service_socket_receive_memory_bytes"] == expected["skmem_r_bytes"]
    assert (
        samples["event_service_socket_receive_memory_max_bytes"] == (expected["skmem_r_max_bytes"])
    )
    assert samples["event_service_socket_receive_buffer_bytes"] == expected["skmem_rb_bytes"]
    assert samples["event_service_socket_send_memory_bytes"] == expected["skmem_w_bytes"]
    assert 0 < samples["event_service_sockets_read_seconds"] < 1
