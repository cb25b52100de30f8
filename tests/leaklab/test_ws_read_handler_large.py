"""The large cells end to end, at a size for CI: 2,000 clients, both read handlers.

The cells are the lab's own (``Cell(shape="large")`` run and judged by ``run_one``, as
``--full --only shape=large`` runs them); only their size, the cell's ``large`` parameter,
is smaller than :data:`~leaklab.stories.ws_read_handler.matrix.LARGE` (the same message
size and interval, fewer clients, a shorter steady part). Each runs a real
service and 2,000 real connections on loopback for about 15 s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from leaklab.report import table_rows
from leaklab.runner import run_one
from leaklab.stories.ws_read_handler import STORY
from leaklab.stories.ws_read_handler.matrix import KEEPALIVE_OFF, LARGE, Cell, Large
from leaklab.stories.ws_read_handler.steady import MIN_STEADY_SAMPLES, steady_part
from leaklab.story import CellSummary, LabOptions, Sample

# 4 s of ramp (longer on a busy machine: the cell waits for it) and 10 s of steady part,
# the verdict's 8 samples with two to spare.
CI_LARGE = Large(clients=2_000, ramp_per_s=500.0, steady_s=10.0, interval_s=LARGE.interval_s)
FRAME_BYTES = CI_LARGE.size_bytes + 8  # a masked client frame: 2 + 2 (length) + 4 (mask)

pytestmark = pytest.mark.timeout(150)


@dataclasses.dataclass(frozen=True)
class LargeRun:
    """One cell as the runner left it: its summary, its samples, its live lines."""

    entry: CellSummary
    samples: Sequence[Any]
    lines: list[str]

    @property
    def figures(self) -> dict[str, Any]:
        return self.entry["figures"]


async def _run_cells(logs: Path) -> dict[str, LargeRun]:
    runs = {}
    for read_handler in ("missing", "fixed"):
        cell = Cell(read_handler, KEEPALIVE_OFF, shape="large", large=CI_LARGE)
        lines: list[str] = []

        def on_sample(sample: Sample, lines: list[str] = lines) -> None:
            lines.append(STORY.live(sample))

        entry, samples = await run_one(STORY, cell, LabOptions(), logs, on_sample)
        runs[read_handler] = LargeRun(entry, samples, lines)
    return runs


@pytest.fixture(scope="module")
def large_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LargeRun]:
    """Both large cells at the CI size, run once for this module (about 35 s)."""
    return asyncio.run(_run_cells(tmp_path_factory.mktemp("large")))


def test_without_a_reader_the_queues_keep_what_the_clients_send(large_runs):
    """Missing handler: leak; the steady part's Recv-Q grows by about what was sent, about
    one frame a second per connection."""
    run = large_runs["missing"]
    figures = run.figures
    assert (run.entry["verdict"], run.entry["expected"]) == ("leak", "leak"), run.entry["reason"]
    assert figures["connected_at_ramp_end"] == CI_LARGE.clients
    assert figures["connect_failures"] == 0
    assert figures["steady_samples"] >= MIN_STEADY_SAMPLES
    assert figures["steady_connections"] == CI_LARGE.clients + 1  # and the lab's /stats client
    assert 0.9 <= figures["kept_share"] <= 1.1
    assert figures["recv_q_per_connection_growth_bytes_per_s"] == pytest.approx(
        FRAME_BYTES / CI_LARGE.interval_s, rel=0.1
    )


def test_the_kept_bytes_are_the_bytes_the_clients_sent(large_runs):
    """At the last steady sample, the service's Recv-Q (the lab's netlink read) holds every
    frame the clients sent but the first of each, which uvicorn read before pausing."""
    last = steady_part(large_runs["missing"].samples)[-1]
    frames = last["bytes_sent"] // CI_LARGE.size_bytes - CI_LARGE.clients
    unsent = last["client_send_q_bytes"]  # still in the clients' kernel send buffers
    assert last["sockets_recv_q_bytes"] == pytest.approx(frames * FRAME_BYTES - unsent, rel=0.05)
    assert last["skmem_sockets"] == last["connected"] + 1 == CI_LARGE.clients + 1  # /stats


def test_with_a_reader_the_queues_stay_empty(large_runs):
    """Fixed handler: healthy; the service read nearly every message sent."""
    run = large_runs["fixed"]
    figures = run.figures
    assert (run.entry["verdict"], run.entry["expected"]) == ("healthy", "healthy"), run.entry[
        "reason"
    ]
    assert figures["connected_at_ramp_end"] == CI_LARGE.clients
    assert figures["steady_samples"] >= MIN_STEADY_SAMPLES
    assert abs(figures["kept_share"]) <= 0.05
    assert figures["steady_sent_mib_per_min"] == pytest.approx(
        CI_LARGE.clients * CI_LARGE.size_bytes / CI_LARGE.interval_s * 60 / 2**20, rel=0.15
    )
    assert figures["client_messages_drained"] >= 0.9 * figures["client_messages_sent"]


@pytest.mark.parametrize("read_handler", ["missing", "fixed"])
def test_every_sample_says_what_its_kernel_read_cost(large_runs, read_handler):
    """Each sample's reads cost real time, their CPU time within their wall time; the figures
    summarize the same samples, and the report's table shows them."""
    run = large_runs[read_handler]
    walls = [s["kernel_read_ms"] for s in run.samples]
    cpus = [s["kernel_read_cpu_ms"] for s in run.samples]
    assert all(wall > 0 for wall in walls) and all(cpu > 0 for cpu in cpus)
    # A thread's CPU time cannot pass its wall time (less the clocks' rounding).
    assert all(cpu <= wall + 0.1 for wall, cpu in zip(walls, cpus, strict=True))
    read = run.figures["kernel_read"]
    assert read["samples"] == len(run.samples)
    assert read["max_ms"] == max(walls) and read["cpu_max_ms"] == max(cpus)
    assert min(walls) <= read["p50_ms"] <= read["max_ms"]
    header, row = table_rows(STORY, [run.entry])
    text = row[header.index("kernel read per sample, p50 wall / CPU")]
    assert text == (
        f"{read['p50_ms']:.0f} / {read['cpu_p50_ms']:.0f} ms "
        f"(max {read['max_ms']:.0f} / {read['cpu_max_ms']:.0f})"
    )


def test_the_live_lines_show_the_ramp_against_its_target(large_runs):
    """The progress display counts the ramp up to the target: connected=N/2000."""
    lines = large_runs["missing"].lines
    counts = [int(m.group(1)) for line in lines if (m := re.search(r"connected=(\d+)/2000", line))]
    assert len(counts) == len(lines)
    assert counts[0] < CI_LARGE.clients and CI_LARGE.clients in counts


@pytest.mark.parametrize("read_handler", ["missing", "fixed"])
def test_the_task_dump_is_taken_once_at_the_end_of_the_steady_part(large_runs, read_handler):
    """Never during the ramp (it stalls the service's loop); once, for the report."""
    run = large_runs[read_handler]
    dumped = [s for s in run.samples if s.get("task_groups")]
    assert len(dumped) == 1
    assert dumped[0]["t_s"] >= run.figures["ramp_end_s"] + CI_LARGE.steady_s
    assert run.figures["task_groups"][0].startswith("tasks: total ")
