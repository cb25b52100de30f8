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

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import psutil

from bench import profiler
from bench.children import SwarmProcess, cpu_seconds, host_busy_s
from bench.figures import median, ratio
from bench.report import log_dir, print_table, say, write_result
from bench.run import CpuWindow, medians_by_name, plan_for, repeat, rss_during
from bench.targets import ServiceTarget
from event_service.publish import publish
from event_service.settings import settings_from_env
from leaklab.children import ServiceProcess
from sockscope.netlink import read_sockets

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


# At scale: the multi-process swarm against several service instances.
#
# One ``ping-swarm --processes 2`` per service instance (a swarm targets one URL), each
# worker from loopback source addresses of its own. The swarm's cost is every process of
# those trees together: the parents (which merge and read the kernel once a second) and
# their workers. Memory per connection is the trees' RSS in the window over the
# connections; the baseline in the same run is the same trees' RSS 2 s after the start
# (the interpreters, and the ramp's first few hundred connections), and the reference run
# is the same connections with ``--processes 1`` per service.

SCALE_TARGET_CORES = 0.5
SCALE_TARGET_KB_PER_CONNECTION = 10.0
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
FEED_BUDGET_S = 30.0  # for every instance to deliver the fed events to all its clients
SCALE_FD_LIMIT = 20_000  # per service instance (the hard limit here; it cannot be raised)
SCALE_SERVICE_FDS = 150  # what a service keeps for the listener, /stats, logs


@dataclasses.dataclass(frozen=True)
class ScalePlan:
    """Sizes and windows of one run at scale."""

    services: int
    clients_per_service: int
    processes_per_swarm: int
    ramp_per_s: float  # per swarm
    interval_s: float  # between two pings of one client
    settle_s: float
    window_s: float
    connect_budget_s: float
    # Events published through the broker's fanout exchange after the window (0: no broker,
    # the embedded source at rate 0): every instance must deliver each to all its clients.
    fed_events: int = 0


# Two instances cannot hold 40,000 here: each needs one fd per session under a hard limit
# of 20,000 that cannot be raised, so the two hold 19,700 each (39,400 in all). Nor can two
# services on this 2-core machine read 40,000 pings a second (about 48 us each, 1.9 cores):
# the clients ping every 10 s, and the ramp is what the two services keep up with.
SCALE = ScalePlan(2, 19_700, 2, 350.0, 10.0, 3.0, 15.0, 120.0)
SCALE_QUICK = ScalePlan(2, 1_000, 2, 500.0, 1.0, 1.0, 3.0, 30.0)
# 40,000 against services, then, takes three instances: 13,334 each, one swarm process each
# (``--services 3``); the services' handshakes bound the ramp.
SCALE_THREE = ScalePlan(3, 13_334, 1, 300.0, 10.0, 3.0, 15.0, 180.0, fed_events=3)
SCALE_THREE_QUICK = ScalePlan(3, 700, 1, 500.0, 1.0, 1.0, 3.0, 30.0, fed_events=3)


def check_machine(plan: ScalePlan) -> dict[str, Any]:
    """Refuse a plan this machine cannot hold: fds per service, TCP memory, free memory."""
    import resource

    from sockscope.procfs import parse_tcp_mem

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed_fds = plan.clients_per_service + SCALE_SERVICE_FDS
    if needed_fds > min(hard, SCALE_FD_LIMIT):
        raise RuntimeError(f"a service needs {needed_fds} fds; the hard limit is {hard}")
    _, pressure_pages, _ = parse_tcp_mem(Path("/proc/sys/net/ipv4/tcp_mem").read_text())
    available = psutil.virtual_memory().available
    connections = plan.services * plan.clients_per_service
    # Both ends of each connection idle at a few KB of kernel memory; the swarm aims at 10 KB.
    needed_bytes = connections * (2 * 8 * 1024 + 2 * 10 * 1024)
    if needed_bytes > available / 2:
        raise RuntimeError(f"{connections} connections need about {needed_bytes >> 20} MiB; "
                           f"{available >> 20} MiB available")  # fmt: skip
    return {
        "fd_hard_limit": hard,
        "tcp_mem_pressure_mib": pressure_pages * os.sysconf("SC_PAGE_SIZE") >> 20,
        "mem_available_mib": available >> 20,
        "cpus": os.cpu_count(),
    }


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _tree_cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        for proc in _tree(pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def _tree_rss(pids: list[int]) -> tuple[int, int]:
    """RSS of every process of the trees, and how many processes."""
    total = count = 0
    for pid in pids:
        for proc in _tree(pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
                count += 1
    return total, count


def _start_swarm(url: str, plan: ScalePlan, json_path: Path, log_path: Path) -> SwarmProcess:
    duration_s = plan.connect_budget_s + plan.settle_s + plan.window_s + 15.0
    argv = ["--url", url, "--clients", str(plan.clients_per_service),
            "--ramp", f"{plan.ramp_per_s:g}", "--interval", f"{plan.interval_s:g}",
            "--size", "64", "--duration", f"{duration_s:g}",
            "--processes", str(plan.processes_per_swarm)]  # fmt: skip
    return SwarmProcess(argv, json_path, log_path).start()


def _established(service: ServiceProcess) -> int:
    """The service's ESTABLISHED sockets, from the kernel (its /stats is slow at the ramp)."""
    assert service.port is not None
    local = (service.settings.host, service.port)
    return len(read_sockets(local=local, states=("ESTABLISHED",), skmem=False))


def _cpu_now(pids: list[int], services: list[ServiceProcess]) -> tuple[float, ...]:
    """Now, the swarm trees' CPU seconds, the services', the machine's busy seconds."""
    service_s = sum(cpu_seconds(s.pid) for s in services if s.pid is not None)
    return time.monotonic(), _tree_cpu_s(pids), service_s, host_busy_s()


def run_scale(plan: ScalePlan, logs: Path) -> dict[str, Any]:
    """One run at scale: connect every client, measure a window, Ctrl-C, read the summaries."""
    machine = check_machine(plan)
    services: list[ServiceProcess] = []
    swarms: list[SwarmProcess] = []
    max_sessions = str(SCALE_FD_LIMIT - SCALE_SERVICE_FDS)
    # An exchange of this run's own on the shared broker: nobody else's events, nor ours to
    # anybody else.
    exchange = f"bench-scale-{os.getpid()}-{time.time_ns()}"
    fed: dict[str, Any] | None = None
    try:
        for index in range(plan.services):
            env = {"HOST": "127.0.0.1", "PORT": "0", "EVENT_RATE": "0", "READ_HANDLER": "on",
                   "MAX_SESSIONS": max_sessions}  # fmt: skip
            if plan.fed_events:
                env |= {"AMQP_URL": AMQP_URL, "AMQP_EXCHANGE": exchange}
            service = ServiceProcess(settings_from_env(env), logs / f"scale-service-{index}.log",
                                     fd_limit=SCALE_FD_LIMIT)  # fmt: skip
            services.append(service.start())
        for index, service in enumerate(services):
            swarms.append(_start_swarm(service.ws_url, plan, logs / f"scale-swarm-{index}.json",
                                       logs / f"scale-swarm-{index}.log"))  # fmt: skip
        pids = [swarm.pid for swarm in swarms]
        time.sleep(2.0)  # the workers are up; only the ramp's first second is connected
        rss_before, processes = _tree_rss(pids)
        started = time.monotonic()
        total = plan.services * plan.clients_per_service
        while sum(_established(s) for s in services) < total:
            if time.monotonic() - started > plan.connect_budget_s:
                raise RuntimeError(f"the swarms did not connect {total} in time")
            if not all(swarm.is_running() for swarm in swarms):
                raise RuntimeError("a swarm ended early: see its log in " + str(logs))
            time.sleep(1.0)
        connected_after_s = time.monotonic() - started
        time.sleep(plan.settle_s)
        c0 = [s.stats(timeout_s=30)["client_messages"] for s in services]
        t0, cpu0, sv0, h0 = _cpu_now(pids, services)
        rss: list[int] = []
        end = t0 + plan.window_s
        while time.monotonic() < end:
            rss.append(_tree_rss(pids)[0])
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        t1, cpu1, sv1, h1 = _cpu_now(pids, services)
        c1 = [s.stats(timeout_s=30)["client_messages"] for s in services]
        if plan.fed_events:
            fed = _feed(services, plan, exchange)
        # SIGTERM: close, merge, summarize
        exit_codes = [swarm.stop(grace_s=60) for swarm in swarms]
    finally:
        for swarm in swarms:
            swarm.stop()
        for service in services:
            service.stop()
    elapsed_s = t1 - t0
    summaries = [
        json.loads((logs / f"scale-swarm-{i}.json").read_text()) for i in range(len(swarms))
    ]
    swarm_cores = (cpu1 - cpu0) / elapsed_s
    service_cores = (sv1 - sv0) / elapsed_s
    rss_window = median(rss)
    return {
        "machine": machine,
        "connections": total,
        "swarm_processes": processes,
        "connected_after_s": connected_after_s,
        "swarm_cores": swarm_cores,
        "swarm_rss_mb": rss_window / 2**20,
        "swarm_rss_before_mb": rss_before / 2**20,
        "kb_per_connection": rss_window / total / 1024,
        "kb_per_connection_marginal": (rss_window - rss_before) / total / 1024,
        "service_cores": service_cores,
        "other_cores": (h1 - h0) / elapsed_s - swarm_cores - service_cores,
        "pings_per_s_at_services": sum(b - a for a, b in zip(c0, c1, strict=True)) / elapsed_s,
        "kernel_read_ms_p50": [s["kernel_read_ms"]["p50_ms"] for s in summaries],
        "kernel_read_ms_max": [s["kernel_read_ms"]["max_ms"] for s in summaries],
        "kernel_read_cpu_ms_p50": [s["kernel_read_ms"]["cpu_p50_ms"] for s in summaries],
        "connected_peak": [s["connected_peak"] for s in summaries],
        "connect_failures": [s["connect_failures"] for s in summaries],
        "swarm_exit_codes": exit_codes,
        "fed": fed,
        "events_received_by_swarms": [s["events_received"] for s in summaries],
    }


def _feed(services: list[ServiceProcess], plan: ScalePlan, exchange: str) -> dict[str, Any]:
    """Publish ``plan.fed_events`` events on the run's exchange; wait until every instance
    has delivered each one to every client; what each instance received and delivered."""
    before = [s.stats(timeout_s=30) for s in services]
    published = asyncio.run(
        publish(AMQP_URL, "tick", rate=1.0, count=plan.fed_events, size=0,
                exchange_name=exchange)
    )  # fmt: skip
    wanted = published * plan.clients_per_service
    started = time.monotonic()
    while True:
        after = [s.stats(timeout_s=30) for s in services]
        delivered = [a["events_delivered"] - b["events_delivered"]
                     for a, b in zip(after, before, strict=True)]  # fmt: skip
        if min(delivered) >= wanted or time.monotonic() - started > FEED_BUDGET_S:
            break
        time.sleep(0.5)
    return {
        "published": published,
        "received_per_instance": [a["events_received"] - b["events_received"]
                                  for a, b in zip(after, before, strict=True)],
        "delivered_per_instance": delivered,
        "delivered_in_s": round(time.monotonic() - started, 2),
    }  # fmt: skip


def report_scale(plan: ScalePlan, result: dict[str, Any], quick: bool) -> dict[str, Any]:
    """Print the run at scale against its targets and save it."""
    verdict = {
        "swarm_cores_under_target": result["swarm_cores"] < SCALE_TARGET_CORES,
        "kb_per_connection_under_target": (
            result["kb_per_connection"] < SCALE_TARGET_KB_PER_CONNECTION
        ),
    }
    print_table(
        f"swarm at scale: {result['connections']} connections, {plan.services} services, "
        f"{result['swarm_processes']} swarm processes (aim: < {SCALE_TARGET_CORES} core, "
        f"< {SCALE_TARGET_KB_PER_CONNECTION:g} KB per connection)",
        ["swarm cores", "KB/conn", "KB/conn marginal", "RSS MB", "RSS before MB",
         "pings/s at services", "service cores", "other cores", "read ms p50", "read ms max",
         "read CPU ms p50"],
        [[result["swarm_cores"], result["kb_per_connection"],
          result["kb_per_connection_marginal"], result["swarm_rss_mb"],
          result["swarm_rss_before_mb"], result["pings_per_s_at_services"],
          result["service_cores"], result["other_cores"],
          max(result["kernel_read_ms_p50"]), max(result["kernel_read_ms_max"]),
          max(result["kernel_read_cpu_ms_p50"])]],
    )  # fmt: skip
    return verdict


def scale(quick: bool) -> dict[str, Any]:
    """The runs at scale alone: ``python -m bench.swarm scale [--quick]``.

    The multi-process swarm, then the reference in the same run: the same connections with
    ``--processes 1`` per service (what the default picks for 19,700 clients), one process
    per swarm, so the difference is the workers' own cost.
    """
    plan = SCALE_QUICK if quick else SCALE
    results: dict[str, Any] = {}
    for processes in (plan.processes_per_swarm, 1):
        this = dataclasses.replace(plan, processes_per_swarm=processes)
        say(f"swarm at scale: {this.services} x {this.clients_per_service} connections, "
            f"--processes {processes} each")  # fmt: skip
        result = run_scale(this, log_dir(f"swarm-scale-{processes}"))
        results[str(processes)] = {"result": result, "verdict": report_scale(this, result, quick)}
    write_result("swarm-scale", quick, {"plan": dataclasses.asdict(plan), "runs": results})
    return results


def scale_three(quick: bool) -> dict[str, Any]:
    """40,000 connections against three service instances, one swarm process each:
    ``python -m bench.swarm scale --services 3 [--quick]`` (two cannot hold 40,000 here)."""
    plan = SCALE_THREE_QUICK if quick else SCALE_THREE
    say(f"swarm at scale: {plan.services} x {plan.clients_per_service} connections, "
        f"--processes {plan.processes_per_swarm} each")  # fmt: skip
    result = run_scale(plan, log_dir("swarm-scale-three"))
    runs = {"result": result, "verdict": report_scale(plan, result, quick)}
    fed = result["fed"]
    if fed is not None:
        wanted = fed["published"] * plan.clients_per_service
        say(f"fed through the fanout exchange: {fed['published']} events; each instance received "
            f"{fed['received_per_instance']} and delivered {fed['delivered_per_instance']} "
            f"(to every client: {wanted} each) in {fed['delivered_in_s']} s; the swarms "
            f"received {result['events_received_by_swarms']}")  # fmt: skip
        runs["verdict"]["every_instance_fed_every_client"] = min(
            fed["delivered_per_instance"]
        ) >= wanted and sum(result["events_received_by_swarms"]) >= fed["published"] * (
            plan.services * plan.clients_per_service
        )
    write_result("swarm-scale-three", quick, {"plan": dataclasses.asdict(plan), "runs": runs})
    return runs


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.swarm")
    parser.add_argument("part", choices=("scale",))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--sink", action="store_true", help="40,000 connections pinging sinks once a second"
    )
    parser.add_argument(
        "--services",
        type=int,
        choices=(2, 3),
        default=2,
        help="2: 39,400 connections (and the one-process reference); 3: 40,002",
    )
    args = parser.parse_args()
    if args.sink:
        from bench.swarm_sink import sink_scale

        sink_scale(args.quick)
    elif args.services == 3:
        scale_three(args.quick)
    else:
        scale(args.quick)
