"""Liveness and readiness: /healthz always answers, /readyz follows the event source's state,
and /stats and /metrics carry it too. (The broker outage itself: tests/test_rabbitmq.py.)"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Launch

pytestmark = pytest.mark.timeout(60)


def test_the_embedded_source_is_always_ready(launch: Launch) -> None:
    service = launch()
    health = httpx.get(f"{service.base_url}/healthz", timeout=5)
    ready = httpx.get(f"{service.base_url}/readyz", timeout=5)
    assert (health.status_code, health.json()["broker"]) == (200, "embedded")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "broker": "embedded"})
    assert service.stats()["broker"] == "embedded"
    metrics = httpx.get(f"{service.base_url}/metrics", timeout=5).text
    assert 'event_service_broker_up{read_handler="missing",ws_impl="websockets-sansio"} 1.0' in (
        metrics
    )
