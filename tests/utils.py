"""Helpers the tests share: waiting for conditions, kernel readings, the broker's address."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from sockscope.kernel import read_tcp_sockets
from sockscope.procfs import CONNECTED_STATES, TcpSocket, server_sockets

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def kernel_server_sockets(port: int) -> list[TcpSocket]:
    """The service's connected sockets (as ``ss -t`` lists them) in the kernel now."""
    return [s for s in server_sockets(read_tcp_sockets(), port) if s.state in CONNECTED_STATES]


async def eventually(
    condition: Callable[[], bool], *, timeout_s: float, every_s: float = 0.05
) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)
    return True


async def wait_until(
    condition: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; fail the test with ``what`` after ``timeout_s``."""
    if not await eventually(condition, timeout_s=timeout_s, every_s=every_s):
        pytest.fail(f"timed out after {timeout_s} s waiting until {what}")
