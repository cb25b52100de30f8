"""The ``/ws`` endpoint's two ways in: FastAPI's route (asgi) and the lean app (direct)."""

from __future__ import annotations

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import BOTH_FANOUTS, Launch
from tests.utils import wait_until

pytestmark = [pytest.mark.timeout(60), BOTH_FANOUTS]

SESSIONS = 5


async def test_direct_sessions_skip_fastapis_stack_and_asgi_ones_take_its_route(
    launch: Launch, fanout: str
) -> None:
    """With FANOUT=direct no session waits inside FastAPI's routing; with asgi each does."""
    service = launch(READ_HANDLER="fixed")
    opts = {"ping_interval": None, "compression": None, "proxy": None}
    sessions: list[ClientConnection] = [
        await connect(service.ws_url, **opts)  # type: ignore[arg-type]
        for _ in range(SESSIONS)
    ]
    try:
        await wait_until(
            lambda: service.stats()["connections"] == SESSIONS, timeout_s=10, what="registered"
        )
        text = httpx.get(f"{service.base_url}/debug/tasks?debug=1", timeout=5).text
        groups = [line for line in text.splitlines() if "serve_subscriber" in line]
        assert len(groups) == 1 and groups[0].startswith(f"{SESSIONS} @ "), text
        if fanout == "direct":
            assert "LeanApp.__call__ > serve_subscriber > _serve" in groups[0]
            assert "subscribe" not in groups[0].replace("serve_subscriber", "")
        else:
            assert "LeanApp.__call__ > " in groups[0]  # passed on to FastAPI, whole
            assert "subscribe > serve_subscriber > _serve" in groups[0]
    finally:
        for ws in sessions:
            await ws.close()
    await wait_until(lambda: service.stats()["connections"] == 0, timeout_s=10, what="all gone")


def test_http_routes_are_fastapis_either_way(launch: Launch) -> None:
    """Everything but a direct ``/ws`` session goes to FastAPI, 404 included."""
    service = launch()
    assert httpx.get(f"{service.base_url}/healthz", timeout=5).json()["status"] == "ok"
    assert httpx.get(f"{service.base_url}/ws", timeout=5).status_code == 404
    assert httpx.get(f"{service.base_url}/nowhere", timeout=5).status_code == 404
