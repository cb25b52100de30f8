"""The workers' figures merged: counters add, latencies weigh by how many each worker saw."""

from __future__ import annotations

import dataclasses

from ping_client.fleet import worker_config
from ping_client.merge import merge_samples, merge_summaries
from ping_client.plan import WorkerPlan
from ping_client.stats import LatencyReservoir, merged_percentiles_ms
from ping_client.swarm import SwarmConfig
from ping_client.worker import WorkerSpec, spec_from_json, spec_to_json


def export(values_ms: list[float], seen: int | None = None) -> dict[str, object]:
    return {"seen": seen or len(values_ms), "max_ms": max(values_ms, default=0.0),
            "values_ms": values_ms}  # fmt: skip


def test_merged_percentiles_weigh_each_value_by_its_share():
    busy = export([10.0] * 10, seen=1000)  # each value stands for 100 latencies
    quiet = export([500.0] * 10)  # each for 1
    merged = merged_percentiles_ms([busy, quiet])
    assert merged["p50_ms"] == 10.0
    assert merged["p99_ms"] == 10.0  # 1000 of 1010 are 10 ms
    assert merged["max_ms"] == 500.0


def test_merged_percentiles_of_one_full_export_are_its_own():
    reservoir = LatencyReservoir(seed=1)
    for ms in range(1, 101):
        reservoir.add(ms / 1000)
    assert merged_percentiles_ms([reservoir.export(1000)]) == reservoir.percentiles_ms()


def test_an_export_is_bounded_and_keeps_the_count_and_max():
    reservoir = LatencyReservoir(seed=1)
    for ms in range(10_000):
        reservoir.add(ms / 1000)
    exported = reservoir.export(500)
    assert len(exported["values_ms"]) == 500
    assert exported["seen"] == 10_000
    assert exported["max_ms"] == 9999.0


def sample(connected: int, closes: dict[str, int], sending: bool = True) -> dict[str, object]:
    counters = dict.fromkeys(("connecting", "connect_failures", "pings_sent", "pings_blocked",
                              "bytes_sent", "events_received", "opened", "left", "leaving",
                              "active"), 1)  # fmt: skip
    return {**counters, "connected": connected, "blocked_in_send_s": 0.25, "closes": closes,
            "sending": sending, "latency_export": export([1.0])}  # fmt: skip


def test_samples_add_up_closes_by_code_and_sending_only_if_all_send():
    merged = merge_samples([sample(10, {"1000": 1}), sample(5, {"1000": 2, "1011": 1}, False)])
    assert merged["connected"] == 15
    assert merged["pings_sent"] == 2
    assert merged["blocked_in_send_s"] == 0.5
    assert merged["closes"] == {"1000": 3, "1011": 1}
    assert merged["sending"] is False


def test_summaries_add_up_and_the_first_close_is_the_earliest():
    def summary(n: int, first: dict[str, float] | None) -> dict[str, object]:
        return {"clients": n, "opened": n, "left": 0, "left_unanswered": 0, "pings_sent": n,
                "pings_blocked": 0, "bytes_sent": 64 * n, "blocked_in_send_s": 0.0,
                "events_received": n, "events_invalid": 0, "connected_at_end": n,
                "connected_peak": n, "connect_failures": {"refused": 1}, "closes": {},
                "first_close": first, "latency_export": export([2.0])}  # fmt: skip

    merged = merge_summaries([summary(3, {"code": 1006, "after_s": 4.0}),
                              summary(2, {"code": 1011, "after_s": 1.5})])  # fmt: skip
    assert merged["clients"] == 5
    assert merged["bytes_sent"] == 320
    assert merged["connect_failures"] == {"refused": 2}
    assert merged["first_close"] == {"code": 1011, "after_s": 1.5}
    assert merged["latency"]["p50_ms"] == 2.0


def test_a_worker_spec_crosses_the_process_boundary_unchanged():
    config = SwarmConfig(url="ws://127.0.0.1:9/ws", clients=7, subscribe=("a", "b"),
                         client_keepalive_s=2.5, churn_every_s=1.0)  # fmt: skip
    spec = WorkerSpec(3, config, ("127.0.0.4", "127.0.0.5"))
    assert spec_from_json(spec_to_json(spec)) == spec


def test_a_worker_gets_its_share_of_clients_ramp_and_churn():
    config = SwarmConfig(clients=100, ramp_per_s=50, churn_every_s=1.0, churn_batch=10,
                         duration_s=20, processes=4)  # fmt: skip
    share = worker_config(config, WorkerPlan(0, 25, ("127.0.0.2",)))
    assert (share.clients, share.ramp_per_s, share.churn_batch) == (25, 12.5, 2)
    assert share.processes == 1
    assert share.duration_s > config.duration_s  # the parent stops it; this is a backstop
    tiny = worker_config(dataclasses.replace(config, churn_batch=1), WorkerPlan(1, 25, ()))
    assert tiny.churn_every_s is None  # no share of a one-client batch
