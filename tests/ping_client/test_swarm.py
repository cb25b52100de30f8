"""The swarm's command line and its safety guards, against a real service."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ping_client.safety import read_memory
from ping_client.swarm import Swarm, SwarmConfig
from tests.conftest import Launch
from tests.utils import wait_until

pytestmark = pytest.mark.timeout(60)


@contextlib.contextmanager
def unread_loopback_data(pairs: int = 2) -> Iterator[None]:
    """Loopback connections whose receiver never reads, each written full: kernel memory.

    Linux keeps up to ``net.core.mem_pcpu_rsv`` pages (1 MiB) per CPU out of sockstat's
    ``mem``, so an idle host reads 0 there: this holds several MiB to make it count.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener, contextlib.ExitStack() as stack:
        for _ in range(pairs):
            sender = stack.enter_context(socket.create_connection(listener.getsockname()))
            stack.enter_context(listener.accept()[0])  # accepted, never read
            sender.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    sender.send(random.randbytes(65536))
        yield


async def test_tcp_memory_guard_stops_sending_and_says_so(launch: Launch) -> None:
    """A guard below the host's current TCP memory: clients connect but send nothing."""
    service = launch(READ_HANDLER="off")
    with unread_loopback_data():
        await wait_until(lambda: read_memory().used_bytes > 0, timeout_s=10,
                         what="the kernel accounts TCP memory")  # fmt: skip
        config = SwarmConfig(url=service.ws_url, clients=3, interval_s=0.05, duration_s=2,
                             tcp_mem_guard=1e-9)  # fmt: skip
        summary = await Swarm(config).run()
    assert summary["pings_sent"] == 0
    assert summary["connected_peak"] == 3
    assert "stopped sending" in summary["tcp_mem_guard_tripped"]
    assert "pressure threshold" in summary["tcp_mem_guard_tripped"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m ping_client ARGS`` without a terminal, as CI runs it."""
    return subprocess.run(
        [sys.executable, "-m", "ping_client", *args],
        capture_output=True,
        text=True,
        timeout=45,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "CI": "true"},
    )


def test_cli_refuses_a_remote_target() -> None:
    """A non-loopback URL is refused with a usage error unless --allow-remote is given."""
    result = run_cli("--url", "ws://192.0.2.10:8000/ws", "--duration", "1")
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr
    assert "--allow-remote" in result.stderr


def test_cli_runs_prints_lines_and_writes_json_summary(launch: Launch, tmp_path: Path) -> None:
    """A short run prints a line per second and a summary, and --json-out saves it."""
    service = launch(READ_HANDLER="on", EVENT_RATE="20")
    out = tmp_path / "summary.json"
    result = run_cli("--url", service.ws_url, "--clients", "5", "--interval", "0.1",
                     "--duration", "3", "--json-out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("connected=5") >= 2
    assert "ping swarm summary" in result.stderr
    summary = json.loads(out.read_text())
    assert summary["connected_peak"] == 5
    assert summary["pings_sent"] == service.stats()["client_messages"] > 0
    assert summary["events_received"] > 0
    assert summary["latency"]["p50_ms"] > 0


async def test_client_keepalive_fails_unanswered_connections_with_1011(launch: Launch) -> None:
    """--client-keepalive against a non-reading server: the pongs never come, closes are 1011."""
    service = launch(READ_HANDLER="off")
    config = SwarmConfig(url=service.ws_url, clients=3, interval_s=0.05, size_bytes=4096,
                         duration_s=8, client_keepalive_s=1.0)  # fmt: skip
    summary = await Swarm(config).run()
    assert summary["connected_peak"] == 3
    assert summary["closes"] == {"1011": 3}
    assert summary["connected_at_end"] == 0


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (the one it would send out from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    return None if address.startswith("127.") else address


async def test_a_swarm_that_cannot_see_the_server_takes_its_recv_q_from_stats(
    launch: Launch,
) -> None:
    """Aimed at a non-loopback address, the swarm reports the server's Recv-Q from /stats."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    service = launch(HOST=address, READ_HANDLER="off")
    config = SwarmConfig(url=service.ws_url, clients=3, interval_s=0.05, size_bytes=4096,
                         duration_s=3, allow_remote=True)  # fmt: skip
    samples: list[dict] = []
    summary = await Swarm(config).run(samples.append)
    assert summary["server_figures_from"] == f"http://{address}:{service.port}/stats"
    assert summary["server_recv_q_bytes_peak"] > 3 * 4096
    assert max(s.get("server_recv_q_bytes", 0) for s in samples) > 3 * 4096
    assert summary["client_send_q_bytes_peak"] is not None


def test_cli_summary_rows_stay_whole_without_a_terminal(launch: Launch) -> None:
    """In a log or a container (no terminal, a narrow COLUMNS) each summary row is one line:
    the server's Recv-Q peak with where it was read, not split over two."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    service = launch(HOST=address, READ_HANDLER="off")
    result = subprocess.run(
        [sys.executable, "-m", "ping_client", "--url", service.ws_url, "--allow-remote",
         "--clients", "3", "--interval", "0.05", "--size", "4096", "--duration", "3"],
        capture_output=True, text=True, timeout=45, stdin=subprocess.DEVNULL,
        env={**os.environ, "CI": "true", "COLUMNS": "60"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stderr.splitlines() if "server Recv-Q peak" in line]
    assert len(rows) == 1 and f"(http://{address}:{service.port}/stats)" in rows[0], rows


async def test_a_swarm_reports_unknown_server_figures_when_stats_does_not_answer() -> None:
    """No /stats (here: nothing listens): the peak is unknown, not 0 B."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with socket.create_server((address, 0)) as closed:
        port = closed.getsockname()[1]
    config = SwarmConfig(url=f"ws://{address}:{port}/ws", clients=1, duration_s=1.5,
                         allow_remote=True)  # fmt: skip
    summary = await Swarm(config).run()
    assert summary["server_recv_q_bytes_peak"] is None
    assert summary["server_figures_from"] is None


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)
def test_swarm_in_a_network_namespace_without_tcp_mem_says_what_its_guard_uses(
    tmp_path: Path,
) -> None:
    """In a new network namespace (as in a container) the swarm runs, with an estimated guard."""
    out = tmp_path / "summary.json"
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "ping_client", "--url",
         "ws://127.0.0.1:9/ws", "--clients", "1", "--duration", "1", "--json-out", str(out)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    line = "tcp memory guard: threshold "
    assert result.stderr.count(line) == 1, result.stderr
    assert "from MemTotal/16, the kernel's default: no /proc/sys/net/ipv4/tcp_mem" in result.stderr
    assert json.loads(out.read_text())["tcp_mem_guard_threshold_from"].startswith("MemTotal/16")


@pytest.mark.parametrize(
    ("payload", "compression"),
    # Uncompressed random pings are counted this way by tests/event_service's read tests.
    [("text", False), ("random", True), ("text", True)],
)
async def test_every_ping_reaches_the_service_whole_whatever_its_framing(
    launch: Launch, payload: str, compression: bool
) -> None:
    """Batch-framed pings (uncompressed) and websockets-framed ones (deflate) alike: the
    reading service counts every message and byte the swarm sent, and closes nothing (a
    badly masked text frame would be invalid UTF-8: 1007)."""
    service = launch(READ_HANDLER="on")
    config = SwarmConfig(url=service.ws_url, clients=4, interval_s=0.05, size_bytes=300,
                         payload=payload, compression=compression, duration_s=1.5)  # fmt: skip
    summary = await Swarm(config).run()
    assert summary["pings_sent"] >= 4 * 10
    assert summary["closes"] == {}
    await wait_until(
        lambda: service.stats()["client_messages"] == summary["pings_sent"],
        timeout_s=10,
        what="the service read every ping",
    )
    assert service.stats()["client_bytes"] == summary["bytes_sent"]
