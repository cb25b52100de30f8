"""The grpc-unclosed story end to end: its quick matrix against real processes, and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.utils import DEMO_TEST_TIMEOUT_S, DemoRun

CHARTS = ("server_connections", "server_fds", "held_channels", "errors", "threads")


def lab_command(out: Path) -> list[str]:
    """The story's quick matrix, as a user would run it."""
    return [sys.executable, "-m", "leaklab", "run", "grpc-unclosed", "--quick", "--out", str(out)]


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
def test_quick_matrix_shows_the_leak_the_trap_and_the_fixes(demo_run: DemoRun) -> None:
    out = demo_run.out
    cells = demo_run.cells("grpc-unclosed")
    assert [(c["settings"]["client"], c["settings"]["pool"], c["verdict"]) for c in cells] == [
        ("leak-per-call-held", "local", "leak"),
        ("leak-per-call-held", "shared", "masked"),
        ("close-each", "local", "healthy"),
        ("reuse-one", "local", "healthy"),
    ]
    assert all(c["story"] == "grpc-unclosed" and not c["surprise"] for c in cells)
    leak, trap, closed, reused = (c["figures"] for c in cells)
    # One connection and one fd per held channel, up to the server's fd limit.
    assert leak["held_channels"] >= 200
    assert leak["server_connections"]["peak"] >= 200
    assert leak["server_fds"]["peak"] >= leak["server_connections"]["peak"]
    assert leak["server_threads"]["peak"] <= leak["server_threads"]["start"] + 2
    # The leaking client's fds grow with it; at the limit new calls fail (if it was reached).
    assert leak["client_fds"]["peak"] >= leak["server_connections"]["peak"]
    if leak["fd_limit_reached_s"] is not None:
        assert leak["first_error"]["code"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    assert leak["server_after_exit"]["established"] == 0
    # The trap: as many held channels, one connection.
    assert trap["held_channels"] >= 100 and trap["server_connections"]["peak"] <= 1
    assert closed["held_channels"] == 0 and closed["server_connections"]["peak"] <= 1
    assert reused["held_channels"] == 1 and reused["server_connections"]["peak"] == 1
    assert all(not f["errors"] for f in (trap, closed, reused))
    for chart in CHARTS:
        assert (out / f"grpc-unclosed_{chart}.png").stat().st_size > 0
    pids = [c["processes"][key] for c in cells for key in ("server_pid", "client_pid")]
    assert len(set(pids)) == 8 and all(gone(pid) for pid in pids)
    # The story's own seconds (load and recovery); the runner may add its wait for the host's
    # TCP memory to settle between cells, which other programs on the machine can stretch.
    assert sum(c["figures"]["duration_s"] for c in cells) <= 30


@pytest.mark.timeout(90)
def test_ctrl_c_in_the_leak_cell_stops_server_and_client(tmp_path: Path) -> None:
    lab = subprocess.Popen(
        lab_command(tmp_path / "report"), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "CI": "true"},
    )  # fmt: skip
    try:
        children = wait_for_children(lab.pid, 2, timeout_s=60)
        stats = tmp_path / "report" / "logs"
        wait_until(lambda: any(p.stat().st_size for p in stats.glob("*.client-stats.jsonl")), 30)
        lab.send_signal(signal.SIGINT)
        assert lab.wait(timeout=30) == 130
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    assert all(gone(pid) for pid in children)


def wait_for_children(pid: int, count: int, timeout_s: float) -> list[int]:
    """The pids of the lab's server and client, once both run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [
            child.pid
            for child in psutil.Process(pid).children(recursive=True)
            if any("grpc_unclosed" in part for part in _cmdline(child))
        ]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    pytest.fail("the lab did not start its server and client")


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def wait_until(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(0.1)
