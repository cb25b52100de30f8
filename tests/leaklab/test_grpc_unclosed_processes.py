"""The grpc-unclosed story's processes: the soda server, the client, and how the lab reads them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from leaklab.children import ChildProcess
from leaklab.errors import LaunchError
from leaklab.stories.grpc_unclosed.cell import (
    HOST,
    SodaServer,
    StatsReader,
    _process_figures,
    ipv4_address,
)
from leaklab.stories.grpc_unclosed.client import channel_options
from leaklab.stories.grpc_unclosed.protocol import PATH

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def soda(tmp_path: Path) -> Iterator[SodaServer]:
    """A soda server under the story's fd limit, stopped after the test."""
    server = SodaServer(tmp_path / "server.log").start()
    yield server
    server.stop()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting until {what}")
        time.sleep(0.05)


def server_sockets_by_ss(server: SodaServer) -> int:
    """ESTABLISHED sockets of the server's exact address owned by its pid, as ``ss`` sees them."""
    lines = subprocess.run(
        ["ss", "-Htnp", "state", "established", "src", f"[::ffff:{HOST}]:{server.port}"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    return sum(1 for line in lines if f"pid={server.pid}," in line)


def test_the_server_reports_its_port_and_answers_a_random_number(soda: SodaServer):
    assert soda.port and soda.fd_limit == 256
    assert psutil.Process(soda.pid).rlimit(psutil.RLIMIT_NOFILE) == (256, 256)
    with grpc.insecure_channel(soda.target) as channel:
        answer = channel.unary_unary(PATH)(b"", timeout=5)
    assert 0 <= float(answer.decode()) < 1


def test_held_channels_of_the_local_pool_are_one_server_connection_each(soda: SodaServer):
    """The lab's count (the server's own sockets) agrees with ``ss`` for the same sockets."""
    server = psutil.Process(soda.pid)
    address = (HOST, soda.port)
    before = _process_figures(server, server_address=address, own=True)
    assert before is not None and before["established"] == 0
    channels = [
        grpc.insecure_channel(soda.target, options=channel_options("local", 0)) for _ in range(12)
    ]
    try:
        for channel in channels:
            channel.unary_unary(PATH)(b"", timeout=5)
        figures = _process_figures(server, server_address=address, own=True)
        assert figures is not None
        assert figures["established"] == 12 == server_sockets_by_ss(soda)
        assert figures["fds"] >= before["fds"] + 12
        assert figures["threads"] <= before["threads"] + 2  # connections cost no thread
    finally:
        for channel in channels:
            channel.close()
    wait_for(lambda: server_sockets_by_ss(soda) == 0, 10, "closed channels free their sockets")


def test_channels_of_the_shared_pool_share_one_connection(soda: SodaServer):
    channels = [grpc.insecure_channel(soda.target) for _ in range(12)]
    try:
        for channel in channels:
            channel.unary_unary(PATH)(b"", timeout=5)
        assert server_sockets_by_ss(soda) == 1
    finally:
        for channel in channels:
            channel.close()


def test_the_server_stops_and_its_pid_is_gone(tmp_path: Path):
    server = SodaServer(tmp_path / "server.log").start()
    pid = server.pid
    assert server.stop() == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_a_server_that_cannot_bind_is_a_launch_error_with_its_log(tmp_path: Path):
    server = SodaServer(tmp_path / "server.log", host="192.0.2.1")  # not a local address
    with pytest.raises(LaunchError, match="did not report its port"):
        server.start()
    assert not server.is_running()


def test_a_listener_that_never_answers_gives_unavailable_before_settings(tmp_path: Path):
    """What a new client sees at the server's fd limit: the kernel accepts, nobody speaks."""
    stats = tmp_path / "stats.jsonl"
    with socket.socket() as mute:
        mute.bind((HOST, 0))
        mute.listen(16)  # never accepted: the connection waits in the backlog
        client = ChildProcess(
            [sys.executable, "-m", "leaklab.stories.grpc_unclosed.client",
             "--target", f"{HOST}:{mute.getsockname()[1]}", "--client", "close-each",
             "--pool", "local", "--connect-timeout-ms", "1000", "--deadline-s", "3",
             "--rate", "2", "--stats", str(stats)],
            {}, tmp_path / "client.log",
        )  # fmt: skip
        with client:
            reader = StatsReader(stats)
            wait_for(lambda: ((reader.read() or {}).get("errors") or {}).get("UNAVAILABLE", 0) > 0,
                     20, "a call failed")  # fmt: skip
            pid = client.pid
    counts = json.loads(stats.read_text().splitlines()[-1])
    assert counts["calls_ok"] == 0
    assert set(counts["errors"]) == {"UNAVAILABLE"}
    assert counts["first_error"]["details"].endswith(
        "connection attempt timed out before receiving SETTINGS frame"
    )
    assert counts["held_channels"] == counts["open_channels"] == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_stats_reader_keeps_the_last_complete_line(tmp_path: Path):
    path = tmp_path / "stats.jsonl"
    reader = StatsReader(path)
    assert reader.read() is None  # no file yet
    path.write_text('{"loops": 1}\n{"loops": 2}\n{"loo')
    assert reader.read() == {"loops": 2}
    with path.open("a") as stats:
        stats.write('ps": 3}\n')
    assert reader.read() == {"loops": 3}
    assert reader.read() == {"loops": 3}  # nothing new: the last line stays


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (("::ffff:127.0.0.1", 50051), ("127.0.0.1", 50051)),
        (("127.0.0.1", 50051), ("127.0.0.1", 50051)),
        (("::1", 50051), ("::1", 50051)),
        ((), None),
    ],
)
def test_ipv4_mapped_addresses_are_the_same_address(address, expected):
    assert ipv4_address(address) == expected
