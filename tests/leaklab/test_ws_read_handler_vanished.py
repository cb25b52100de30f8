"""Vanished clients end to end: a swarm in a namespace of the lab's own loses its link.

Root only (the lab creates a network namespace and a veth pair); without root the cells are
reported ``unknown`` with the reason, which is tested everywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leaklab.runner import run_one
from leaklab.stories.ws_read_handler import STORY
from leaklab.stories.ws_read_handler.matrix import KEEPALIVE_OFF, Cell
from leaklab.story import LabOptions
from tests.utils import ChildWatcher, alive, run_lab

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root")


def lab_namespaces(pid: int) -> list[str]:
    """The network namespaces a lab with this pid created (its pid is in their names)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listing.splitlines() if f"leaklab-{pid}-" in line]


def link_exists(name: str) -> bool:
    """Whether the host has an interface of this name."""
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


async def test_without_root_the_cells_are_unknown_and_say_why(monkeypatch, tmp_path: Path):
    """Skipped, not failed: the verdict is unknown, as expected, with the reason."""
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    cell = Cell("fixed", KEEPALIVE_OFF, shape="vanished")
    entry, samples = await run_one(STORY, cell, LabOptions(duration_s=2), tmp_path, print)
    assert (entry["verdict"], entry["expected"], entry["surprise"]) == ("unknown", "unknown", False)
    assert "needs root" in entry["reason"]
    assert samples == []


@needs_root
@pytest.mark.timeout(180)
def test_keepalive_reaps_vanished_clients_and_without_it_they_stay(tmp_path: Path) -> None:
    """Keepalive off: every session stays after the link went down (leak); 2s/2s: reaped in
    seconds (healthy). The namespace, its pair and every child are gone afterwards."""
    out = tmp_path / "report"
    result, pids = run_lab(
        ["run", "ws-read-handler", "--full", "--only", "shape=vanished", "--duration", "5",
         "--clients", "10", "--out", str(out)],
        timeout_s=150,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(pids) >= 4 and not alive(pids)
    cells = json.loads((out / "summary.json").read_text())["cells"]
    assert [(c["settings"]["keepalive"], c["verdict"]) for c in cells] == [
        ("off", "leak"), ("2s/2s", "healthy"),
    ], [c["reason"] for c in cells]  # fmt: skip
    kept, reaped = cells[0]["figures"], cells[1]["figures"]
    assert kept["sessions_at_link_down"] == kept["sessions_end"] == 10
    assert kept["observed_after_down_s"] >= 10
    assert reaped["reaped_after_s"] <= 8  # ping after 2 s, no pong for 2 s: 1011
    for cell in cells:
        netns = cell["processes"]["netns"]
        assert netns["clients"].startswith("192.168.251.")
        assert not link_exists(netns["host_ifname"])
        assert netns["name"] not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                   text=True).stdout  # fmt: skip


@needs_root
@pytest.mark.timeout(90)
def test_ctrl_c_in_a_vanished_cell_removes_the_namespace_and_every_child(tmp_path: Path) -> None:
    lab = subprocess.Popen(
        [sys.executable, "-m", "leaklab", "run", "ws-read-handler", "--full", "--only",
         "shape=vanished", "--clients", "4", "--out", str(tmp_path / "report")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "CI": "true"},
    )  # fmt: skip
    watcher = ChildWatcher(lab.pid)
    try:
        deadline = time.monotonic() + 40
        while not (lab_namespaces(lab.pid) and len(watcher.pids) >= 2):
            assert time.monotonic() < deadline, "the lab made no namespace with a swarm in it"
            assert lab.poll() is None
            time.sleep(0.2)
        time.sleep(2.0)  # the swarm is inside and connecting
        lab.send_signal(signal.SIGINT)
        assert lab.wait(timeout=40) == 130
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        pids = watcher.stop()
        assert lab.stderr is not None
        lab.stderr.close()
    assert lab_namespaces(lab.pid) == []
    assert not alive(pids)
