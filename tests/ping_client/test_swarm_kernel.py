"""Every sample of the one-process swarm reads the kernel afresh, and says what it cost."""

from __future__ import annotations

import itertools

import pytest

from ping_client.swarm import Swarm, SwarmConfig
from tests.conftest import Launch

pytestmark = pytest.mark.timeout(60)


async def test_every_sample_reads_the_socket_queues_afresh(launch: Launch) -> None:
    """A non-reading server's Recv-Q grows between any two samples: no figure is reused."""
    service = launch(READ_HANDLER="off")
    config = SwarmConfig(url=service.ws_url, clients=3, interval_s=0.05, size_bytes=1024,
                         duration_s=4.5)  # fmt: skip
    samples: list[dict] = []
    summary = await Swarm(config).run(samples.append)
    connected = [s for s in samples if s["connected"] == 3]
    assert len(connected) >= 3
    recv_q = [s["server_recv_q_bytes"] for s in connected]
    assert all(later > earlier for earlier, later in itertools.pairwise(recv_q)), recv_q
    assert all(s["kernel_read_ms"] > 0 and s["kernel_read_cpu_ms"] > 0 for s in samples)
    assert summary["kernel_read_ms"]["samples"] == len(samples)
    reads = summary["kernel_read_ms"]
    assert reads["max_ms"] >= reads["p50_ms"] > 0
    assert reads["cpu_max_ms"] >= reads["cpu_p50_ms"] > 0
