"""Tests of how the http-keepalive story tells its sockets apart, and of the apps' counts."""

from __future__ import annotations

import socket

import httpx
import psutil
import pytest

from leaklab.stories.http_keepalive.callee import create_app
from leaklab.stories.http_keepalive.counts import own_counts
from leaklab.stories.http_keepalive.settings import CalleeSettings
from leaklab.stories.http_keepalive.sockets import (
    SocketRow,
    callee_side,
    caller_side,
    read_sockets,
)

CALLEE = ("127.0.0.1", 40000)


def test_caller_side_is_its_sockets_to_the_callees_exact_address():
    rows = [
        SocketRow(("127.0.0.1", 50001), CALLEE, "ESTABLISHED"),
        SocketRow(("127.0.0.1", 50002), CALLEE, "CLOSE_WAIT"),
        SocketRow(("127.0.0.1", 50003), CALLEE, "CLOSE_WAIT"),
        # Same port number on another address: another program's, not the callee.
        SocketRow(("127.0.0.1", 50004), ("127.0.0.2", 40000), "ESTABLISHED"),
        # The lab's driver, connected to the caller.
        SocketRow(("127.0.0.1", 41000), ("127.0.0.1", 50005), "ESTABLISHED"),
        SocketRow(("127.0.0.1", 41000), None, "LISTEN"),
    ]
    assert caller_side(rows, CALLEE) == {"ESTABLISHED": 1, "CLOSE_WAIT": 2}


def test_callee_side_is_its_connections_without_the_lab_probe():
    probe = ("127.0.0.1", 50999)
    rows = [
        SocketRow(CALLEE, None, "LISTEN"),
        SocketRow(CALLEE, ("127.0.0.1", 50001), "ESTABLISHED"),
        SocketRow(CALLEE, ("127.0.0.1", 50002), "ESTABLISHED"),
        SocketRow(CALLEE, probe, "ESTABLISHED"),
        SocketRow(("127.0.0.2", 40000), ("127.0.0.1", 50003), "ESTABLISHED"),
    ]
    assert callee_side(rows, CALLEE, exclude=[probe]) == {"ESTABLISHED": 2}
    assert callee_side(rows, CALLEE) == {"ESTABLISHED": 3}


def test_read_sockets_finds_a_process_own_connection_by_exact_pair():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                reading = read_sockets(psutil.Process().pid)
                assert reading is not None
                fds, rows = reading
                assert fds >= 3
                pair = SocketRow(client.getsockname(), listener.getsockname(), "ESTABLISHED")
                assert pair in rows
                assert caller_side(rows, listener.getsockname()) == {"ESTABLISHED": 1}
                assert callee_side(rows, listener.getsockname()) == {"ESTABLISHED": 1}


def test_read_sockets_of_a_gone_process_is_none():
    process = psutil.Popen(["true"])
    process.wait()
    assert read_sockets(process.pid) is None


async def test_own_counts_match_psutil_and_count_connected_sockets():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with socket.create_connection(listener.getsockname()):
            counts = own_counts(listening=1)
            fds = psutil.Process().num_fds()
    # psutil's count of its own process includes the fd of its own listing.
    assert counts["fds"] == fds - 1
    assert counts["connections"] >= 1
    assert counts["tasks"] >= 1  # this test's own


@pytest.mark.parametrize(("connection", "header"), [("close", "close"), ("keep-alive", None)])
async def test_callee_hello_reports_its_counts_and_says_connection_close(connection, header):
    app = create_app(CalleeSettings(listen_fd=0, connection=connection))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://callee"
    ) as client:
        hello = (await client.get("/hello")).raise_for_status()
        counts = (await client.get("/counts")).raise_for_status()
    assert hello.headers.get("connection") == header
    assert "connection" not in counts.headers
    assert set(hello.json()) == {"side", "pid", "tasks", "fds", "connections"}
    assert hello.json()["tasks"] >= 1
