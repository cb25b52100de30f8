"""``/stats`` and ``/metrics`` report the same socket queues as ``ss`` for the same sockets."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from typing import TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.conftest import Launch
from tests.utils import kernel_server_sockets, wait_until

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")


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


async def read_between_equal_ss(
    port: int, read: Callable[[], T], attempts: int = 20
) -> tuple[T, list[tuple[int, int]]]:
    """``read()`` and the queues ``ss`` showed just before and just after it, unchanged."""
    for _ in range(attempts):
        before = ss_queues(port)
        value = read()
        if ss_queues(port) == before:
            return value, before
        await asyncio.sleep(0.1)
    pytest.fail(f"socket queues on port {port} kept changing over {attempts} readings")


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
        # A zero-window probe can still let a few more bytes in: compare readings taken
        # while ss reports the same queues before and after.
        stats, queues = await read_between_equal_ss(service.port, service.stats)
        assert len(queues) == stats["connections"] == 3
        assert stats["sockets"] >= 3  # every connected socket on the port, /stats' own included
        assert sum(recv for recv, _ in queues) == stats["recv_q_bytes"]
        assert max(recv for recv, _ in queues) == stats["recv_q_max_bytes"]
        assert sum(send for _, send in queues) == stats["send_q_bytes"]
        assert stats["recv_q_bytes"] > 0

        def scrape() -> dict[str, float]:
            metrics = httpx.get(f"{service.base_url}/metrics").text
            return {
                sample.name: sample.value
                for family in text_string_to_metric_families(metrics)
                for sample in family.samples
            }

        samples, queues = await read_between_equal_ss(service.port, scrape)
        assert samples["event_service_recv_queue_bytes"] == sum(recv for recv, _ in queues)
        assert samples["event_service_connections"] == 3
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))
