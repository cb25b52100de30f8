"""The swarm at 40,000 connections and one ping a second each, against cheap sinks.

``python -m bench.swarm scale --sink [--quick]``. Two event services cannot read 40,000 pings
a second on this machine (section 3: about 48 us each), so the swarm pings sinks instead
(:mod:`bench.sink_server`: they answer the handshake and count the bytes, nothing more).
Three sinks, each its own process under the fd hard limit of 20,000, hold 13,334 or 13,333
connections each; one ``ping-swarm --processes N`` per sink (a swarm aims at one URL).

Each run waits until the kernel holds every connection (the sinks' ESTABLISHED sockets by
exact address), settles, and measures a window: CPU (user + system) of every process of the
swarm trees and of the sinks, the trees' RSS once a second (median), and the bytes that
reached the sinks (read, plus waiting in their Recv-Q: a sink behind on a busy machine
must not lower the figure, nor its catching up raise it), turned into pings by the size of one
masked client frame. Then SIGTERM:
the swarms close (the sinks answer no close frame: each client aborts after its 2 s close
timeout), merge and write their summaries (the parents' kernel read per sample).

The baseline, in the same run right before: the same swarms pinging every 10 s (one tenth of
the pings, the same connections, processes and kernel reads), so the difference between the
two is the cost of 36,000 pings a second and nothing else. The floor, in the same run too:
:mod:`bench.raw_pinger` in place of each swarm, one ``send()`` of a ready frame per ping and
nothing else, so what it costs per ping is the kernel's share that one write per ping cannot
avoid (on loopback the sender's system call runs the receiver's TCP path too).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from bench import profiler
from bench.children import SwarmProcess, cpu_seconds, host_busy_s
from bench.figures import median
from bench.report import log_dir, print_table, say, write_result
from bench.sink_server import SinkProcess, client_frame_bytes
from bench.swarm import (
    SCALE_FD_LIMIT,
    SCALE_TARGET_CORES,
    SCALE_TARGET_KB_PER_CONNECTION,
    ScalePlan,
    _tree_cpu_s,
    _tree_rss,
    check_machine,
)
from ping_client.plan import split
from sockscope.diag import SocketTable, socket_totals
from sockscope.netlink import read_sockets


@dataclasses.dataclass(frozen=True)
class SinkPlan:
    """Sizes and windows of the runs against sinks."""

    sinks: int
    clients: int  # in all
    processes_per_swarm: int
    ramp_per_s: float  # per swarm
    settle_s: float
    window_s: float
    connect_budget_s: float
    # (interval_s, size_bytes, client), baseline first; client "swarm" (ping-swarm) or "floor"
    # (bench.raw_pinger: one ready frame per send(), no event loop: the kernel's share).
    runs: tuple[tuple[float, int, str], ...]
    profile_s: int  # py-spy on one swarm after the window of the first 1 s run (0: none)


SINK = SinkPlan(3, 40_000, 1, 700.0, 3.0, 15.0, 90.0,
                ((10.0, 64, "swarm"), (1.0, 64, "floor"), (1.0, 64, "swarm"),
                 (1.0, 1024, "swarm")), 8)  # fmt: skip
SINK_QUICK = SinkPlan(3, 3_000, 1, 500.0, 1.0, 4.0, 30.0,
                      ((10.0, 64, "swarm"), (1.0, 64, "floor"), (1.0, 64, "swarm")), 2)  # fmt: skip


def _sink_sockets(sink: SinkProcess) -> SocketTable:
    """The sink's connections, by its exact address (other programs use loopback too)."""
    assert sink.port is not None
    local = (sink.host, sink.port)
    return read_sockets(local=local, states=("ESTABLISHED",), skmem=False)


def _established(sink: SinkProcess) -> int:
    return len(_sink_sockets(sink))


def _arrived_bytes(sink: SinkProcess) -> int:
    """Bytes that reached the sink: those it read, and those waiting in its Recv-Q."""
    return sink.counters()["bytes_received"] + socket_totals(_sink_sockets(sink)).recv_q_bytes


def _start_swarm(url: str, clients: int, plan: SinkPlan, interval_s: float, size_bytes: int,
                 client: str, json_path: Path, log_path: Path) -> SwarmProcess:  # fmt: skip
    duration_s = plan.connect_budget_s + plan.settle_s + plan.window_s + 15.0
    argv = ["--url", url, "--clients", str(clients), "--ramp", f"{plan.ramp_per_s:g}",
            "--interval", f"{interval_s:g}", "--size", str(size_bytes),
            "--duration", f"{duration_s:g}"]  # fmt: skip
    if client == "floor":
        return SwarmProcess(argv, json_path, log_path, module="bench.raw_pinger").start()
    argv += ["--processes", str(plan.processes_per_swarm)]
    return SwarmProcess(argv, json_path, log_path).start()


def _now(pids: list[int], sinks: list[SinkProcess]) -> dict[str, float]:
    """The clock, the trees' and sinks' CPU seconds, the machine's busy seconds, sink bytes."""
    return {
        "t": time.monotonic(),
        "swarm_s": _tree_cpu_s(pids),
        "sink_s": sum(cpu_seconds(s.pid) for s in sinks if s.pid is not None),
        "host_s": host_busy_s(),
        "bytes": float(sum(_arrived_bytes(s) for s in sinks)),
    }


def run_sink(
    plan: SinkPlan,
    interval_s: float,
    size_bytes: int,
    logs: Path,
    profile_s: int = 0,
    client: str = "swarm",
) -> dict[str, Any]:
    """One run: connect every client to the sinks, measure a window, SIGTERM, summaries;
    with ``profile_s``, py-spy on the first swarm after the window. ``client="floor"`` runs
    the floor pingers (bench.raw_pinger) instead of the swarms."""
    shares = split(plan.clients, plan.sinks)
    machine = check_machine(
        ScalePlan(
            plan.sinks,
            shares[0],
            plan.processes_per_swarm,
            plan.ramp_per_s,
            interval_s,
            plan.settle_s,
            plan.window_s,
            plan.connect_budget_s,
        )
    )
    sinks: list[SinkProcess] = []
    swarms: list[SwarmProcess] = []
    try:
        for index in range(plan.sinks):
            sink = SinkProcess(logs / f"sink-{index}.log", fd_limit=SCALE_FD_LIMIT)
            sinks.append(sink.start())
        for index, (sink, clients) in enumerate(zip(sinks, shares, strict=True)):
            swarms.append(_start_swarm(sink.ws_url, clients, plan, interval_s, size_bytes,
                                       client, logs / f"swarm-{index}.json",
                                       logs / f"swarm-{index}.log"))  # fmt: skip
        pids = [swarm.pid for swarm in swarms]
        time.sleep(2.0)  # the interpreters are up; only the ramp's first seconds connected
        rss_before, processes = _tree_rss(pids)
        started = time.monotonic()
        while sum(_established(s) for s in sinks) < plan.clients:
            if time.monotonic() - started > plan.connect_budget_s:
                raise RuntimeError(f"the swarms did not connect {plan.clients} in time")
            if not all(swarm.is_running() for swarm in swarms):
                raise RuntimeError("a swarm ended early: see its log in " + str(logs))
            time.sleep(1.0)
        connected_after_s = time.monotonic() - started
        time.sleep(plan.settle_s)
        before = _now(pids, sinks)
        rss: list[int] = []
        end = before["t"] + plan.window_s
        while time.monotonic() < end:
            rss.append(_tree_rss(pids)[0])
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        after = _now(pids, sinks)
        profile = None
        if profile_s:
            say(f"profiling swarm 0 for {profile_s} s with py-spy")
            profile = profiler.record(pids[0], profile_s, logs.parent / "profile-swarm-sink.txt")
        exit_codes = [swarm.stop(grace_s=60) for swarm in swarms]  # close, merge, summarize
        connected = [s.counters()["connections"] for s in sinks]
    finally:
        for swarm in swarms:
            swarm.stop()
        for sink in sinks:
            sink.stop()
    elapsed_s = after["t"] - before["t"]
    summaries = [json.loads((logs / f"swarm-{i}.json").read_text()) for i in range(len(swarms))]
    swarm_cores = (after["swarm_s"] - before["swarm_s"]) / elapsed_s
    sink_cores = (after["sink_s"] - before["sink_s"]) / elapsed_s
    rss_window = median(rss)
    return {
        "machine": machine,
        "client": client,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "interval_s": interval_s,
        "size_bytes": size_bytes,
        "connections": plan.clients,
        "swarm_processes": processes,
        "connected_after_s": connected_after_s,
        "swarm_cores": swarm_cores,
        "swarm_rss_mb": rss_window / 2**20,
        "swarm_rss_before_mb": rss_before / 2**20,
        "kb_per_connection": rss_window / plan.clients / 1024,
        "kb_per_connection_marginal": (rss_window - rss_before) / plan.clients / 1024,
        "sink_cores": sink_cores,
        "other_cores": (after["host_s"] - before["host_s"]) / elapsed_s - swarm_cores - sink_cores,
        "pings_per_s_at_sinks": (after["bytes"] - before["bytes"])
        / client_frame_bytes(size_bytes)
        / elapsed_s,
        # The floor pinger reads no kernel figure: None there.
        "kernel_read_ms_p50": [s.get("kernel_read_ms", {}).get("p50_ms") for s in summaries],
        "kernel_read_cpu_ms_p50": [
            s.get("kernel_read_ms", {}).get("cpu_p50_ms") for s in summaries
        ],
        "pings_blocked": [s.get("pings_blocked", s.get("blocked")) for s in summaries],
        "connected_peak": [s.get("connected_peak", s.get("connected")) for s in summaries],
        "connect_failures": [s["connect_failures"] for s in summaries],
        "sink_connections_after_stop": connected,
        "swarm_exit_codes": exit_codes,
        "profile": profile,
    }


def report(results: list[dict[str, Any]]) -> None:
    """One table: every run, the baseline first, against the targets and the floor."""
    rows = []
    for r in results:
        reads = [ms for ms in r["kernel_read_cpu_ms_p50"] if ms is not None]
        rows.append([f"{r['client']}: {r['interval_s']:g} s, {r['size_bytes']} B",
                     r["swarm_processes"], r["swarm_cores"], r["kb_per_connection"],
                     r["kb_per_connection_marginal"], r["swarm_rss_mb"],
                     r["pings_per_s_at_sinks"], r["sink_cores"], r["other_cores"],
                     max(reads, default=None), r["connected_after_s"]])  # fmt: skip
    base = results[0]
    floor = next((r for r in results if r["client"] == "floor"), None)
    if floor is not None and floor["pings_per_s_at_sinks"] > 0:
        floor["us_per_ping"] = floor["swarm_cores"] / floor["pings_per_s_at_sinks"] * 1e6
        say(f"floor: {floor['us_per_ping']:.1f} us of CPU per ping (one send() of a ready "
            f"frame), {floor['swarm_cores']:.2f} cores for {floor['pings_per_s_at_sinks']:,.0f} "
            "pings/s")  # fmt: skip
    for r in results[1:]:
        extra = r["pings_per_s_at_sinks"] - base["pings_per_s_at_sinks"]
        if r["client"] == "swarm" and extra > 0:
            r["us_per_ping"] = (r["swarm_cores"] - base["swarm_cores"]) / extra * 1e6
            against = ""
            if (
                floor is not None
                and floor.get("us_per_ping")
                and r["size_bytes"] == floor["size_bytes"]
            ):
                r["per_ping_vs_floor"] = r["us_per_ping"] / floor["us_per_ping"]
                r["cores_vs_floor"] = r["swarm_cores"] / floor["swarm_cores"]
                against = (f" ({r['per_ping_vs_floor']:.2f}x the floor's per ping; "
                           f"{r['cores_vs_floor']:.2f}x its cores in all)")  # fmt: skip
            say(f"{r['interval_s']:g} s, {r['size_bytes']} B: "
                f"{r['us_per_ping']:.1f} us of swarm CPU per extra ping{against}")  # fmt: skip
    print_table(
        f"swarm against sinks: {base['connections']} connections (aim: < {SCALE_TARGET_CORES} "
        f"core, < {SCALE_TARGET_KB_PER_CONNECTION:g} KB per connection)",
        ["client, interval, size", "procs", "cores", "KB/conn", "KB/conn marginal", "RSS MB",
         "pings/s at sinks", "sink cores", "other cores", "read CPU ms p50", "connected s"],
        rows,
    )  # fmt: skip


def sink_scale(quick: bool) -> list[dict[str, Any]]:
    """The runs against sinks, the 10 s baseline first; table; JSON."""
    plan = SINK_QUICK if quick else SINK
    results = []
    profiled = False
    for interval_s, size_bytes, client in plan.runs:
        profile_s = 0 if profiled or interval_s != 1.0 or client != "swarm" else plan.profile_s
        profiled = profiled or bool(profile_s)
        say(f"{client} against {plan.sinks} sinks: {plan.clients} connections, "
            f"--interval {interval_s:g} --size {size_bytes}")  # fmt: skip
        logs = log_dir(f"swarm-sink-{client}-{interval_s:g}s-{size_bytes}b")
        result = run_sink(plan, interval_s, size_bytes, logs, profile_s, client)
        result["verdict"] = {
            "swarm_cores_under_target": result["swarm_cores"] < SCALE_TARGET_CORES,
            "kb_per_connection_under_target": (
                result["kb_per_connection"] < SCALE_TARGET_KB_PER_CONNECTION
            ),
        }
        results.append(result)
    report(results)
    profile = next((r["profile"] for r in results if r["profile"]), None)
    if profile and "error" not in profile:
        rows = [[p["function"][:110], p["self"] * 100] for p in profile["top_self"][:15]]
        print_table(f"py-spy, one swarm pinging ({profile['samples']} samples)",
                    ["function", "self %"], rows)  # fmt: skip
    elif profile:
        say(f"no profile: {profile['error']}")
    write_result("swarm-sink", quick, {"plan": dataclasses.asdict(plan), "runs": results})
    return results
