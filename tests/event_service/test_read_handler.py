"""The leak and its fix, measured in the kernel against a real uvicorn on a real socket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from leaklab.children import ServiceProcess
from ping_client.swarm import Swarm, SwarmConfig
from tests.conftest import BOTH_FANOUTS, Launch
from tests.utils import kernel_server_sockets, wait_until

pytestmark = [pytest.mark.timeout(90), BOTH_FANOUTS]

CLIENTS = 4
LEAK_FLOOR_BYTES = 64 * 1024


def data_swarm(service: ServiceProcess, **overrides: Any) -> Swarm:
    """Clients sending 4 KiB data pings every 50 ms: 80 KiB/s each."""
    config = dict(
        url=service.ws_url, clients=CLIENTS, interval_s=0.05, size_bytes=4096, duration_s=60
    )
    return Swarm(SwarmConfig(**{**config, **overrides}))


# Legacy websockets first absorbs 32 messages and ~64 KiB in user space, then the same.
@pytest.mark.parametrize("ws_impl", ["websockets-sansio", "wsproto", "websockets"])
async def test_missing_reader_fills_recv_q(launch: Launch, ws_impl: str) -> None:
    """READ_HANDLER off: every server socket's Recv-Q grows well past 64 KiB."""
    service = launch(READ_HANDLER="off", WS_IMPL=ws_impl)
    swarm = data_swarm(service)
    run = asyncio.create_task(swarm.run())

    def all_leaking() -> bool:
        sockets = kernel_server_sockets(service.port)
        return len(sockets) == CLIENTS and all(s.recv_q_bytes > LEAK_FLOOR_BYTES for s in sockets)

    await wait_until(all_leaking, timeout_s=30, what="every Recv-Q exceeds 64 KiB")
    stats = service.stats()
    swarm.stop()
    await run
    assert stats["recv_q_bytes"] > CLIENTS * LEAK_FLOOR_BYTES
    assert stats["client_messages"] == 0


@pytest.mark.parametrize("ws_impl", ["websockets-sansio", "wsproto"])
async def test_fixed_reader_keeps_recv_q_small(launch: Launch, ws_impl: str) -> None:
    """READ_HANDLER on: after the same traffic, Recv-Q stays within a few KiB per socket."""
    service = launch(READ_HANDLER="on", WS_IMPL=ws_impl)
    swarm = data_swarm(service)
    run = asyncio.create_task(swarm.run())
    peak_bytes = 0

    def sent_enough() -> bool:
        nonlocal peak_bytes
        sockets = kernel_server_sockets(service.port)
        peak_bytes = max([peak_bytes, *(s.recv_q_bytes for s in sockets)])
        return swarm.stats.bytes_sent > CLIENTS * 4 * LEAK_FLOOR_BYTES

    await wait_until(sent_enough, timeout_s=30, what="the clients sent 256 KiB each")
    swarm.stop()
    summary = await run
    assert peak_bytes <= 16 * 1024
    stats = service.stats()
    assert stats["client_messages"] == summary["pings_sent"]
    assert stats["client_bytes"] == summary["bytes_sent"]


async def test_short_keepalive_closes_missing_reader_with_1011(launch: Launch) -> None:
    """Keepalive 1 s / 1 s, READ_HANDLER off: the pong waits behind unread data, close 1011."""
    service = launch(READ_HANDLER="off", WS_PING_INTERVAL="1", WS_PING_TIMEOUT="1")
    summary = await data_swarm(service, duration_s=6).run()
    assert summary["closes"] == {"1011": CLIENTS}
    assert summary["first_close"]["after_s"] < 5


async def test_short_keepalive_keeps_fixed_reader_open(launch: Launch) -> None:
    """Keepalive 1 s / 1 s, READ_HANDLER on: pongs flow, nothing is closed in 3 ping rounds."""
    service = launch(READ_HANDLER="on", WS_PING_INTERVAL="1", WS_PING_TIMEOUT="1")
    summary = await data_swarm(service, duration_s=6).run()
    assert summary["closes"] == {}
    assert summary["connected_at_end"] == CLIENTS


async def test_control_pings_do_not_fill_recv_q(launch: Launch) -> None:
    """Control Ping frames are answered by uvicorn itself: no Recv-Q build-up, no reader needed."""
    service = launch(READ_HANDLER="off")
    swarm = data_swarm(service, ping_kind="control", size_bytes=100)
    run = asyncio.create_task(swarm.run())
    peak_bytes = 0

    def pinged_enough() -> bool:
        nonlocal peak_bytes
        peak_bytes = max(
            [peak_bytes, *(s.recv_q_bytes for s in kernel_server_sockets(service.port))]
        )
        return swarm.stats.pings_sent >= CLIENTS * 40

    await wait_until(pinged_enough, timeout_s=30, what="40 pings per client")
    swarm.stop()
    await run
    assert peak_bytes < 4096
