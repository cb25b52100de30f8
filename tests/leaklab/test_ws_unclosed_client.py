"""The ws-unclosed client: failure kinds (pure), and each way of handling connections against
a real service."""

from __future__ import annotations

import errno
import io
import json
import subprocess
import sys

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidMessage, InvalidStatus
from websockets.http11 import Response

from leaklab.stories.ws_unclosed.client import failure_kind, run
from tests.conftest import Launch
from tests.utils import wait_until


def invalid_message(cause: BaseException) -> InvalidMessage:
    exc = InvalidMessage("did not receive a valid HTTP response")
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (InvalidStatus(Response(503, "Service Unavailable", Headers())), "http_503"),
        (invalid_message(EOFError("connection closed")), "dropped"),
        (invalid_message(ConnectionResetError()), "reset"),
        (TimeoutError(), "timeout"),
        (ConnectionResetError(), "reset"),
        (ConnectionRefusedError(), "refused"),
        (OSError(errno.EMFILE, "Too many open files"), "os_EMFILE"),
        (ConnectionClosedError(None, None), "closed"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_failures_are_named_by_kind(exc: BaseException, kind: str) -> None:
    assert failure_kind(exc) == kind


async def run_client(url: str, client: str, duration_s: float = 1.2) -> list[dict]:
    """The client's lines; what it held is closed afterwards (the process would exit)."""
    out = io.StringIO()
    reconciler = await run(url, client, 40.0, duration_s, out)
    for ws in reconciler.held:
        await ws.close()
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.timeout(60)
async def test_the_unclosed_client_holds_every_connection_until_the_cap(launch: Launch) -> None:
    service = launch(MAX_SESSIONS="5", READ_HANDLER="fixed")
    lines = await run_client(service.ws_url, "unclosed")
    last = lines[-1]
    assert last["opened"] == 5 == last["held"]
    assert last["failed"]["http_503"] == last["requests"] - 5 > 0
    assert last["first_failure_s"] is not None
    assert len(lines) == 2  # a line a second, and the last one
    await wait_until(lambda: service.stats()["connections"] == 0, timeout_s=10, what="released")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("client", "opened_at_most"), [("closed", None), ("reused", 1)])
async def test_the_fixed_clients_never_pile_up(
    launch: Launch, client: str, opened_at_most: int | None
) -> None:
    service = launch(MAX_SESSIONS="5", READ_HANDLER="fixed")
    last = (await run_client(service.ws_url, client))[-1]
    assert last["failed"] == {} and last["requests"] >= 20
    assert last["held"] <= 1
    assert last["opened"] == (opened_at_most or last["requests"])
    assert service.stats()["sessions_refused"] == 0


def test_the_client_refuses_a_remote_target() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "leaklab.stories.ws_unclosed.client", "ws://192.0.2.1/ws"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and "not a loopback address" in result.stderr
