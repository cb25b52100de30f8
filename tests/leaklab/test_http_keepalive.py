"""The http-keepalive story end to end: its quick matrix against real uvicorn processes, and
a clean interrupt (every child gone, checked by pid)."""

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

CHARTS = (
    "caller_close_wait", "caller_established", "callee_established", "caller_fds",
    "callee_fds", "tasks", "requests",
)  # fmt: skip


def lab_command(out: Path) -> list[str]:
    """The story's quick matrix, as a user would run it."""
    return [sys.executable, "-m", "leaklab", "run", "http-keepalive", "--quick", "--out", str(out)]


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie not yet reaped by a dead parent counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
def test_quick_matrix_yields_leak_mask_and_fixes(demo_run: DemoRun) -> None:
    """Leak on both sides, masked into the caller's CLOSE_WAIT, and two healthy fixes."""
    out = demo_run.out
    cells = demo_run.cells("http-keepalive")
    assert [
        (c["settings"]["client"], c["settings"]["keep_alive"], c["verdict"]) for c in cells
    ] == [
        ("unclosed", "3600s", "leak"),
        ("unclosed", "2s", "masked"),
        ("closed", "3600s", "healthy"),
        ("shared", "3600s", "healthy"),
    ]
    assert all(c["story"] == "http-keepalive" and not c["surprise"] for c in cells)
    leak, masked, closed, shared = (c["figures"] for c in cells)
    requests = leak["requests"]
    assert requests == 150 and leak["errors"] == 0
    # One connection per request on each side, held; no task per idle connection.
    assert leak["caller_link_end"].get("ESTABLISHED", 0) >= requests - 2
    assert leak["callee_link_sockets_end"] >= requests - 2
    assert leak["callee_fds_end"] - leak["callee_fds_start"] >= requests - 2
    assert leak["callee_tasks_end"] - leak["callee_tasks_start"] <= 2
    # The mask: the callee is back to nothing, every caller socket waits in CLOSE_WAIT.
    assert masked["callee_link_sockets_end"] == 0 and masked["callee_link_sockets_peak"] > 10
    assert masked["caller_link_end"].get("CLOSE_WAIT", 0) >= requests - 2
    assert masked["callee_fds_end"] - masked["callee_fds_start"] <= 2
    for fixed in (closed, shared):
        assert fixed["caller_link_sockets_peak"] <= 2 and fixed["callee_link_sockets_end"] <= 1
    for chart in CHARTS:
        assert (out / f"http-keepalive_{chart}.png").stat().st_size > 0
    samples = demo_run.samples("http-keepalive")
    assert {s["cell"] for s in samples} == {c["name"] for c in cells}
    assert all("caller_fds" in s and "callee_tasks" in s for s in samples)
    pids = [pid for cell in demo_run.processes("http-keepalive") for pid in cell["pids"].values()]
    assert len(pids) == 8 and all(map(gone, pids))


@pytest.mark.timeout(90)
def test_interrupted_lab_leaves_no_child_behind(tmp_path: Path) -> None:
    """Ctrl-C in the middle of a cell stops the caller and the callee."""
    lab = subprocess.Popen(
        lab_command(tmp_path / "report"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "CI": "true"},
    )
    try:
        children = wait_for_children(lab.pid, count=2, timeout_s=60)
        lab.send_signal(signal.SIGINT)
        assert lab.wait(timeout=30) == 130
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    assert all(map(gone, children))


def wait_for_children(pid: int, count: int, timeout_s: float) -> list[int]:
    """The pids of the lab's story children once ``count`` of them listen on a socket."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listening = []
        for child in psutil.Process(pid).children(recursive=True):
            try:
                if any(c.status == "LISTEN" for c in child.net_connections("tcp")):
                    listening.append(child.pid)
            except psutil.NoSuchProcess:
                continue
        if len(listening) >= count:
            return listening
        time.sleep(0.1)
    pytest.fail("the lab started no callee and caller")
