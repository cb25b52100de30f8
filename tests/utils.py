"""Helpers the tests share: waiting for conditions, kernel readings, the broker's address,
the lab run as a user runs it (and every child it started)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from sockscope.diag import DiagSocket
from sockscope.netlink import read_sockets

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"

# ss names states its own way.
SS_STATES = {
    "ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT",
    "UNCONN": "CLOSE", "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK", "LISTEN": "LISTEN",
    "CLOSING": "CLOSING",
}  # fmt: skip
_SS_SKMEM_RE = re.compile(r"skmem:\(([^)]*)\)")
_SS_FIELD_RE = re.compile(r"([a-z_]+?)(\d+)")


@dataclasses.dataclass(frozen=True, slots=True)
class SsSocket:
    """One socket as ``ss -tmnHe`` prints it: the independent witness of the kernel figures."""

    state: str
    recv_q_bytes: int
    send_q_bytes: int
    local: str  # as ss prints it: 127.0.0.1:8000, [::1]:8000
    remote: str
    inode: int
    skmem: dict[str, int]  # r, rb, t, tb, f, w, o, bl, d


def parse_ss(text: str, state: str = "") -> list[SsSocket]:
    """Parse ``ss -tmnHe`` output: a socket line, then (indented) its ``skmem:(...)``.

    Asked for one state only, ss leaves the state column out: ``state`` is that state.
    """
    found: list[SsSocket] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0].isspace() and found:  # the previous socket's continuation
            match = _SS_SKMEM_RE.search(line)
            if match:
                fields = (_SS_FIELD_RE.fullmatch(f) for f in match.group(1).split(","))
                found[-1].skmem.update({m.group(1): int(m.group(2)) for m in fields if m})
            continue
        words = line.split()
        if words[0].isdigit():
            words.insert(0, state)
        inode = re.search(r"\bino:(\d+)", line)
        found.append(
            SsSocket(
                state=SS_STATES.get(words[0], words[0]),
                recv_q_bytes=int(words[1]),
                send_q_bytes=int(words[2]),
                local=words[3],
                remote=words[4],
                inode=int(inode.group(1)) if inode else 0,
                skmem={},
            )
        )
    return found


def ss_sockets(*filter_words: str) -> list[SsSocket]:
    """``ss -tmnHe`` run now with this filter (``state connected src 127.0.0.1:80`` ...)."""
    result = subprocess.run(
        ["ss", "-tmnHe", *filter_words], capture_output=True, text=True, check=True, timeout=10
    )
    states = [word for before, word in itertools.pairwise(filter_words) if before == "state"]
    only = states[0].upper() if len(states) == 1 else ""
    return parse_ss(result.stdout, state=only)


def kernel_server_sockets(port: int, host: str = "127.0.0.1") -> list[DiagSocket]:
    """The service's connected sockets (as ``ss -t`` lists them) in the kernel now.

    By the exact local address and port: another process's socket may have the same port
    number on another address.
    """
    return read_sockets(local=(host, port), skmem=False).sockets()


async def eventually(
    condition: Callable[[], bool], *, timeout_s: float, every_s: float = 0.05
) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)
    return True


async def wait_until(
    condition: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; fail the test with ``what`` after ``timeout_s``."""
    if not await eventually(condition, timeout_s=timeout_s, every_s=every_s):
        pytest.fail(f"timed out after {timeout_s} s waiting until {what}")


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


# The first test that asks for the demo pays for it: 18 cells, about 2.5 min on a quiet host.
DEMO_TIMEOUT_S = 420
DEMO_TEST_TIMEOUT_S = DEMO_TIMEOUT_S + 60


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """What one ``leaklab demo`` left: its output, its report folder, the pids it started."""

    result: subprocess.CompletedProcess[str]
    out: Path
    pids: set[int]
    elapsed_s: float

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.out / "summary.json").read_text())

    def cells(self, story: str) -> list[dict[str, Any]]:
        """The story's cells in ``summary.json``, in the order they ran."""
        return [c for c in self.summary["cells"] if c["story"] == story]

    def processes(self, story: str) -> list[dict[str, Any]]:
        """The story's cells in ``settings.json`` (settings and the pids of each cell)."""
        cells = json.loads((self.out / "settings.json").read_text())["cells"]
        return [cell for cell in cells.values() if cell["story"] == story]

    def samples(self, story: str) -> list[dict[str, Any]]:
        """The story's lines of ``samples.jsonl``."""
        lines = (self.out / "samples.jsonl").read_text().splitlines()
        return [s for s in map(json.loads, lines) if s["story"] == story]
