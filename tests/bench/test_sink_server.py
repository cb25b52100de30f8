"""The benchmarks' WebSocket sink: a correct handshake, then bytes counted and dropped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from bench.sink_server import (
    SinkProcess,
    accept_key,
    client_frame_bytes,
    parse_head,
    upgrade_response,
)
from ping_client.server_stats import ServerStats
from tests.utils import wait_until

pytestmark = pytest.mark.timeout(60)


def test_accept_key_is_the_rfc_6455_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_parse_head_reads_method_path_and_lowercase_headers() -> None:
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: abc"
    assert parse_head(head) == (
        "GET", "/ws", {"host": "x", "upgrade": "websocket", "sec-websocket-key": "abc"}
    )  # fmt: skip


@pytest.mark.parametrize("head", [b"hello", b"GET / SPDY/3\r\n", b"GET / HTTP/1.1\r\nno colon"])
def test_parse_head_refuses_what_is_not_http(head: bytes) -> None:
    with pytest.raises(ValueError):
        parse_head(head)


def test_upgrade_response_needs_upgrade_and_key() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    response = upgrade_response({"upgrade": "WebSocket", "sec-websocket-key": key})
    assert response is not None
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert response.endswith(b"\r\n\r\n")
    assert upgrade_response({"sec-websocket-key": key}) is None
    assert upgrade_response({"upgrade": "websocket"}) is None


def test_client_frame_bytes_counts_header_mask_and_payload() -> None:
    assert client_frame_bytes(64) == 2 + 4 + 64
    assert client_frame_bytes(125) == 2 + 4 + 125
    assert client_frame_bytes(126) == 2 + 2 + 4 + 126
    assert client_frame_bytes(1024) == 2 + 2 + 4 + 1024
    assert client_frame_bytes(1 << 16) == 2 + 8 + 4 + (1 << 16)


async def test_websockets_client_connects_and_its_bytes_are_counted(tmp_path: Path) -> None:
    pings, size = 50, 64
    with SinkProcess(tmp_path / "sink.log", fd_limit=1024) as sink:
        async with connect(sink.ws_url, compression=None, open_timeout=10, close_timeout=1) as ws:
            for _ in range(pings):
                await ws.send(os.urandom(size))
            expected = pings * client_frame_bytes(size)
            await wait_until(lambda: sink.counters()["bytes_received"] >= expected,
                             timeout_s=10.0, what="the sink counted every ping")  # fmt: skip
            during = sink.counters()
        # The sink answers no close frame: the client gives up after its close timeout.
        after = sink.counters()
        stats = httpx.get(f"http://127.0.0.1:{sink.port}/nothing", timeout=5, trust_env=False)
    assert during["connections"] == 1
    assert during["upgrades"] == 1
    assert during["bytes_received"] == expected
    assert after["bytes_received"] >= expected  # and the close frame
    assert stats.status_code == 404


def test_sigterm_prints_the_counters_and_exits(tmp_path: Path) -> None:
    sink = SinkProcess(tmp_path / "sink.log").start()
    try:
        sink.counters()
    finally:
        code = sink.stop(grace_s=10)
    assert code == 0
    last = json.loads((tmp_path / "sink.log").read_text().splitlines()[-1])
    assert last["upgrades"] == 0
    assert last["refused"] == 0


def test_the_swarm_pings_the_sink(tmp_path: Path) -> None:
    clients, size = 20, 64
    with SinkProcess(tmp_path / "sink.log") as sink:
        summary_path = tmp_path / "swarm.json"
        argv = [sys.executable, "-m", "ping_client", "--url", sink.ws_url, "--clients",
                str(clients), "--ramp", "200", "--interval", "0.5", "--size", str(size),
                "--duration", "3", "--json-out", str(summary_path)]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, timeout=40, check=False)
        counters = sink.counters()
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(summary_path.read_text())
    assert summary["connected_peak"] == clients
    assert not summary["connect_failures"]
    assert summary["pings_sent"] >= clients
    assert counters["upgrades"] == clients
    assert counters["connections"] == 0  # the swarm closed (aborted) every connection
    # Every ping arrived, and one close frame (2-byte code) per client.
    frames = summary["pings_sent"] * client_frame_bytes(size)
    assert counters["bytes_received"] == frames + clients * client_frame_bytes(2)


async def test_a_swarm_reading_the_sinks_stats_gets_no_figures_and_no_error(
    tmp_path: Path,
) -> None:
    """A swarm that cannot see the sink's sockets asks its /stats: no queue figures there
    (or no /stats at all) leaves the server figures unknown, nothing fails."""
    with SinkProcess(tmp_path / "sink.log") as sink:
        for path in ("/stats", "/no-stats-here"):
            reader = ServerStats(f"http://127.0.0.1:{sink.port}{path}")
            try:
                assert await reader.read() is None
            finally:
                await reader.aclose()
        assert sink.counters()["refused"] == 1  # the 404
