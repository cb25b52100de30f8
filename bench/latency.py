"""Publish-to-receive latency through RabbitMQ at ``subscribers`` x ``rate`` events/s.

The service consumes the ``events`` fanout exchange (``AMQP_URL``); the real swarm
(``python -m ping_client``, pings off) holds the subscribers and computes each event's
latency from its ``ts`` (its summary has p50/p99). Events come from
:func:`event_service.publish.publish`, with publisher confirms, at ``rate`` per second.

Two baselines, in the same run. The raw ``websockets`` broadcast server relaying the same
exchange (:mod:`bench.baseline_server` ``--amqp-url``), measured by the same swarm, the two
servers alternating. And in every run, a bare aio-pika consumer in this process on its own
queue bound to the same exchange: the broker's share (publish, route, deliver one copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aio_pika

from bench import profiler
from bench.children import SwarmProcess, cpu_seconds
from bench.figures import median, ratio
from bench.report import log_dir, print_table, say, write_result
from bench.targets import TARGET_NAMES, make_target
from event_service.publish import publish
from event_service.sources.rabbitmq import declare_exchange
from sockscope.procfs import percentile

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and windows of one latency run."""

    subscribers: int
    rate_per_s: float
    publish_s: float
    reps: int
    profile_s: int
    connect_budget_s: float  # the swarm runs for a fixed duration: this much is set aside


FULL = Plan(1000, 10, 15.0, 3, 8, 10.0)
QUICK = Plan(200, 10, 3.0, 1, 0, 5.0)


async def publish_and_watch(rate_per_s: float, count: int) -> dict[str, Any]:
    """Publish ``count`` events while a bare consumer measures the broker's own latency."""
    latencies_s: list[float] = []
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await declare_exchange(channel)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received_s = time.time()
            ts = float(json.loads(message.body)["ts"])
            latencies_s.append(received_s - ts)

        await queue.consume(on_message, no_ack=True)
        started = time.monotonic()
        published = await publish(AMQP_URL, "tick", rate=rate_per_s, count=count, size=0)
        elapsed_s = time.monotonic() - started
        await asyncio.sleep(1.0)  # the last events' way to both consumers
    ordered = sorted(latencies_s)
    return {
        "published": published,
        "publish_elapsed_s": elapsed_s,
        "broker_only": {
            "received": len(ordered),
            "p50_ms": percentile(ordered, 50) * 1000,
            "p99_ms": percentile(ordered, 99) * 1000,
            "max_ms": (ordered[-1] * 1000) if ordered else float("nan"),
        },
    }


def run_once(name: str, plan: Plan, logs: Path, profile_s: int = 0) -> dict[str, Any]:
    """One run against server ``name``: start it and the swarm, publish, read the summary."""
    service = make_target(name, rate_per_s=0, log_dir=logs, amqp_url=AMQP_URL).start()
    profile = None
    try:
        duration_s = plan.connect_budget_s + plan.publish_s + 4.0
        swarm_argv = [
            "--url",
            service.ws_url,
            "--clients",
            str(plan.subscribers),
            "--ramp",
            "1000",
            "--interval",
            "3600",
            "--size",
            "64",
            "--duration",
            str(duration_s),
        ]
        swarm = SwarmProcess(swarm_argv, logs / "swarm-summary.json", logs / "swarm.log")
        with swarm:
            started = time.monotonic()
            while service.counters()["connections"] < plan.subscribers:
                if time.monotonic() - started > plan.connect_budget_s - 1:
                    raise RuntimeError("swarm did not connect in time")
                time.sleep(0.25)
            connected_after_s = time.monotonic() - started
            before = time.monotonic(), cpu_seconds(service.pid), cpu_seconds(swarm.pid)
            count = round(plan.rate_per_s * plan.publish_s)
            with contextlib.ExitStack() as stack:
                if profile_s:
                    say(f"profiling the swarm for {profile_s} s with py-spy")
                    pool = stack.enter_context(ThreadPoolExecutor(1))
                    output = logs.parent / "profile-latency-swarm.txt"
                    profiling = pool.submit(profiler.record, swarm.pid, profile_s, output)
                watched = asyncio.run(publish_and_watch(plan.rate_per_s, count))
                if profile_s:
                    profile = profiling.result()
            after = time.monotonic(), cpu_seconds(service.pid), cpu_seconds(swarm.pid)
            stats = service.counters()
            summary = swarm.wait_summary(timeout_s=duration_s + 30)
    finally:
        service.stop()
    elapsed_s = after[0] - before[0]
    return {
        "server": name,
        "connected_after_s": connected_after_s,
        **watched,
        "figures": {
            "p50_ms": summary["latency"]["p50_ms"],
            "p99_ms": summary["latency"]["p99_ms"],
            "max_ms": summary["latency"]["max_ms"],
            "events_received_by_swarm": summary["events_received"],
            "expected": watched["published"] * plan.subscribers,
            "events_dropped": stats.get("events_dropped", 0),
            "server_cores": (after[1] - before[1]) / elapsed_s,
            "swarm_cores": (after[2] - before[2]) / elapsed_s,
        },
        "profile": profile,
    }


def run(quick: bool, reps: int | None = None) -> dict[str, Any]:
    """Repetitions alternating the two servers, medians and ratios, a swarm profile."""
    plan = QUICK if quick else FULL
    if reps:
        plan = dataclasses.replace(plan, reps=reps)
    logs = log_dir("latency")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in TARGET_NAMES}
    for rep in range(plan.reps):
        order = TARGET_NAMES if rep % 2 == 0 else TARGET_NAMES[::-1]
        for name in order:
            say(
                f"latency rep {rep + 1}/{plan.reps}: {name}, "
                f"{plan.subscribers} x {plan.rate_per_s:g} ev/s"
            )
            results[name].append(run_once(name, plan, logs))
    profile = None
    if plan.profile_s:
        say("latency: one more service run, its swarm under py-spy (not in the medians)")
        profile = run_once("service", plan, logs, plan.profile_s)["profile"]
    medians: dict[str, Any] = {}
    for name, rows in results.items():
        medians[name] = {
            key: median([r["figures"][key] for r in rows])
            for key in ("p50_ms", "p99_ms", "max_ms", "server_cores", "swarm_cores")
        }
    every = [r for rows in results.values() for r in rows]
    medians["broker_only"] = {
        key: median([r["broker_only"][key] for r in every]) for key in ("p50_ms", "p99_ms")
    }
    for key in ("p50_ms", "p99_ms"):
        medians[f"ratio_{key}"] = ratio(medians["service"][key], medians["baseline"][key])
    _print(plan, results, medians)
    if profile and "error" not in profile:
        print_table(
            f"py-spy, the swarm receiving events ({profile['samples']} samples)",
            ["function", "self %", "total %"],
            [
                [p["function"][:110], p["self"] * 100, p["total"] * 100]
                for p in profile["top_inclusive"][:25]
            ],
        )
    write_result(
        "latency",
        quick,
        {
            "plan": dataclasses.asdict(plan),
            "reps": results,
            "medians": medians,
            "swarm_profile": profile,
        },
    )
    return {"reps": results, "medians": medians}


def _print(plan: Plan, results: dict[str, list[dict[str, Any]]], medians: dict[str, Any]) -> None:
    rows = []
    for name, runs in results.items():
        for index, r in enumerate(runs, 1):
            s, b = r["figures"], r["broker_only"]
            rows.append(
                [
                    f"{name} rep {index}",
                    s["p50_ms"],
                    s["p99_ms"],
                    s["max_ms"],
                    b["p50_ms"],
                    b["p99_ms"],
                    f"{s['events_received_by_swarm']}/{s['expected']}",
                    s["events_dropped"],
                    s["server_cores"],
                    s["swarm_cores"],
                ]
            )
    for name in TARGET_NAMES:
        m = medians[name]
        rows.append(
            [
                f"{name} median",
                m["p50_ms"],
                m["p99_ms"],
                m["max_ms"],
                medians["broker_only"]["p50_ms"],
                medians["broker_only"]["p99_ms"],
                None,
                None,
                m["server_cores"],
                m["swarm_cores"],
            ]
        )
    print_table(
        f"latency via RabbitMQ: {plan.subscribers} subscribers x {plan.rate_per_s:g} ev/s, "
        f"{plan.publish_s:g} s per run; service/baseline p50 = {medians['ratio_p50_ms']:.2f}, "
        f"p99 = {medians['ratio_p99_ms']:.2f}",
        [
            "server",
            "p50 ms",
            "p99 ms",
            "max ms",
            "broker-only p50 ms",
            "p99 ms",
            "received/expected",
            "dropped",
            "server cores",
            "swarm cores",
        ],
        rows,
    )
