"""Tests for event_service.snapshot: the typed snapshot names exactly what /stats serves, and
the counters' figures name exactly the counters."""

from __future__ import annotations

import dataclasses

import pytest

from event_service.counters import CounterFigures, Counters
from event_service.snapshot import KernelTcp, ServiceSnapshot
from tests.conftest import Launch

pytestmark = pytest.mark.timeout(60)


def test_the_counters_figures_are_the_counters_by_name() -> None:
    counters = Counters(events_received=3, fanout_batches=2)
    figures = counters.as_dict()
    assert set(CounterFigures.__required_keys__) == {f.name for f in dataclasses.fields(Counters)}
    assert figures == dataclasses.asdict(counters)


def test_stats_serves_the_keys_of_the_typed_snapshot_and_no_other(launch: Launch) -> None:
    stats = launch().stats()
    assert set(stats) == set(ServiceSnapshot.__required_keys__)
    assert set(stats["kernel_tcp"]) == set(KernelTcp.__required_keys__)
    assert all(isinstance(stats[key], int) for key in CounterFigures.__required_keys__)
    assert stats["broker"] == "embedded" and stats["read_handler"] == "missing"
