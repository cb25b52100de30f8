"""Charts of a lab run (PNG, matplotlib): every cell on shared axes, one figure per measure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen

import matplotlib.pyplot as plt

MIB = 1024 * 1024

# (file name, title, y label, function of one sample returning the value or None)
CHARTS: tuple[tuple[str, str, str, Any], ...] = (
    ("recv_q.png", "Server Recv-Q (sum over connections)", "MiB",
     lambda s: _mib(s.get("server_recv_q_bytes"))),
    ("kernel_tcp_mem.png", "Kernel TCP memory (host-wide, /proc/net/sockstat)", "MiB",
     lambda s: _mib(s.get("kernel_tcp_mem_bytes"))),
    ("rss.png", "Server RSS (flat in the leak: the memory is the kernel's)", "MiB",
     lambda s: _mib(s.get("rss_bytes"))),
    ("closes.png", "Connections closed by the server or keepalive (cumulative)", "connections",
     lambda s: sum(s["closes"].values()) if s.get("closes") is not None else None),
)  # fmt: skip


def _mib(value: float | None) -> float | None:
    return None if value is None else value / MIB


def draw_charts(cells: Sequence[tuple[str, Sequence[dict[str, Any]]]], out_dir: Path) -> list[Path]:
    """Draw one PNG per measure with a line per cell; return the files written."""
    written = []
    for file_name, title, unit, value_of in CHARTS:
        figure, axes = plt.subplots(figsize=(8, 4.2), dpi=100)
        for label, samples in cells:
            points = [(s["t_s"], v) for s in samples if (v := value_of(s)) is not None]
            if points:
                times, values = zip(*points, strict=True)
                axes.plot(times, values, label=label, linewidth=1.6)
        axes.set_title(title)
        axes.set_xlabel("seconds since the swarm started")
        axes.set_ylabel(unit)
        axes.grid(alpha=0.3)
        axes.set_ylim(bottom=0)
        axes.legend(fontsize="small", loc="upper left")
        figure.tight_layout()
        path = out_dir / file_name
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written
