"""Fixtures: real event services in child processes on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from event_service.settings import settings_from_env
from leaklab.children import ServiceProcess

# Shared helpers live in tests/utils.py; these names stay importable from here too.
from tests.utils import AMQP_URL, eventually, kernel_server_sockets, wait_until

__all__ = ["AMQP_URL", "Launch", "eventually", "kernel_server_sockets", "launch", "wait_until"]

Launch = Callable[..., ServiceProcess]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start event services with the given settings; every one is stopped after the test."""
    started: list[ServiceProcess] = []

    def start(fd_limit: int | None = None, **env: str) -> ServiceProcess:
        env = {"HOST": "127.0.0.1", "PORT": "0", "EVENT_RATE": "0", **env}
        service = ServiceProcess(
            settings_from_env(env), tmp_path / f"service-{len(started)}.log", fd_limit=fd_limit
        )
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()
