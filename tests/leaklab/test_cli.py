"""The lab end to end: ``--quick`` against real uvicorn processes, and a clean interrupt."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from sockscope.netlink import read_sockets

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


class ChildWatcher:
    """Records every descendant pid of a process while it runs (to check they are gone)."""

    def __init__(self, pid: int) -> None:
        self.pids: set[int] = set()
        self._parent = psutil.Process(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.2):
            with contextlib.suppress(psutil.Error):
                self.pids.update(c.pid for c in self._parent.children(recursive=True))

    def stop(self) -> set[int]:
        """Stop watching; the pids seen."""
        self._done.set()
        self._thread.join()
        return self.pids


def alive(pids: set[int]) -> list[int]:
    """The pids among ``pids`` that still run (zombies count as gone)."""
    running = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
    return running


def run_lab(args: list[str], timeout_s: float) -> tuple[subprocess.CompletedProcess[str], set[int]]:
    """Run the lab without a terminal; its result and the pids of every child it started."""
    lab = subprocess.Popen(
        [sys.executable, "-m", "leaklab", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env={**os.environ, "CI": "true"},
    )  # fmt: skip
    watcher = ChildWatcher(lab.pid)
    try:
        stdout, stderr = lab.communicate(timeout=timeout_s)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        pids = watcher.stop()
    return subprocess.CompletedProcess(lab.args, lab.returncode, stdout, stderr), pids


@pytest.mark.timeout(300)
def test_quick_lab_writes_report_with_expected_verdicts(tmp_path: Path) -> None:
    """Churn first (leak, healthy), then the four static cells (leak, masked, healthy,
    healthy), each judged from its own samples; every child process is gone afterwards."""
    out = tmp_path / "report"
    started = time.monotonic()
    result, pids = run_lab(lab_command(out)[3:], timeout_s=240)
    took_s = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(pids) >= 6 and not alive(pids)
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    outcomes = [
        (c["settings"]["shape"], c["settings"]["read_handler"], c["settings"]["keepalive"],
         c["verdict"])
        for c in summary["cells"]
    ]  # fmt: skip
    assert outcomes == [
        ("churn", "missing", "off", "leak"),
        ("churn", "fixed", "off", "healthy"),
        ("static", "missing", "off", "leak"),
        ("static", "missing", "2s/2s", "masked"),
        ("static", "fixed", "off", "healthy"),
        ("static", "fixed", "2s/2s", "healthy"),
    ], [c["reason"] for c in summary["cells"]]
    assert {c["story"] for c in summary["cells"]} == {"ws-read-handler"}
    assert all(not c["surprise"] and c["expected"] == c["verdict"] for c in summary["cells"])
    churn_leak, churn_fixed = (c["figures"] for c in summary["cells"][:2])
    # 4 clients a second stay registered once they left, with their Recv-Q, all ESTABLISHED.
    assert churn_leak["dead_sessions_growth_per_min"] > 120
    assert churn_leak["dead_sessions_r2"] > 0.9
    assert churn_leak["recv_q_growth_mib_per_min"] > 10
    assert set(churn_leak["sockets_by_state_end"]) == {"ESTABLISHED"}
    assert churn_leak["left_unanswered"] == churn_leak["clients_left"] > 0
    assert churn_fixed["dead_sessions_end"] <= 2 and churn_fixed["left_unanswered"] == 0
    assert churn_fixed["clients_left"] >= 20
    assert took_s < 150, f"the quick matrix took {took_s:.0f} s"
    leak, masked = summary["cells"][2]["figures"], summary["cells"][3]["figures"]
    assert leak["recv_q_peak_bytes"] > 64 * 1024
    assert masked["closes"]["1011"] > 0
    assert masked["first_keepalive_close_s"] < 10
    assert masked["events_lost"] > 0
    cells_with_samples = {
        json.loads(line)["cell"] for line in (out / "samples.jsonl").read_text().splitlines()
    }
    assert len(cells_with_samples) == 6
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


@pytest.mark.timeout(330)
def test_demo_prints_the_cells_side_by_side_and_writes_the_report(tmp_path: Path) -> None:
    """``make demo``'s command, in short cells: one column per cell, and the report folder."""
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "leaklab", "demo", "--duration", "3", "--clients", "4",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, "CI": "true"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ws-read-handler: The missing WebSocket read handler" in result.stderr
    for row in ("peak Recv-Q per socket", "kernel held for service", "events lost", "verdict"):
        assert row in result.stderr
    assert result.stderr.count("READ_HANDLER=missing") >= 2
    summary = json.loads((out / "summary.json").read_text())
    cells = [c for c in summary["cells"] if c["story"] == "ws-read-handler"]
    axes = [(c["settings"]["read_handler"], c["settings"]["keepalive"]) for c in cells]
    assert axes == [
        ("missing", "off"), ("fixed", "off"),  # churn first
        ("missing", "off"), ("missing", "2s/2s"), ("fixed", "off"), ("fixed", "2s/2s")
    ]  # fmt: skip
    # 3 s is shorter than a churning client's life: nobody left yet, nothing to judge.
    assert cells[0]["verdict"] == "unknown"
    assert cells[2]["verdict"] == "leak"
    assert all((out / name).stat().st_size > 0 for name in REPORT_FILES)


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
