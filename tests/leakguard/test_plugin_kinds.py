"""Each kind of leak the guard knows, reported with its kind and count; the fixed test passes.

Every example file holds a leaking test and the same test with the fix. A leak fails the
leaking test's teardown (pytest counts it as an error), and the fixed test passes.
"""

from __future__ import annotations

import textwrap

import pytest

from tests.leakguard.conftest import RunExample

pytestmark = pytest.mark.timeout(120)

TASKS = """
import asyncio

KEEP = []

async def forever():
    await asyncio.sleep(3600)

async def test_leaks():
    KEEP.extend(asyncio.create_task(forever()) for _ in range(3))
    KEEP.append(asyncio.create_task(asyncio.Event().wait()))

async def test_fixed():
    tasks = [asyncio.create_task(forever()) for _ in range(3)]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
"""

THREADS = """
import threading

STOP = threading.Event()

def test_leaks():
    threading.Thread(target=STOP.wait, name="poller", daemon=True).start()

def test_fixed():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="poller")
    thread.start()
    stop.set()
    thread.join()
"""

PROCESSES = """
import subprocess
import sys

KEEP = []

def test_leaks():
    KEEP.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]))

def test_fixed():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    child.kill()
    child.wait()

def teardown_module():
    for child in KEEP:
        child.kill()
        child.wait()
"""

FILES = """
KEEP = []

def test_leaks(tmp_path):
    KEEP.append(open(tmp_path / "journal.txt", "w"))

def test_fixed(tmp_path):
    with open(tmp_path / "journal.txt", "w") as journal:
        journal.write("ok")
"""

# The client leaves; the server side was never closed: CLOSE_WAIT, with the peer's address.
CLOSE_WAIT = """
import socket

KEEP = []

def test_leaks():
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    client.close()
    listener.close()
    KEEP.append(server)

def test_fixed():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        client.close()
        server.close()
"""

CASES = {
    "tasks": (
        TASKS,
        [
            "*ERROR at teardown of test_leaks*",
            "leak guard: 4 tasks left behind by test_example.py::test_leaks *",
            "4 asyncio tasks still pending:",
            "    3 @ forever > sleep  (test_example.py:*; cancelled when its loop closed)",
            "    1 @ Event.wait  (*; cancelled when its loop closed)",
            "    tasks: cancel and await the tasks you start*",
        ],
    ),
    "threads": (
        THREADS,
        [
            "leak guard: 1 thread left behind by test_example.py::test_leaks *",
            "1 thread still alive:",
            "    'poller' (target threading.Event.wait), daemon",
        ],
    ),
    "processes": (
        PROCESSES,
        [
            "leak guard: 1 child process left behind by test_example.py::test_leaks *",
            "1 child process never waited for:",
            "    pid * sleeping: *python* -c import time; time.sleep(30)",
        ],
    ),
    "files": (
        FILES,
        [
            "leak guard: 1 fd left behind by test_example.py::test_leaks *",
            "1 fd still open: 1 file",
            "    fd * file */test_leaks0/journal.txt",
            "    fds: close what you open*",
        ],
    ),
    "close_wait": (
        CLOSE_WAIT,
        [
            "leak guard: 1 fd left behind by test_example.py::test_leaks *",
            "1 fd still open: 1 socket",
            "    fd * socket tcp CLOSE_WAIT local 127.0.0.1:* peer 127.0.0.1:*",
        ],
    ),
}


@pytest.mark.parametrize("kind", CASES)
def test_leak_is_reported_and_the_fix_passes(run_example: RunExample, kind: str) -> None:
    """The leaking test errors at teardown with kind and count; its fixed twin passes."""
    source, expected = CASES[kind]
    result = run_example(source, "--leak-guard")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(expected)
    result.stdout.no_fnmatch_line("*ERROR at teardown of test_fixed*")


# A real uvicorn app on a real socket, in a thread: the WebSocket endpoint accepts and never
# reads. Once one message waits for the app, uvicorn stops reading and the rest stays in the
# kernel's receive queue of the server's socket, which this process holds.
UVICORN = """
import asyncio
import os
import socket
import threading
import time

import pytest
import uvicorn
from websockets.client import ClientProtocol
from websockets.uri import parse_uri


async def without_reader(scope, receive, send):
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await asyncio.Event().wait()  # the bug: never receive()


async def with_reader(scope, receive, send):
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass  # the fix: drain and discard


@pytest.fixture
def server(request):
    config = uvicorn.Config(
        request.param, host="127.0.0.1", port=0, ws="websockets-sansio", loop="asyncio",
        lifespan="off", log_level="critical", timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def client(server):
    sock = socket.create_connection(("127.0.0.1", server), timeout=5)
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{server}/"))
    protocol.send_request(protocol.connect())
    sock.sendall(b"".join(protocol.data_to_send()))
    while not protocol.events_received():
        protocol.receive_data(sock.recv(4096))
    yield sock, protocol
    sock.close()


def send_until_full(sock, protocol, limit_bytes=1 << 20):
    # Without a reader the kernel's buffers fill and send() would block: stop there.
    sock.setblocking(False)
    sent = 0
    try:
        while sent < limit_bytes:
            protocol.send_binary(os.urandom(4096))
            data = memoryview(b"".join(protocol.data_to_send()))
            while data:
                count = sock.send(data)
                data, sent = data[count:], sent + count
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)


@pytest.mark.parametrize("server", [without_reader], indirect=True)
def test_leaks(client):
    send_until_full(*client)


@pytest.mark.parametrize("server", [with_reader], indirect=True)
def test_fixed(client):
    send_until_full(*client)
"""


def test_server_socket_with_unread_bytes_is_reported(run_example: RunExample) -> None:
    """A uvicorn endpoint without a reader: its socket's unread bytes at the end of the test."""
    result = run_example(UVICORN, "--leak-guard")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "leak guard: 1 unread backlog left behind by test_example.py::test_leaks*",
            "unread backlog at the end of the test: 1 socket, * bytes never read",
            "    fd * tcp ESTABLISHED local 127.0.0.1:* peer 127.0.0.1:*: * bytes received, "
            "never read",
            "    backlog: read what the peer sends*",
        ]
    )
    result.stdout.no_fnmatch_line("*ERROR at teardown of test_fixed*")


def test_unaccepted_connections_are_an_unread_backlog(run_example: RunExample) -> None:
    """A LISTEN socket with connections nobody accepted is reported with their number."""
    source = textwrap.dedent(
        """
        import socket
        import pytest

        KEEP = []

        @pytest.mark.leak_guard(ignore=["fds"])
        def test_leaks():
            listener = socket.create_server(("127.0.0.1", 0), backlog=16)
            KEEP.append(listener)
            KEEP.extend(socket.create_connection(listener.getsockname()) for _ in range(2))
        """
    )
    result = run_example(source)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "unread backlog at the end of the test: 1 socket",
            "    fd * tcp LISTEN local 127.0.0.1:*: 2 connections never accepted "
            "(listen backlog 16)",
        ]
    )
