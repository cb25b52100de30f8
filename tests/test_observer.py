"""``/stats`` and ``/metrics`` report the same socket queues as ``ss`` for the same sockets."""

from __future__ import annotations

import asyncio
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.conftest import Launch, kernel_server_sockets, wait_until

pytestmark = pytest.mark.timeout(60)


def ss_queues(port: int) -> list[tuple[int, int]]:
    """(Recv-Q, Send-Q) of every established socket whose local port is ``port``, from ``ss``."""
    output = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return [(int(line.split()[0]), int(line.split()[1])) for line in output.splitlines()]


async def test_stats_agree_with_ss(launch: Launch) -> None:
    """With the leak in place and traffic stopped, /stats and ss report equal Recv-Q figures."""
    service = launch(READ_HANDLER="off")
    clients = [
        await connect(
            service.ws_url, ping_interval=None, compression=None, proxy=None, close_timeout=0.5
        )
        for _ in range(3)
    ]
    try:
        for index, ws in enumerate(clients):
            for _ in range(20 + index):
                await ws.send(b"\x00" * 8192)
        previous: list[int] = []

        def settled() -> bool:
            nonlocal previous
            current = sorted(s.recv_q_bytes for s in kernel_server_sockets(service.port))
            stable = len(current) == 3 and current == previous and current[-1] > 0
            previous = current
            return stable

        await wait_until(settled, timeout_s=10, every_s=0.2, what="Recv-Q settles")
        stats = service.stats()
        queues = ss_queues(service.port)
        assert len(queues) == stats["connections"] == 3
        assert stats["sockets"] >= 3  # every connected socket on the port, /stats' own included
        assert sum(recv for recv, _ in queues) == stats["recv_q_bytes"]
        assert max(recv for recv, _ in queues) == stats["recv_q_max_bytes"]
        assert sum(send for _, send in queues) == stats["send_q_bytes"]
        assert stats["recv_q_bytes"] > 0

        metrics = httpx.get(f"{service.base_url}/metrics").text
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
        }
        assert samples["event_service_recv_queue_bytes"] == stats["recv_q_bytes"]
        assert samples["event_service_connections"] == 3
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))
