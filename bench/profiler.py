"""Sampling a running server with py-spy (optional: ``pip install py-spy`` into the venv).

py-spy attaches to the pid from outside and samples Python stacks without pausing the
process (``--nonblocking``), so the profile costs the server almost nothing. Idle samples
(the event loop waiting in epoll) are left out: the fractions are of busy time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.figures import collapsed_stacks_top, self_top


def py_spy_path() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH; None if not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, duration_s: int, output: Path, rate_hz: int = 250) -> dict[str, Any]:
    """Sample ``pid`` for ``duration_s``; the top functions by inclusive and by own time."""
    exe = py_spy_path()
    if exe is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(duration_s),
        "--rate",
        str(rate_hz),
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(output),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60)
    if done.returncode != 0 or not output.exists():
        return {"error": (done.stderr or done.stdout)[-1000:]}
    lines = output.read_text().splitlines()
    return {
        "collapsed_stacks": str(output),
        "samples": sum(int(line.rpartition(" ")[2]) for line in lines if line.strip()),
        "top_inclusive": [
            {"function": name, "self": round(own, 4), "total": round(total, 4)}
            for name, own, total in collapsed_stacks_top(lines, limit=40)
        ],
        "top_self": [
            {"function": name, "self": round(own, 4)} for name, own in self_top(lines, limit=25)
        ],
        "top_self_lines": [
            {"line": name, "self": round(own, 4)}
            for name, own in self_top(lines, limit=25, by_line=True)
        ],
    }
