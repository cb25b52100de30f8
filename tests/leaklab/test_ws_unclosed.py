"""The ws-unclosed story end to end: its quick matrix against real processes, and Ctrl-C."""

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

CHARTS = ("fds", "tasks", "established", "held", "healthz", "client_errors")


def lab_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "leaklab", "run", "ws-unclosed", "--quick", "--out", str(out)]


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def quick_run(demo_run: DemoRun) -> tuple[Path, dict, DemoRun]:
    """The story's quick matrix, from the session's one demo run."""
    return demo_run.out, {"cells": demo_run.cells("ws-unclosed")}, demo_run


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
def test_quick_matrix_yields_the_expected_verdicts(quick_run: tuple[Path, dict, DemoRun]) -> None:
    """Without a cap the leak freezes the service; the cap contains it; both fixes hold."""
    out, summary, _ = quick_run
    outcomes = [
        (c["settings"]["client"], c["settings"]["max_sessions"], c["verdict"])
        for c in summary["cells"]
    ]
    assert outcomes == [
        ("unclosed", "100000", "leak"), ("unclosed", "auto", "masked"),
        ("closed", "auto", "healthy"), ("reused", "auto", "healthy"),
    ]  # fmt: skip
    assert all(not c["surprise"] for c in summary["cells"])
    for name in ("report.md", "index.html", "samples.jsonl", "settings.json"):
        assert (out / name).stat().st_size > 0
    for chart in CHARTS:
        assert (out / f"ws-unclosed_{chart}.png").stat().st_size > 0


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
def test_the_leak_costs_a_fd_and_two_tasks_per_connection_until_the_limit(
    quick_run: tuple[Path, dict, DemoRun],
) -> None:
    _, summary, _ = quick_run
    leak, masked = (c["figures"] for c in summary["cells"][:2])
    for figures in (leak, masked):
        assert 0.8 <= figures["fds_per_connection"] <= 1.3
        assert 1.6 <= figures["tasks_per_connection"] <= 2.5
        assert figures["recovery_s"] is not None and figures["recovery_s"] <= 1.5
    # Without a cap: every fd used, /healthz and newcomers dropped, the dump still answering.
    assert leak["fds_peak"] >= leak["fd_limit"] - 4
    assert leak["healthz_failed"] >= 1
    assert set(leak["probes"]) - {"101", "http_503"}
    assert leak["task_groups"][1].startswith(f"{leak['held_peak']} @ ")
    # With the derived cap: sessions stop at the cap, the rest get 503, health answers.
    assert masked["sessions_peak"] == 205 and masked["held_peak"] == 205
    assert masked["client_failures"]["http_503"] > 0
    assert masked["healthz_failed"] == 0 and masked["fds_peak"] < masked["fd_limit"] - 20
    assert masked["task_groups"][1].startswith("205 @ ")


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
def test_the_fixes_hold_no_connection(quick_run: tuple[Path, dict, DemoRun]) -> None:
    _, summary, _ = quick_run
    closed, reused = (c["figures"] for c in summary["cells"][2:])
    assert closed["held_peak"] <= 2 and closed["opened"] > 100
    assert reused["opened"] == 1 and reused["requests"] > 100
    for figures in (closed, reused):
        assert figures["fds_peak"] - figures["fds_base"] < 20
        assert figures["healthz_failed"] == 0 and set(figures["probes"]) == {"101"}


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
def test_the_report_quotes_task_groups_and_the_service_log(
    quick_run: tuple[Path, dict, DemoRun],
) -> None:
    out, _, _ = quick_run
    report = (out / "report.md").read_text()
    assert "205 @ WebSocketsSansIOProtocol.run_asgi > ... > " in report
    assert "Top asyncio task groups (`GET /debug/tasks`)" in report
    assert "service log, warnings and errors:" in report


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
def test_every_child_is_gone_after_the_run(quick_run: tuple[Path, dict, DemoRun]) -> None:
    _, _, demo_run = quick_run
    cells = demo_run.processes("ws-unclosed")
    pids = [cell[key] for cell in cells for key in ("service_pid", "client_pid")]
    assert len(pids) == 8 and all(pids)
    assert all(is_gone(pid) for pid in pids)


@pytest.mark.timeout(90)
def test_ctrl_c_mid_cell_stops_the_service_and_the_client(tmp_path: Path) -> None:
    lab = subprocess.Popen(
        lab_command(tmp_path / "report"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, "CI": "true"},
    )  # fmt: skip
    try:
        children = wait_for_children(lab.pid, timeout_s=60)
        lab.send_signal(signal.SIGINT)
        assert lab.wait(timeout=30) == 130
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    assert all(is_gone(pid) for pid in children)


def wait_for_children(pid: int, timeout_s: float) -> list[int]:
    """The lab's service and client children, once both run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = {}
        for child in psutil.Process(pid).children(recursive=True):
            try:
                cmdline = " ".join(child.cmdline())
            except psutil.NoSuchProcess:
                continue
            for kind in ("-m event_service", "-m leaklab.stories.ws_unclosed.client"):
                if kind in cmdline:
                    found[kind] = child.pid
        if len(found) == 2:
            return list(found.values())
        time.sleep(0.1)
    pytest.fail("the lab did not start both its service and its client")
