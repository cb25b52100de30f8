"""The story's two programs as child processes, each on a loopback socket the lab bound.

The lab binds the listening socket itself, so each side's exact address is known before its
child starts (the sockets of the story are then told apart by exact address pairs, never by a
port number alone); the child gets the socket by fd and is ready when ``/counts`` answers.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import httpx

from leaklab.children import ChildProcess
from leaklab.errors import LaunchError
from leaklab.stories.http_keepalive.settings import CalleeSettings, CallerSettings, render_env

__all__ = ["AppProcess", "bind_loopback"]

HOST = "127.0.0.1"
_PACKAGE = "leaklab.stories.http_keepalive"


def bind_loopback() -> socket.socket:
    """A listening TCP socket on a free loopback port (``pass_fds`` hands it to one child)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((HOST, 0))
        listener.listen(socket.SOMAXCONN)
    except OSError:
        listener.close()
        raise
    return listener


class AppProcess(ChildProcess):
    """``python -m leaklab.stories.http_keepalive.<role>`` on a socket bound here."""

    def __init__(
        self, role: str, settings: CalleeSettings | CallerSettings, listener: socket.socket,
        log_path: Path,
    ) -> None:  # fmt: skip
        if settings.listen_fd != listener.fileno():
            raise ValueError("settings.listen_fd must be the listener's fd")
        self.address: tuple[str, int] = listener.getsockname()
        self.settings = settings
        super().__init__(
            [sys.executable, "-m", f"{_PACKAGE}.{role}"],
            render_env(settings),
            log_path,
            pass_fds=(listener.fileno(),),
        )
        self.role = role

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.address[0]}:{self.address[1]}"

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until ``/counts`` answers; raise :class:`LaunchError` with the log if not."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                # A connection of its own, closed at once: not one the lab measures later.
                if (
                    httpx.get(f"{self.base_url}/counts", timeout=2.0, trust_env=False).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise LaunchError(f"{self.role} did not answer /counts in time:\n{self.log_tail()}")
