"""Tests for leaklab.children: a child's stdout as a pipe beside its log, Ctrl-C then stop, and
a listening socket bound here and served by the child."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest

from leaklab.children import ChildProcess, bind_listener, clean_env

pytestmark = pytest.mark.timeout(60)

PRINT_THEN_WAIT = (
    "import sys, time\n"
    "print('to the log', file=sys.stderr, flush=True)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_captured_stdout_is_a_pipe_and_stderr_goes_to_the_log(tmp_path: Path) -> None:
    child = ChildProcess([sys.executable, "-c", PRINT_THEN_WAIT], {}, tmp_path / "child.log",
                         capture_stdout=True)  # fmt: skip
    with child:
        assert child.stdout.readline() == b"ready\n"
    assert "to the log" in child.log_tail()
    assert not child.is_running()


def test_interrupt_sends_ctrl_c_and_returns_the_exit_code(tmp_path: Path) -> None:
    child = ChildProcess([sys.executable, "-c", PRINT_THEN_WAIT], {}, tmp_path / "child.log",
                         capture_stdout=True).start()  # fmt: skip
    assert child.stdout.readline() == b"ready\n"  # its KeyboardInterrupt handling is set up
    # Python ends an unhandled KeyboardInterrupt by dying of SIGINT, as a shell expects.
    assert child.interrupt(timeout_s=20.0) == -signal.SIGINT
    assert "KeyboardInterrupt" in child.log_tail()
    assert child.interrupt() is None  # stopped already: nothing to do


def test_a_listener_bound_here_is_served_by_the_child(tmp_path: Path) -> None:
    serve_one = (
        "import socket, sys\n"
        "listener = socket.socket(fileno=int(sys.argv[1]))\n"
        "conn, _ = listener.accept()\n"
        "conn.sendall(b'hello')\n"
        "conn.close()\n"
    )
    with bind_listener("127.0.0.1") as listener:
        port = listener.getsockname()[1]
        fd = listener.fileno()
        child = ChildProcess([sys.executable, "-c", serve_one, str(fd)], {},
                             tmp_path / "child.log", pass_fds=(fd,)).start()  # fmt: skip
    # Ours is closed; the child's copy still listens on the port we learned before it started.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            assert client.recv(16) == b"hello"
        assert child.wait(20.0) == 0
    finally:
        child.stop()


def test_the_child_env_is_explicit_whatever_the_shell_has(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "warning")
    env = clean_env({"FANOUT": "asgi"})
    assert "LOG_LEVEL" not in env and env["FANOUT"] == "asgi" and env["PYTHONUNBUFFERED"] == "1"
