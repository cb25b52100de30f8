"""Fixtures: real event services in child processes on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from event_service.settings import FANOUTS, settings_from_env
from leaklab.children import ServiceProcess

# Shared helpers live in tests/utils.py; these names stay importable from here too.
from tests.utils import AMQP_URL, eventually, kernel_server_sockets, wait_until

__all__ = [
    "AMQP_URL",
    "BOTH_FANOUTS",
    "Launch",
    "eventually",
    "fanout",
    "kernel_server_sockets",
    "launch",
    "wait_until",
]

Launch = Callable[..., ServiceProcess]


# Tests that both fan-out paths must pass: ``pytestmark = BOTH_FANOUTS`` (or as a decorator)
# runs each of them once with FANOUT=asgi and once with FANOUT=direct.
BOTH_FANOUTS = pytest.mark.parametrize("fanout", FANOUTS, indirect=True)


@pytest.fixture
def fanout(request: pytest.FixtureRequest) -> str | None:
    """The ``FANOUT`` services of this test get (parametrized by :data:`BOTH_FANOUTS`);
    None: the service's default."""
    value: str | None = getattr(request, "param", None)
    return value


@pytest.fixture
def launch(tmp_path: Path, fanout: str | None) -> Iterator[Launch]:
    """Start event services with the given settings; every one is stopped after the test."""
    started: list[ServiceProcess] = []
    defaults = {"HOST": "127.0.0.1", "PORT": "0", "EVENT_RATE": "0"}
    if fanout is not None:
        defaults["FANOUT"] = fanout

    def start(fd_limit: int | None = None, **env: str) -> ServiceProcess:
        env = {**defaults, **env}
        service = ServiceProcess(
            settings_from_env(env), tmp_path / f"service-{len(started)}.log", fd_limit=fd_limit
        )
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()
