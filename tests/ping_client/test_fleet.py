"""The swarm over worker processes, against a real service: the kernel's count, the merged
summary, the memory guard, a worker's crash, Ctrl-C, and nothing left behind."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from ping_client.errors import WorkerFailed
from ping_client.fleet import Fleet
from ping_client.limits import read_limits
from ping_client.plan import plan_swarm
from ping_client.safety import read_memory
from ping_client.swarm import SwarmConfig
from sockscope.netlink import read_sockets
from tests.conftest import Launch
from tests.ping_client.test_swarm import unread_loopback_data
from tests.utils import ss_sockets, wait_until

pytestmark = pytest.mark.timeout(90)


def fleet(config: SwarmConfig) -> Fleet:
    plan = plan_swarm(config.clients, config.processes, limits=read_limits(), host="127.0.0.1")
    return Fleet(config, plan)


def established_from(sources: tuple[str, ...], server: tuple[str, int]) -> dict[str, int]:
    """The kernel's ESTABLISHED client sockets to ``server``, by exact source address."""
    return {
        source: len(
            read_sockets(local=(source, None), remote=server, states=("ESTABLISHED",), skmem=False)
        )
        for source in sources
    }


def worker_children() -> list[psutil.Process]:
    """This process's children that are swarm workers."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "ping_client.worker" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


async def test_5000_connections_over_two_workers_and_two_source_addresses(
    launch: Launch,
) -> None:
    """The kernel holds 5,000 ESTABLISHED client sockets from two addresses; all gone after."""
    service = launch(fd_limit=8000, READ_HANDLER="on")
    server = ("127.0.0.1", service.port)
    config = SwarmConfig(url=service.ws_url, clients=5000, ramp_per_s=1000, interval_s=1.0,
                         size_bytes=64, duration_s=60, processes=2)  # fmt: skip
    swarm = fleet(config)
    sources = swarm.plan.source_addresses
    assert len(sources) == 2
    samples: list[dict] = []
    run = asyncio.create_task(swarm.run(samples.append))
    try:
        # Every handshake done (the workers' count), then what the kernel holds.
        await wait_until(lambda: any(s["connected"] == 5000 for s in samples), timeout_s=45,
                         every_s=0.2, what="the workers report 5,000 connected")  # fmt: skip
        by_source = established_from(sources, server)
        # The witness: ss, by the service's exact address and port.
        witness = collections.Counter(
            s.local.rsplit(":", 1)[0]
            for s in ss_sockets("state", "established", "dst", f"127.0.0.1:{service.port}")
        )
        assert len(worker_children()) == 2
    finally:
        swarm.stop()
        summary = await run
    assert by_source == {sources[0]: 2500, sources[1]: 2500}
    assert {source: witness[source] for source in sources} == by_source
    assert summary["processes"] == 2
    assert summary["clients"] == summary["opened"] == summary["connected_peak"] == 5000
    assert summary["connect_failures"] == {}
    assert summary["connected_at_end"] == 5000
    assert summary["pings_sent"] > 0
    assert [w["exit_code"] for w in summary["workers"]] == [0, 0]
    assert summary["kernel_read_ms"]["samples"] >= 1
    assert max(s["client_established"] for s in samples) == 5000
    assert worker_children() == []
    await wait_until(lambda: sum(established_from(sources, server).values()) == 0,
                     timeout_s=10, what="every client socket is gone")  # fmt: skip


async def test_a_worker_crash_ends_the_run_with_a_clear_error_and_no_orphans(
    launch: Launch,
) -> None:
    """SIGKILL one worker: the run fails naming it, the other is stopped, both are reaped."""
    service = launch(READ_HANDLER="on")
    config = SwarmConfig(url=service.ws_url, clients=200, ramp_per_s=400, duration_s=60,
                         processes=2)  # fmt: skip
    swarm = fleet(config)
    samples: list[dict] = []
    run = asyncio.create_task(swarm.run(samples.append))
    try:
        await wait_until(lambda: any(s["connected"] == 200 for s in samples), timeout_s=30,
                         what="every client is connected")  # fmt: skip
        victim = swarm.worker_pids[0]
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(WorkerFailed) as caught:
            await asyncio.wait_for(run, timeout=30)
    finally:
        swarm.stop()
        if not run.done():
            run.cancel()
    assert f"worker 0 (pid {victim}) was killed by SIGKILL" in str(caught.value)
    assert worker_children() == []
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                   for pid in swarm.worker_pids)  # fmt: skip
    server = ("127.0.0.1", service.port)
    await wait_until(lambda: sum(established_from(swarm.plan.source_addresses, server).values())
                     == 0, timeout_s=10, what="every client socket is gone")  # fmt: skip


async def test_the_memory_guard_stops_every_worker_from_sending(launch: Launch) -> None:
    """A guard below the host's TCP memory: both workers connect and send nothing."""
    service = launch(READ_HANDLER="on")
    config = SwarmConfig(url=service.ws_url, clients=20, interval_s=0.05, duration_s=3,
                         tcp_mem_guard=1e-9, processes=2)  # fmt: skip
    with unread_loopback_data():  # an idle host may account 0 bytes: then nothing trips
        await wait_until(lambda: read_memory().used_bytes > 0, timeout_s=10,
                         what="the kernel accounts TCP memory")  # fmt: skip
        summary = await fleet(config).run()
    assert summary["connected_peak"] == 20
    assert summary["pings_sent"] == 0
    assert "stopped sending" in summary["tcp_mem_guard_tripped"]


@pytest.mark.parametrize("processes", [1, 2])
def test_cli_ctrl_c_stops_the_workers_and_still_prints_the_merged_summary(
    launch: Launch, tmp_path: Path, processes: int
) -> None:
    """SIGINT to ping-swarm: connections closed, workers (if any) reaped, summary written,
    exit 0."""
    service = launch(READ_HANDLER="on")
    out = tmp_path / "summary.json"
    swarm = subprocess.Popen(
        [sys.executable, "-m", "ping_client", "--url", service.ws_url, "--clients", "100",
         "--processes", str(processes), "--duration", "60", "--json-out", str(out)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CI": "true"},
    )  # fmt: skip
    try:
        assert swarm.stderr is not None
        for line in swarm.stderr:  # one line a second; wait for every client
            if "connected=100 " in line:
                break
        workers = psutil.Process(swarm.pid).children()
        assert len(workers) == (processes if processes > 1 else 0)
        swarm.send_signal(signal.SIGINT)
        _, rest = swarm.communicate(timeout=30)
    finally:
        if swarm.poll() is None:
            swarm.kill()
            swarm.communicate()
    assert swarm.returncode == 0, rest
    assert "ping swarm summary" in rest
    summary = json.loads(out.read_text())
    assert summary["processes"] == processes
    assert summary["connected_peak"] == summary["connected_at_end"] == 100
    assert not any(w.is_running() and w.status() != "zombie" for w in workers)


def test_cli_says_before_starting_when_one_process_cannot_hold_the_clients() -> None:
    """Past the fd hard limit with --processes 1: a usage error with the numbers, nothing run."""
    hard = read_limits().fd_hard_limit
    result = subprocess.run(
        [sys.executable, "-m", "ping_client", "--clients", str(hard + 1), "--processes", "1"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"fd hard limit {hard}" in result.stderr
    assert "--processes 2 or more" in result.stderr


def test_workers_stop_by_themselves_when_their_parent_dies(launch: Launch) -> None:
    """SIGKILL the parent: its workers see their stdin close, close their clients and exit."""
    service = launch(READ_HANDLER="on")
    swarm = subprocess.Popen(
        [sys.executable, "-m", "ping_client", "--url", service.ws_url, "--clients", "100",
         "--processes", "2", "--duration", "60"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CI": "true"},
    )  # fmt: skip
    try:
        assert swarm.stderr is not None
        for line in swarm.stderr:
            if "connected=100 " in line:
                break
        workers = psutil.Process(swarm.pid).children()
        assert len(workers) == 2
        swarm.kill()
        swarm.wait(timeout=10)
    finally:
        if swarm.poll() is None:
            swarm.kill()
            swarm.wait()
        if swarm.stderr is not None:
            swarm.stderr.close()
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert alive == []
    server = ("127.0.0.1", service.port)
    assert sum(established_from(("127.0.0.2", "127.0.0.3"), server).values()) == 0
