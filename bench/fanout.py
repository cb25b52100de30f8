"""Fan-out cost: server CPU microseconds per delivered event, the service's two fan-out paths
(``FANOUT=asgi`` and ``FANOUT=direct``) against raw websockets.

The three servers publish the same event JSON at ``rate`` events/s to ``subscribers`` lean
clients (:mod:`bench.subscribers`, one process). A measured window reads the server's
``/stats`` and every process's CPU time at both ends:

    us per delivery = server CPU seconds / events delivered (from the server's own counter)

split into user and system time. The ``/stats`` calls sit outside the CPU window (the
service's reads ``/proc/net/tcp``). Repetitions rotate the order of the servers, and the
ratios are taken per repetition, so both sides of a ratio share the same minutes of a noisy
machine.

The saturation part raises the rate step by step, the servers interleaved, until deliveries
per second fall more than 5% short of ``rate x subscribers``. For the direct fan-out it also
shows how many events one write carried (``events_received / fanout_batches``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from bench import profiler
from bench.children import SubscriberProcess
from bench.figures import highest_sustained, is_sustained, median, ratio, us_per_item
from bench.report import log_dir, print_table, say, write_result
from bench.run import CpuWindow, medians_by_key, plan_for, repeat, under_load
from bench.targets import FANOUT_NAMES, Target

SERVICES = FANOUT_NAMES[1:]


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and windows of one fan-out run."""

    subscribers: int
    rate_per_s: float
    reps: int
    settle_s: float
    window_s: float
    saturation_rates: tuple[float, ...]
    saturation_windows: int
    saturation_window_s: float
    profile_s: int


RATES = (20, 30, 45, 60, 90, 120, 180, 240, 300, 360, 480, 600, 720)
FULL = Plan(1000, 20, 5, 2.0, 6.0, RATES, 3, 3.0, 10)
QUICK = Plan(200, 20, 1, 0.5, 2.0, (20, 240), 1, 2.0, 2)


def _timed_counters(target: Target) -> tuple[float, dict[str, Any]]:
    before = time.monotonic()
    counters = target.counters()
    return (before + time.monotonic()) / 2, counters


def measure_window(target: Target, client: SubscriberProcess, window_s: float) -> dict[str, Any]:
    """One window: deliveries from the server's counters, CPU of server and client."""
    t0, s0 = _timed_counters(target)
    window = CpuWindow({"server": target.pid, "client": client.pid}).start()
    time.sleep(window_s)
    cpu = window.stop()
    t1, s1 = _timed_counters(target)
    user_cores, system_cores = cpu["server_user_cores"], cpu["server_system_cores"]
    delivered_per_s = (s1["events_delivered"] - s0["events_delivered"]) / (t1 - t0)
    published_per_s = (s1["events_received"] - s0["events_received"]) / (t1 - t0)
    batches = s1.get("fanout_batches", 0) - s0.get("fanout_batches", 0)
    published = s1["events_received"] - s0["events_received"]
    rt0, r0 = client.received_at(t0)
    rt1, r1 = client.received_at(t1)
    server_cores = cpu["server_cores"]
    return {
        "subscribers": s1["connections"],
        "published_per_s": published_per_s,
        "delivered_per_s": delivered_per_s,
        "dropped": s1.get("events_dropped", 0) - s0.get("events_dropped", 0),
        "server_cores": server_cores,
        "server_user_cores": user_cores,
        "server_system_cores": system_cores,
        "us_per_delivery": us_per_item(server_cores, delivered_per_s),
        "user_us_per_delivery": us_per_item(user_cores, delivered_per_s),
        "system_us_per_delivery": us_per_item(system_cores, delivered_per_s),
        # Direct fan-out only: how many events one write to a subscriber carried.
        "events_per_write": published / batches if batches else float("nan"),
        "client_cores": cpu["client_cores"],
        # Everything else busy on the machine in the window (other tests, the bench itself).
        "other_cores": cpu["other_cores"],
        "client_received_per_s": (r1 - r0) / (rt1 - rt0) if rt1 > rt0 else float("nan"),
    }


def run_target(
    name: str,
    rate_per_s: float,
    plan: Plan,
    windows: int,
    window_s: float,
    logs: Path,
    profile_s: int = 0,
) -> dict[str, Any]:
    """Start one server and its subscribers, measure ``windows`` windows, stop both."""
    duration_s = 60 + plan.settle_s + windows * (window_s + 5) + profile_s
    load = under_load(name, rate_per_s=rate_per_s, clients=plan.subscribers,
                      duration_s=duration_s, logs=logs, settle_s=plan.settle_s)  # fmt: skip
    with load as (target, client):
        results = [measure_window(target, client, window_s) for _ in range(windows)]
        profile = None
        if profile_s:
            say(f"profiling {name} for {profile_s} s with py-spy")
            profile = profiler.record(target.pid, profile_s, logs.parent / f"profile-{name}.txt")
    return {"target": name, "rate_per_s": rate_per_s, "windows": results, "profile": profile}


def _summary(windows: list[dict[str, Any]]) -> dict[str, float]:
    keys = (
        "us_per_delivery",
        "user_us_per_delivery",
        "system_us_per_delivery",
        "events_per_write",
        "server_cores",
        "server_user_cores",
        "server_system_cores",
        "delivered_per_s",
        "published_per_s",
        "client_cores",
        "client_received_per_s",
        "other_cores",
    )
    return medians_by_key(windows, keys)


def compare(plan: Plan, logs: Path) -> dict[str, Any]:
    """Repetitions at the fixed rate, the servers rotating; the ratios per repetition."""
    runs = repeat("fanout", FANOUT_NAMES, plan.reps,
                  lambda name: run_target(name, plan.rate_per_s, plan, 1, plan.window_s, logs),
                  f"at {plan.rate_per_s:g} ev/s")  # fmt: skip
    reps = []
    for rep in range(plan.reps):  # the servers of one repetition shared its minutes
        figures: dict[str, Any] = {name: runs[name][rep]["windows"][0] for name in FANOUT_NAMES}
        figures.update(_ratios(figures))
        reps.append(figures)
    medians: dict[str, Any] = {name: _summary([r[name] for r in reps]) for name in FANOUT_NAMES}
    for key in _ratios(reps[0]):
        medians[key] = median([r[key] for r in reps])
    return {"reps": reps, "medians": medians}


def _ratios(figures: dict[str, Any]) -> dict[str, float]:
    """us per delivery of each service over the baseline's, and direct over asgi."""
    us = {name: figures[name]["us_per_delivery"] for name in FANOUT_NAMES}
    ratios = {f"ratio_{name}": ratio(us[name], us["baseline"]) for name in SERVICES}
    ratios["ratio_direct_to_asgi"] = ratio(us["direct"], us["asgi"])
    return ratios


def saturate(plan: Plan, logs: Path) -> dict[str, Any]:
    """Raise the rate until deliveries stop keeping up, for each server, interleaved."""
    steps: dict[str, list[dict[str, Any]]] = {name: [] for name in FANOUT_NAMES}
    active = list(FANOUT_NAMES)
    for rate in plan.saturation_rates:
        for name in list(active):
            say(f"saturation: {name} at {rate:g} ev/s x {plan.subscribers}")
            run = run_target(
                name, rate, plan, plan.saturation_windows, plan.saturation_window_s, logs
            )
            summary = _summary(run["windows"])
            expected = rate * median([w["subscribers"] for w in run["windows"]])
            sustained = is_sustained(summary["delivered_per_s"], expected)
            steps[name].append(
                {"rate_per_s": rate, "expected_per_s": expected, "sustained": sustained, **summary}
            )
            if not sustained:
                active.remove(name)
        if not active:
            break
    highest = {
        name: highest_sustained([(row["rate_per_s"], row["sustained"]) for row in rows])
        for name, rows in steps.items()
    }
    return {"steps": steps, "highest_sustained_rate_per_s": highest}


def profile(plan: Plan, logs: Path) -> dict[str, Any]:
    """A py-spy profile of each server at the fixed rate."""
    return {
        name: run_target(name, plan.rate_per_s, plan, 0, 0, logs, profile_s=plan.profile_s)[
            "profile"
        ]
        for name in FANOUT_NAMES
    }


def run(quick: bool, reps: int | None = None, with_profile: bool = True) -> dict[str, Any]:
    """The whole fan-out benchmark: comparison, saturation, profile; print and save."""
    plan = plan_for(quick, reps, QUICK, FULL)
    logs = log_dir("fanout")
    comparison = compare(plan, logs)
    saturation = saturate(plan, logs)
    profiles = profile(plan, logs) if with_profile and plan.profile_s else None
    _print(plan, comparison, saturation, profiles)
    result = {
        "plan": dataclasses.asdict(plan),
        "comparison": comparison,
        "saturation": saturation,
        "profiles": profiles,
    }
    write_result("fanout", quick, result)
    return result


def _print(
    plan: Plan,
    comparison: dict[str, Any],
    saturation: dict[str, Any],
    profiles: dict[str, Any] | None,
) -> None:
    columns = [
        "server",
        "us/delivery",
        "user us",
        "system us",
        "server cores",
        "delivered/s",
        "events/write",
        "client cores",
        "client recv/s",
        "other cores",
    ]
    rows = []
    medians = comparison["medians"]
    for name in FANOUT_NAMES:
        m = medians[name]
        rows.append(
            [
                name,
                m["us_per_delivery"],
                m["user_us_per_delivery"],
                m["system_us_per_delivery"],
                m["server_cores"],
                m["delivered_per_s"],
                m["events_per_write"],
                m["client_cores"],
                m["client_received_per_s"],
                m["other_cores"],
            ]
        )
    print_table(
        f"fanout: {plan.subscribers} subscribers x {plan.rate_per_s:g} ev/s, medians of "
        f"{plan.reps} reps; us per delivery over the baseline's: asgi "
        f"{medians['ratio_asgi']:.2f}, direct {medians['ratio_direct']:.2f} "
        f"(direct/asgi {medians['ratio_direct_to_asgi']:.2f})",
        columns,
        rows,
    )
    rows = []
    for name, steps in saturation["steps"].items():
        for step in steps:
            rows.append(
                [
                    name,
                    step["rate_per_s"],
                    step["expected_per_s"],
                    step["delivered_per_s"],
                    step["server_cores"],
                    step["us_per_delivery"],
                    step["events_per_write"],
                    step["client_cores"],
                    step["other_cores"],
                    "yes" if step["sustained"] else "NO",
                ]
            )
    print_table(
        f"saturation ({plan.subscribers} subscribers): highest sustained rate "
        f"{saturation['highest_sustained_rate_per_s']}",
        [
            "server",
            "rate/s",
            "expected/s",
            "delivered/s",
            "server cores",
            "us/delivery",
            "events/write",
            "client cores",
            "other cores",
            "sustained",
        ],
        rows,
    )
    for name, prof in (profiles or {}).items():
        if not prof or "error" in prof:
            say(f"profile of {name}: {prof and prof.get('error')}")
            continue
        rows = [
            [p["function"][:110], p["self"] * 100, p["total"] * 100]
            for p in prof["top_inclusive"][:25]
        ]
        print_table(
            f"py-spy, {name}: % of busy samples by function ({prof['samples']} samples)",
            ["function", "self %", "total %"],
            rows,
        )
        rows = [[p["line"][:110], p["self"] * 100] for p in prof["top_self_lines"][:10]]
        print_table(f"py-spy, {name}: hottest lines", ["line", "self %"], rows)
