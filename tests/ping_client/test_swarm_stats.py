"""Tests for ping_client.stats: the latency reservoir and the swarm summary."""

import json

from ping_client.stats import LatencyReservoir, SwarmStats, summarize


def test_reservoir_keeps_at_most_its_capacity_and_the_exact_max():
    reservoir = LatencyReservoir(capacity=10, seed=1)
    for n in range(1000):
        reservoir.add(n / 1000)
    reservoir.add(0.0)
    assert len(reservoir) == 1001
    assert reservoir.kept == 10
    assert reservoir.percentiles_ms()["max_ms"] == 999.0


def test_reservoir_percentiles_are_in_milliseconds():
    reservoir = LatencyReservoir(capacity=100)
    for n in range(1, 101):
        reservoir.add(n / 1000)
    assert reservoir.percentiles_ms() == {"p50_ms": 50.0, "p99_ms": 99.0, "max_ms": 100.0}


def test_empty_reservoir_reports_zeros():
    assert LatencyReservoir().percentiles_ms() == {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}


def test_record_close_counts_every_close_and_keeps_the_first():
    stats = SwarmStats()
    stats.record_close(1006, 2.34567)
    stats.record_close(1000, 5.0)
    stats.record_close(1006, 6.0)
    assert stats.first_close == (1006, 2.346)
    assert stats.closes == {1006: 2, 1000: 1}


def test_take_interval_latency_reports_then_resets():
    stats = SwarmStats()
    stats.record_latency(0.004)
    assert stats.take_interval_latency()["max_ms"] == 4.0
    assert stats.take_interval_latency() == {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    assert stats.latency.percentiles_ms()["max_ms"] == 4.0


def test_summarize_is_json_serializable_with_closes_keyed_by_string_code():
    stats = SwarmStats(clients=2)
    stats.connect_failures["refused"] += 1
    stats.record_close(1006, 1.5)
    stats.record_close(1000, 2.0)
    stats.record_latency(0.002)
    summary = summarize(stats, elapsed_s=3.14159, extra={"note": "x"})
    assert json.loads(json.dumps(summary)) == summary
    assert summary["closes"] == {"1000": 1, "1006": 1}
    assert summary["first_close"] == {"code": 1006, "after_s": 1.5}
    assert (summary["elapsed_s"], summary["note"]) == (3.142, "x")
    assert summary["connect_failures"] == {"refused": 1}
