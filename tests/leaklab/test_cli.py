"""The lab end to end: ``--quick`` against real uvicorn processes, and a clean interrupt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from leaklab.story import STORIES
from sockscope.netlink import read_sockets
from tests.utils import DEMO_TEST_TIMEOUT_S, DemoRun, alive

REPORT_FILES = (
    "report.md", "index.html", "summary.json", "samples.jsonl", "settings.json",
    "ws-read-handler_recv_q.png", "ws-read-handler_kernel_tcp_mem.png",
    "ws-read-handler_rss.png", "ws-read-handler_closes.png",
    "ws-read-handler_dead_sessions.png", "ws-read-handler_sessions.png",
    "ws-read-handler_skmem_r.png", "ws-read-handler_sockets_established.png",
    "ws-read-handler_sockets_closing.png",
)  # fmt: skip


def lab_command(out: Path) -> list[str]:
    """The story's quick matrix, as a user would run it."""
    return [
        sys.executable, "-m", "leaklab", "run", "ws-read-handler", "--quick", "--out", str(out)
    ]  # fmt: skip


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
def test_quick_matrix_writes_report_with_expected_verdicts(demo_run: DemoRun) -> None:
    """Churn first (leak, healthy), then the four static cells (leak, masked, healthy,
    healthy), each judged from its own samples; every child process is gone afterwards."""
    out, result, pids = demo_run.out, demo_run.result, demo_run.pids
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(pids) >= 6 and not alive(pids)
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    cells = demo_run.cells("ws-read-handler")
    outcomes = [
        (c["settings"]["shape"], c["settings"]["read_handler"], c["settings"]["keepalive"],
         c["verdict"])
        for c in cells
    ]  # fmt: skip
    assert outcomes == [
        ("churn", "missing", "off", "leak"),
        ("churn", "fixed", "off", "healthy"),
        ("static", "missing", "off", "leak"),
        ("static", "missing", "2s/2s", "masked"),
        ("static", "fixed", "off", "healthy"),
        ("static", "fixed", "2s/2s", "healthy"),
    ], [c["reason"] for c in cells]
    assert all(not c["surprise"] and c["expected"] == c["verdict"] for c in cells)
    churn_leak, churn_fixed = (c["figures"] for c in cells[:2])
    # 4 clients a second stay registered once they left, with their Recv-Q, all ESTABLISHED.
    assert churn_leak["dead_sessions_growth_per_min"] > 120
    assert churn_leak["dead_sessions_r2"] > 0.9
    assert churn_leak["recv_q_growth_mib_per_min"] > 10
    assert set(churn_leak["sockets_by_state_end"]) == {"ESTABLISHED"}
    assert churn_leak["left_unanswered"] == churn_leak["clients_left"] > 0
    assert churn_fixed["dead_sessions_end"] <= 2 and churn_fixed["left_unanswered"] == 0
    assert churn_fixed["clients_left"] >= 20
    leak, masked = cells[2]["figures"], cells[3]["figures"]
    assert leak["recv_q_peak_bytes"] > 64 * 1024
    assert masked["closes"]["1011"] > 0
    assert masked["first_keepalive_close_s"] < 10
    assert masked["events_lost"] > 0
    assert {s["cell"] for s in demo_run.samples("ws-read-handler")} == {c["name"] for c in cells}
    assert "report.md" in result.stderr


@pytest.mark.timeout(120)
def test_interrupted_lab_leaves_no_process_or_listener(tmp_path: Path) -> None:
    """Ctrl-C in the middle of a cell stops the service child and its port is released."""
    lab = subprocess.Popen(
        lab_command(tmp_path / "report"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "CI": "true"},
    )
    try:
        child, port = wait_for_service_child(lab.pid, timeout_s=60)
        samples_seen = wait_for_first_samples(lab, timeout_s=30)
        assert samples_seen
        lab.send_signal(signal.SIGINT)
        assert lab.wait(timeout=30) == 130
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        assert lab.stderr is not None
        lab.stderr.close()
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"
    assert not read_sockets(local=("127.0.0.1", port), states={"LISTEN"}).sockets()


def wait_for_service_child(pid: int, timeout_s: float) -> tuple[int, int]:
    """The pid and listening port of the lab's event service child, once it listens."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                listening = [
                    c.laddr.port for c in child.net_connections("tcp") if c.status == "LISTEN"
                ]
            except psutil.NoSuchProcess:
                continue
            if listening:
                return child.pid, listening[0]
        time.sleep(0.1)
    pytest.fail("the lab started no event service")


def wait_for_first_samples(lab: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait until the lab prints a live line (it samples every second, prints every 5th)."""
    assert lab.stderr is not None
    os.set_blocking(lab.stderr.fileno(), False)
    deadline = time.monotonic() + timeout_s
    seen = b""
    while time.monotonic() < deadline:
        seen += lab.stderr.read() or b""
        if b"connected=" in seen:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.timeout(DEMO_TEST_TIMEOUT_S)
def test_demo_prints_the_cells_side_by_side_and_writes_the_report(demo_run: DemoRun) -> None:
    """``make demo``'s command: one column per cell, every story, one report folder."""
    stderr = demo_run.result.stderr
    for story in STORIES:
        assert f"{story}: " in stderr
        assert demo_run.cells(story), story
    for row in ("peak Recv-Q per socket", "kernel held for service", "events lost", "verdict"):
        assert row in stderr
    assert stderr.count("READ_HANDLER=missing") >= 2
    assert all(not c["surprise"] for c in demo_run.summary["cells"])
    assert all((demo_run.out / name).stat().st_size > 0 for name in REPORT_FILES)
    # The four stories' 18 cells, 10 s each plus their recoveries and settling.
    assert demo_run.elapsed_s < 300, f"the demo took {demo_run.elapsed_s:.0f} s"


def test_list_names_every_story() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "leaklab", "list"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.startswith("ws-read-handler")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no-such-story"], "unknown story 'no-such-story'"),
        (["run", "ws-read-handler", "--only", "colour=red"], "--only takes AXIS=V1,V2"),
        (["run", "ws-read-handler", "--only", "ws_impl=h2"], "values among websockets-sansio"),
        (["run", "ws-read-handler", "--duration", "1"], "--duration must be from 2"),
        (
            ["run", "ws-read-handler", "--only", "shape=large"],
            "no cell to run: the default matrix has none with --only shape=large",
        ),
    ],
)
def test_usage_errors_name_what_is_wrong(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "leaklab", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.timeout(120)
def test_log_level_in_the_users_shell_does_not_break_a_cell(tmp_path: Path) -> None:
    """The child service gets an explicit environment: LOG_LEVEL=warning changes nothing."""
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "leaklab", "run", "ws-read-handler", "--quick", "--duration", "3",
         "--clients", "2", "--only", "ws_impl=wsproto", "--only", "shape=static",
         "--out", str(out)],
        capture_output=True, text=True, timeout=100, stdin=subprocess.DEVNULL,
        env={**os.environ, "CI": "true", "LOG_LEVEL": "warning", "READ_HANDLER": "fixed"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert all(c["verdict"] != "unknown" for c in summary["cells"])
    assert {c["settings"]["ws_impl"] for c in summary["cells"]} == {"wsproto"}
    env = json.loads((out / "settings.json").read_text())["cells"]
    assert all(cell["service_env"]["LOG_LEVEL"] == "info" for cell in env.values())
