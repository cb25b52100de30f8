"""The swarm's churn against real services: clients arrive in batches and leave normally."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ping_client.swarm import Swarm, SwarmConfig
from tests.conftest import Launch
from tests.utils import eventually

pytestmark = pytest.mark.timeout(60)


def churn(url: str, **overrides: Any) -> SwarmConfig:
    """3 clients, then 3 more every 0.5 s, each for 1 s, subscribed to a type nobody sends."""
    fields: dict[str, Any] = dict(
        url=url, clients=3, ramp_per_s=30.0, interval_s=0.05, size_bytes=4096, duration_s=3.2,
        churn_every_s=0.5, churn_batch=3, client_lifetime_s=1.0, subscribe=("deploy",),
    )  # fmt: skip
    return SwarmConfig(**{**fields, **overrides})


def sessions_against_clients(service: Any, swarm: Swarm, seen: list[tuple[int, int, int]]):
    """An on_sample callback that records (service sessions, active clients, clients left)."""

    def on_sample(sample: dict[str, Any]) -> None:
        seen.append((service.stats()["connections"], sample["active"], sample["left"]))

    return on_sample


async def test_a_reading_server_reaps_each_client_that_leaves(launch: Launch) -> None:
    """READ_HANDLER=fixed: every close is answered, the sessions follow the active clients."""
    service = launch(READ_HANDLER="fixed")
    swarm = Swarm(churn(service.ws_url))
    seen: list[tuple[int, int, int]] = []
    summary = await swarm.run(sessions_against_clients(service, swarm, seen))
    assert summary["opened"] >= 3 + 3 * 5
    assert summary["left"] >= 9
    assert summary["left_unanswered"] == 0
    assert summary["connect_failures"] == {}
    later = [(sessions, active) for sessions, active, left in seen if left >= 6]
    assert later and all(abs(sessions - active) <= 1 for sessions, active in later), seen
    assert await eventually(lambda: service.stats()["connections"] == 0, timeout_s=5)


async def test_a_server_that_does_not_read_keeps_every_client_that_left(launch: Launch) -> None:
    """READ_HANDLER=missing: no close is ever answered and the dead sessions pile up."""
    service = launch(READ_HANDLER="missing")
    swarm = Swarm(churn(service.ws_url))
    seen: list[tuple[int, int, int]] = []
    summary = await swarm.run(sessions_against_clients(service, swarm, seen))
    assert summary["left"] >= 9
    assert summary["left_unanswered"] == summary["left"]
    sessions, active, left = seen[-1]
    assert sessions - active >= left - 3, seen  # the dead: all but the last batch to leave
    assert sessions > active


async def test_without_churn_the_clients_stay_to_the_end(launch: Launch) -> None:
    """The default: the clients connect once; none leaves before the run ends."""
    service = launch(READ_HANDLER="fixed")
    config = SwarmConfig(url=service.ws_url, clients=3, interval_s=0.1, duration_s=1.5)
    summary = await Swarm(config).run()
    assert (summary["opened"], summary["left"], summary["connected_at_end"]) == (3, 0, 3)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m ping_client ARGS`` without a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "ping_client", *args], capture_output=True, text=True,
        timeout=45, stdin=subprocess.DEVNULL, env={**os.environ, "CI": "true"},
    )  # fmt: skip


def test_cli_churns_and_says_so(launch: Launch, tmp_path: Path) -> None:
    """The churn options reach the swarm; the live line and the summary show who left."""
    service = launch(READ_HANDLER="fixed")
    out = tmp_path / "summary.json"
    result = run_cli("--url", service.ws_url, "--clients", "2", "--churn-every", "0.5",
                     "--churn-batch", "2", "--lifetime", "1", "--subscribe", "deploy",
                     "--duration", "2.6", "--json-out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "left=" in result.stderr
    assert "clients opened / left" in result.stderr
    summary = json.loads(out.read_text())
    assert summary["config"]["subscribe"] == ["deploy"]
    assert summary["opened"] >= 8 and summary["left"] >= 4
    assert summary["left_unanswered"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subscribe", " , "], "--subscribe"),
        (["--subscribe", "a b"], "invalid event type"),
        (["--churn-every", "-1"], "--churn-every"),
        (["--churn-every", "0.01"], "--churn-every must be from 0.1"),
        (["--churn-batch", "0"], "--churn-batch"),
        (["--lifetime", "-2"], "--lifetime"),
    ],
)
def test_cli_refuses_bad_churn_options(args: list[str], message: str) -> None:
    result = run_cli(*args, "--duration", "1")
    assert result.returncode == 2
    assert message in result.stderr


def test_help_describes_the_churn_options() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("--churn-every", "--churn-batch", "--lifetime", "--subscribe"):
        assert option in result.stdout
