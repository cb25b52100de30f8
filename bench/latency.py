"""Publish-to-receive latency through RabbitMQ at ``subscribers`` x ``rate`` events/s.

The service consumes the ``events`` fanout exchange (``AMQP_URL``); events come from
:func:`event_service.publish.publish`, with publisher confirms, at ``rate`` per second. The
subscribers are the lean clients of :mod:`bench.subscribers` reading as soon as data comes
(``--batch-ms 0``); every 10th one reads each event's ``ts`` and keeps ``time.time() - ts``.
(The real swarm, ``python -m ping_client``, needs about 50 us per event it parses: at
20,000 events/s it would be the bottleneck, and its p50 would measure itself.)

The servers, rotating in every repetition: the raw ``websockets`` broadcast server relaying
the same exchange (:mod:`bench.baseline_server` ``--amqp-url``), the service with
``FANOUT=asgi``, and the service with ``FANOUT=direct`` and three batching windows (the
default 1 ms, 0 and 5 ms: what the window costs). And in every run, a bare aio-pika
consumer in this process on its own queue bound to the same exchange: the broker's share
(publish, route, deliver one copy).

At 20 events/s the events are 50 ms apart and no batching window makes one wait. The second
part shows what a window costs when events come about as often as it: the embedded source
at ``window_rate`` events/s (``ts`` stamped by the service itself, so this is the fan-out's
own latency) to ``window_subscribers``, for the direct fan-out with each window.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import aio_pika

from bench.figures import median, ratio
from bench.report import log_dir, print_table, write_result
from bench.run import CpuWindow, medians_by_key, medians_by_name, plan_for, repeat, under_load
from event_service.publish import publish
from event_service.sources.rabbitmq import declare_exchange
from sockscope.procfs import percentile

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
NAMES = ("baseline", "asgi", "direct", "direct-0ms", "direct-5ms")
WINDOW_NAMES = ("direct-0ms", "direct", "direct-5ms")
LATENCY_EVERY = 10
# Subscribers that read as soon as data comes, every LATENCY_EVERY-th one timing each event.
CLIENT_ARGS = ("--batch-ms", "0", "--latency-every", str(LATENCY_EVERY))


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and windows of one latency run."""

    subscribers: int
    rate_per_s: float
    publish_s: float
    reps: int
    connect_budget_s: float  # the subscribers run for a fixed duration: this much is set aside
    window_subscribers: int
    window_rate_per_s: float
    window_s: float


FULL = Plan(1000, 20, 15.0, 3, 60.0, 200, 200, 8.0)
QUICK = Plan(200, 20, 3.0, 1, 30.0, 100, 200, 3.0)


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


def run_once(name: str, plan: Plan, logs: Path) -> dict[str, Any]:
    """One run against server ``name``: start it and the subscribers, publish, read them."""
    load = under_load(name, rate_per_s=0, clients=plan.subscribers,
                      duration_s=plan.connect_budget_s + plan.publish_s + 30.0, logs=logs,
                      connect_timeout_s=plan.connect_budget_s, settle_s=1.0, amqp_url=AMQP_URL,
                      client_args=CLIENT_ARGS)  # fmt: skip
    with load as (service, subscribers):
        window = CpuWindow({"server": service.pid, "subscriber": subscribers.pid}).start()
        count = round(plan.rate_per_s * plan.publish_s)
        watched = asyncio.run(publish_and_watch(plan.rate_per_s, count))
        cpu = window.stop()
        stats = service.counters()
        received = subscribers.latest()["received"]
        subscribers.stop()
        summary = subscribers.latest()  # the last line, with the latencies
    latency = summary.get("latency", {})
    return {
        "server": name,
        **watched,
        "figures": {
            "p50_ms": latency.get("p50_ms", float("nan")),
            "p99_ms": latency.get("p99_ms", float("nan")),
            "max_ms": latency.get("max_ms", float("nan")),
            "latency_samples": latency.get("count", 0),
            "events_received_by_subscribers": received,
            "expected": watched["published"] * plan.subscribers,
            "events_dropped": stats.get("events_dropped", 0),
            "server_cores": cpu["server_cores"],
            "subscriber_cores": cpu["subscriber_cores"],
        },
    }


def run_embedded(name: str, plan: Plan, logs: Path) -> dict[str, Any]:
    """The fan-out's own latency: the embedded source at the window part's rate."""
    load = under_load(name, rate_per_s=plan.window_rate_per_s, clients=plan.window_subscribers,
                      duration_s=plan.connect_budget_s + plan.window_s + 30.0, logs=logs,
                      connect_timeout_s=plan.connect_budget_s, settle_s=1.0 + plan.window_s,
                      client_args=CLIENT_ARGS)  # fmt: skip
    with load as (service, subscribers):
        stats = service.counters()
        subscribers.stop()
        latency = subscribers.latest().get("latency", {})
    batches = stats.get("fanout_batches", 0)
    return {
        "server": name,
        "p50_ms": latency.get("p50_ms", float("nan")),
        "p99_ms": latency.get("p99_ms", float("nan")),
        "max_ms": latency.get("max_ms", float("nan")),
        "latency_samples": latency.get("count", 0),
        "events_per_write": stats["events_received"] / batches if batches else float("nan"),
    }


def window_cost(plan: Plan, logs: Path) -> dict[str, Any]:
    """Each batching window at a rate close to it; medians of the repetitions."""
    detail = f"{plan.window_subscribers} x {plan.window_rate_per_s:g} ev/s (embedded)"
    runs = repeat("latency, window part,", WINDOW_NAMES, plan.reps,
                  lambda name: run_embedded(name, plan, logs), detail)  # fmt: skip
    medians = medians_by_name(runs, ("p50_ms", "p99_ms", "max_ms", "events_per_write"))
    print_table(
        f"batching window: {plan.window_subscribers} subscribers x "
        f"{plan.window_rate_per_s:g} ev/s from the embedded source, medians of {plan.reps}",
        ["server", "p50 ms", "p99 ms", "max ms", "events/write"],
        [
            [name, m["p50_ms"], m["p99_ms"], m["max_ms"], m["events_per_write"]]
            for name, m in medians.items()
        ],
    )
    return {"reps": runs, "medians": medians}


def run(quick: bool, reps: int | None = None) -> dict[str, Any]:
    """Repetitions rotating the servers, medians and ratios; table; JSON."""
    plan = plan_for(quick, reps, QUICK, FULL)
    logs = log_dir("latency")
    results = repeat("latency", NAMES, plan.reps, lambda name: run_once(name, plan, logs),
                     f"{plan.subscribers} x {plan.rate_per_s:g} ev/s")  # fmt: skip
    keys = ("p50_ms", "p99_ms", "max_ms", "server_cores", "subscriber_cores")
    medians: dict[str, Any] = {
        name: medians_by_key([r["figures"] for r in rows], keys) for name, rows in results.items()
    }
    every = [r for rows in results.values() for r in rows]
    medians["broker_only"] = {
        key: median([r["broker_only"][key] for r in every]) for key in ("p50_ms", "p99_ms")
    }
    for name in NAMES[1:]:
        for key in ("p50_ms", "p99_ms"):
            medians[f"ratio_{name}_{key}"] = ratio(medians[name][key], medians["baseline"][key])
            medians[f"ratio_{name}_to_asgi_{key}"] = ratio(medians[name][key], medians["asgi"][key])
    _print(plan, results, medians)
    window = window_cost(plan, logs)
    write_result(
        "latency",
        quick,
        {
            "plan": dataclasses.asdict(plan),
            "reps": results,
            "medians": medians,
            "window": window,
        },
    )
    return {"reps": results, "medians": medians, "window": window}


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
                    f"{s['events_received_by_subscribers']}/{s['expected']}",
                    s["events_dropped"],
                    s["server_cores"],
                    s["subscriber_cores"],
                ]
            )
    for name in NAMES:
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
                m["subscriber_cores"],
            ]
        )
    print_table(
        f"latency via RabbitMQ: {plan.subscribers} subscribers x {plan.rate_per_s:g} ev/s, "
        f"{plan.publish_s:g} s per run; p50/p99 over asgi's: direct "
        f"{medians['ratio_direct_to_asgi_p50_ms']:.2f}/{medians['ratio_direct_to_asgi_p99_ms']:.2f}",
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
            "subscriber cores",
        ],
        rows,
    )
