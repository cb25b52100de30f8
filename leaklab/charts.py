"""Charts of a lab run (PNG, matplotlib): per story and measure, every cell on shared axes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen

import matplotlib.pyplot as plt

from leaklab.story import Chart, Sample

__all__ = ["draw_charts"]


def draw_charts(
    story: str,
    charts: Sequence[Chart],
    cells: Sequence[tuple[str, Sequence[Sample]]],
    out_dir: Path,
) -> list[Path]:
    """Draw ``<story>_<chart>.png`` for each chart, a line per (label, samples) cell."""
    written = []
    for chart in charts:
        figure, axes = plt.subplots(figsize=(8, 4.2), dpi=100)
        for label, samples in cells:
            points = [(s["t_s"], v) for s in samples if (v := chart.value(s)) is not None]
            if points:
                times, values = zip(*points, strict=True)
                axes.plot(times, values, label=label, linewidth=1.6)
        axes.set_title(chart.title)
        axes.set_xlabel("seconds since the cell started")
        axes.set_ylabel(chart.unit)
        axes.grid(alpha=0.3)
        axes.set_ylim(bottom=0)
        if axes.lines:  # a chart no cell has figures for stays empty, without a legend
            axes.legend(fontsize="small", loc="upper left")
        figure.tight_layout()
        path = out_dir / f"{story}_{chart.name}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written
