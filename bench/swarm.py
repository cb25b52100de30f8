"""The swarm's own cost: one ``python -m ping_client`` process holding 5,000 pinging clients.

The swarm runs as a child exactly as a user would start it (``--clients 5000 --ramp 1000
--interval 1 --size 64 --duration N``) against the service with the fixed read handler,
keepalive off and no events (``EVENT_RATE=0``), so what it does is hold connections and
ping. Over a steady window after every client is connected, psutil reads its CPU time and
RSS (once a second), and the service's CPU and ``client_messages`` counter (pings that
arrived). Then the swarm gets Ctrl-C (SIGINT) and closes its connections, rather than
idling to the end of ``--duration``, which only bounds the run.

The reference, in the same run and alternating with it: the same swarm with pings off
(``--interval 3600``): the cost of holding the connections alone.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from bench import profiler
from bench.children import SwarmProcess
from bench.figures import median, ratio
from bench.report import log_dir, print_table, say, write_result
from bench.run import CpuWindow, medians_by_name, plan_for, repeat, rss_during
from bench.targets import ServiceTarget

TARGET_CORES = 0.25
TARGET_RSS_MB = 150.0
MODES = {"pinging": 1.0, "idle": 3600.0}  # mode -> --interval seconds


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and windows of one swarm run."""

    clients: int
    ramp_per_s: float
    settle_s: float
    window_s: float
    reps: int
    profile_s: int
    connect_budget_s: float


FULL = Plan(5000, 1000, 3.0, 12.0, 3, 8, 60.0)
QUICK = Plan(500, 1000, 1.0, 3.0, 1, 2, 20.0)


def run_once(plan: Plan, mode: str, logs: Path, profile_s: int = 0) -> dict[str, Any]:
    """One swarm run in ``mode``: wait for every connection, measure a window, collect."""
    service = ServiceTarget({"EVENT_RATE": "0"}, logs / "service.log").start()
    try:
        duration_s = plan.connect_budget_s + plan.settle_s + plan.window_s + profile_s + 3.0
        argv = [
            "--url",
            service.ws_url,
            "--clients",
            str(plan.clients),
            "--ramp",
            f"{plan.ramp_per_s:g}",
            "--interval",
            f"{MODES[mode]:g}",
            "--size",
            "64",
            "--duration",
            f"{duration_s:g}",
        ]
        swarm = SwarmProcess(argv, logs / f"swarm-{mode}.json", logs / f"swarm-{mode}.log")
        with swarm:
            started = time.monotonic()
            while service.counters()["connections"] < plan.clients:
                if time.monotonic() - started > plan.connect_budget_s:
                    raise RuntimeError(f"swarm did not connect {plan.clients} in time")
                time.sleep(1.0)  # the service's /stats reads /proc/net/tcp: not too often
            connected_after_s = time.monotonic() - started
            time.sleep(plan.settle_s)
            window = measure_window(service, swarm, plan.window_s)
            profile = None
            if profile_s:
                say(f"profiling the {mode} swarm for {profile_s} s with py-spy")
                profile = profiler.record(
                    swarm.pid, profile_s, logs.parent / f"profile-swarm-{mode}.txt"
                )
            # Ctrl-C, as a user would: the swarm closes every connection and exits at once.
            exit_code = swarm.interrupt()
    finally:
        service.stop()
    return {
        "mode": mode,
        "connected_after_s": connected_after_s,
        **window,
        "swarm_exit_code": exit_code,
        "profile": profile,
    }


def measure_window(service: ServiceTarget, swarm: SwarmProcess, window_s: float) -> dict[str, Any]:
    """CPU of swarm, service and machine over the window; the swarm's RSS once a second."""
    s0 = service.counters()
    window = CpuWindow({"swarm": swarm.pid, "service": service.pid}).start()
    rss = rss_during(swarm.pid, window_s)
    cpu = window.stop()
    s1 = service.counters()
    return {
        "swarm_cores": cpu["swarm_cores"],
        "swarm_rss_mb": median(rss) / 2**20,
        "swarm_rss_max_mb": max(rss) / 2**20,
        "service_cores": cpu["service_cores"],
        "service_rss_mb": s1["rss_bytes"] / 2**20,
        "other_cores": cpu["other_cores"],
        "pings_per_s_at_service": (s1["client_messages"] - s0["client_messages"])
        / cpu["elapsed_s"],
        "connections": s1["connections"],
    }


def run(quick: bool, reps: int | None = None) -> dict[str, Any]:
    """Repetitions alternating pinging and idle swarms; medians; table; JSON."""
    plan = plan_for(quick, reps, QUICK, FULL)
    logs = log_dir("swarm")
    done = {mode: 0 for mode in MODES}

    def one(mode: str) -> dict[str, Any]:
        done[mode] += 1
        last_pinging = mode == "pinging" and done[mode] == plan.reps
        return run_once(plan, mode, logs, plan.profile_s if last_pinging else 0)

    # The two modes alternate: each goes first in every other repetition.
    results = repeat("swarm", tuple(MODES), plan.reps, one, f"{plan.clients} clients")
    keys = (
        "swarm_cores",
        "swarm_rss_mb",
        "swarm_rss_max_mb",
        "service_cores",
        "service_rss_mb",
        "other_cores",
        "pings_per_s_at_service",
    )
    medians = medians_by_name(results, keys)
    pinging = medians["pinging"]
    verdict = {
        "swarm_cores_under_target": pinging["swarm_cores"] < TARGET_CORES,
        "swarm_rss_under_target": pinging["swarm_rss_max_mb"] < TARGET_RSS_MB,
        "us_per_ping_swarm": (pinging["swarm_cores"] - medians["idle"]["swarm_cores"])
        / pinging["pings_per_s_at_service"]
        * 1e6
        if pinging["pings_per_s_at_service"]
        else None,
        "cores_ratio_pinging_to_idle": ratio(
            pinging["swarm_cores"], medians["idle"]["swarm_cores"]
        ),
    }
    rows = [
        [
            mode,
            m["swarm_cores"],
            m["swarm_rss_mb"],
            m["swarm_rss_max_mb"],
            m["pings_per_s_at_service"],
            m["service_cores"],
            m["service_rss_mb"],
            m["other_cores"],
        ]
        for mode, m in medians.items()
    ]
    print_table(
        f"swarm: {plan.clients} clients, medians of {plan.reps} reps (aim: < {TARGET_CORES} core, "
        f"< {TARGET_RSS_MB:g} MB)",
        [
            "swarm",
            "swarm cores",
            "RSS MB",
            "RSS max MB",
            "pings/s at service",
            "service cores",
            "service RSS MB",
            "other cores",
        ],
        rows,
    )
    profile = next((r["profile"] for r in results["pinging"] if r["profile"]), None)
    if profile and "error" not in profile:
        rows = [
            [p["function"][:110], p["self"] * 100, p["total"] * 100]
            for p in profile["top_inclusive"][:20]
        ]
        print_table(
            f"py-spy, pinging swarm ({profile['samples']} samples)",
            ["function", "self %", "total %"],
            rows,
        )
    write_result(
        "swarm",
        quick,
        {"plan": dataclasses.asdict(plan), "reps": results, "medians": medians, "verdict": verdict},
    )
    return {"medians": medians, "verdict": verdict}
