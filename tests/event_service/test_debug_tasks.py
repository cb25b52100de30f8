"""``GET /debug/tasks`` on a real service with a known number of leaked sessions."""

from __future__ import annotations

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import Launch
from tests.utils import wait_until

pytestmark = pytest.mark.timeout(60)

LEAKED = 12
TOKEN = "s3cret-token-for-tests"
OPTS = {"ping_interval": None, "compression": None, "proxy": None}


def group_counts(text: str, part: str) -> list[int]:
    """The counts of the dump's group lines whose chain holds ``part``."""
    return [
        int(line.split(" @ ", 1)[0])
        for line in text.splitlines()
        if " @ " in line and part in line.split(" @ ", 1)[1]
    ]


async def open_sessions(url: str, count: int) -> list[ClientConnection]:
    return [await connect(url, **OPTS) for _ in range(count)]  # type: ignore[arg-type]


async def test_leaked_sessions_of_the_missing_handler_are_one_group(launch: Launch) -> None:
    """N sessions that only write are N tasks parked at the same place: one line, count N."""
    service = launch(READ_HANDLER="missing")
    sessions = await open_sessions(service.ws_url, LEAKED)
    try:
        await wait_until(
            lambda: service.stats()["connections"] == LEAKED, timeout_s=10, what="all registered"
        )
        response = httpx.get(f"{service.base_url}/debug/tasks", timeout=5)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        assert text.startswith("tasks: total ")
        # Where the writer waits depends on FANOUT (for an event, or for the session's end).
        chain = "serve_subscriber > _serve > serve_without_reader > write_events > "
        assert group_counts(text, chain) == [LEAKED]
        # Largest first: the leaked sessions are the first group.
        first = text.splitlines()[2]
        assert first.startswith(f"{LEAKED} @ ") and "run_asgi" in first
    finally:
        for ws in sessions:
            await ws.close()


async def test_the_fixed_handler_has_two_tasks_per_session(launch: Launch) -> None:
    """With the reader, each session is a reader (the ASGI task) and a writer task."""
    service = launch(READ_HANDLER="fixed")
    sessions = await open_sessions(service.ws_url, LEAKED)
    try:
        await wait_until(
            lambda: service.stats()["connections"] == LEAKED, timeout_s=10, what="all registered"
        )
        text = httpx.get(f"{service.base_url}/debug/tasks?debug=1", timeout=5).text
        # uvicorn's receive queue: an asyncio.Queue, or with FANOUT=direct a ReceiveQueue.
        assert group_counts(text, "serve_with_reader > drain_messages > WebSocket.receive > "
                                  "WebSocketsSansIOProtocol.receive > ") == [LEAKED]  # fmt: skip
        assert "ReceiveQueue.get > Future" in text
        assert group_counts(text, "write_events > ") == [LEAKED]  # the writer task, apart
    finally:
        for ws in sessions:
            await ws.close()
    await wait_until(lambda: service.stats()["connections"] == 0, timeout_s=10, what="all gone")
    text = httpx.get(f"{service.base_url}/debug/tasks", timeout=5).text
    assert "drain_messages" not in text and "write_events" not in text


async def test_every_stack_with_debug_2(launch: Launch) -> None:
    service = launch(READ_HANDLER="missing")
    sessions = await open_sessions(service.ws_url, 3)
    try:
        await wait_until(lambda: service.stats()["connections"] == 3, timeout_s=10, what="3")
        text = httpx.get(f"{service.base_url}/debug/tasks?debug=2", timeout=5).text
        total = int(text.splitlines()[0].removeprefix("tasks: total "))
        assert text.count("\ntask ") == total
        assert text.count("    serve_without_reader  ") == 3
        assert "event_service/session.py:" in text
        bad = httpx.get(f"{service.base_url}/debug/tasks?debug=3", timeout=5)
        assert bad.status_code == 422
    finally:
        for ws in sessions:
            await ws.close()


def test_the_dump_is_guarded_like_the_other_admin_endpoints(launch: Launch) -> None:
    service = launch(ADMIN_TOKEN=TOKEN)
    url = f"{service.base_url}/debug/tasks"
    assert httpx.get(url, timeout=5).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    allowed = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert allowed.status_code == 200
    assert allowed.text.startswith("tasks: total ")
