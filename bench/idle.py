"""Server memory per idle subscriber: (RSS with N subscribers - RSS with none) / N.

The service runs with the fixed read handler and no events (``EVENT_RATE=0``), once with
each fan-out path (``FANOUT=asgi``: a writer task and a buffer per session; ``FANOUT=direct``:
neither buffer nor wake-ups, the writer only waits for the end); the baseline is the raw
websockets server of :mod:`bench.baseline_server` with no events, measured the same way in
the same run, the three rotating. The subscribers are the lean
clients of :mod:`bench.subscribers` (they send nothing). Before the empty reading a few
clients connect and leave, so that code paths loaded on first use are not billed to the
subscribers. No ``/stats`` call precedes an RSS reading: the service's parses
``/proc/net/tcp`` and its garbage would be counted. This is user-space memory only; the
kernel's socket buffers are not in RSS.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from bench.children import SubscriberProcess, rss_bytes
from bench.figures import median, per_item_bytes, ratio
from bench.report import log_dir, print_table, write_result
from bench.run import medians_by_name, plan_for, repeat
from bench.targets import FANOUT_NAMES, Target, make_target

WARMUP_CLIENTS = 20
REFERENCE_NAIVE_HUB_KB = 36.0


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one idle-memory run."""

    subscribers: int
    reps: int
    settle_s: float


FULL = Plan(5000, 3, 3.0)
QUICK = Plan(500, 1, 1.0)


def steady_rss(pid: int, samples: int = 3, every_s: float = 0.3) -> int:
    """Median RSS of a few readings."""
    readings = []
    for _ in range(samples):
        readings.append(rss_bytes(pid))
        time.sleep(every_s)
    return int(median(readings))


def run_once(name: str, plan: Plan, logs: Path) -> dict[str, Any]:
    """One server: RSS empty, with ``subscribers`` idle clients, and after they left."""
    target: Target = make_target(name, rate_per_s=0, log_dir=logs).start()
    try:
        with SubscriberProcess(target.ws_url, WARMUP_CLIENTS, 60, logs / "warmup.log") as warm:
            warm.wait_connected(timeout_s=30)
        time.sleep(plan.settle_s)
        empty = steady_rss(target.pid)
        clients = SubscriberProcess(target.ws_url, plan.subscribers, 300, logs / "subscribers.log")
        with clients:
            clients.wait_connected(timeout_s=90)
            time.sleep(plan.settle_s)
            loaded = steady_rss(target.pid)
            connections = target.counters()["connections"]
        time.sleep(plan.settle_s)
        after = steady_rss(target.pid)
    finally:
        target.stop()
    return {
        "server": name,
        "connections": connections,
        "rss_empty_mb": empty / 2**20,
        "rss_loaded_mb": loaded / 2**20,
        "rss_after_mb": after / 2**20,
        "kb_per_subscriber": per_item_bytes(loaded, empty, connections) / 1024,
    }


def run(quick: bool, reps: int | None = None) -> dict[str, Any]:
    """Repetitions rotating the servers; medians and the ratios; table; JSON."""
    plan = plan_for(quick, reps, QUICK, FULL)
    logs = log_dir("idle")
    results = repeat("idle", FANOUT_NAMES, plan.reps, lambda name: run_once(name, plan, logs),
                     f"{plan.subscribers} subscribers")  # fmt: skip
    keys = ("kb_per_subscriber", "rss_empty_mb", "rss_loaded_mb", "rss_after_mb")
    medians: dict[str, Any] = medians_by_name(results, keys)
    for name in FANOUT_NAMES[1:]:
        medians[f"ratio_{name}_kb_per_subscriber"] = ratio(
            medians[name]["kb_per_subscriber"], medians["baseline"]["kb_per_subscriber"]
        )
    rows = [
        [name, m["kb_per_subscriber"], m["rss_empty_mb"], m["rss_loaded_mb"], m["rss_after_mb"]]
        for name, m in medians.items()
        if isinstance(m, dict)
    ]
    rows.append(["naive hub (issue's reference)", REFERENCE_NAIVE_HUB_KB, None, None, None])
    print_table(
        f"idle memory: {plan.subscribers} subscribers, medians of {plan.reps} reps; "
        f"over the baseline: asgi {medians['ratio_asgi_kb_per_subscriber']:.2f}, "
        f"direct {medians['ratio_direct_kb_per_subscriber']:.2f}",
        [
            "server",
            "KiB per subscriber",
            "RSS empty MB",
            f"RSS with {plan.subscribers} MB",
            "RSS after they left MB",
        ],
        rows,
    )
    write_result(
        "idle", quick, {"plan": dataclasses.asdict(plan), "reps": results, "medians": medians}
    )
    return {"medians": medians}
