"""The live line and the summary table say how many processes and what a kernel read cost."""

from __future__ import annotations

from rich.console import Console

from ping_client.plan import Limits, plan_swarm
from ping_client.view import describe_plan, format_sample, summary_table

SAMPLE = {
    "t_s": 3.0, "connected": 5000, "connect_failures": 0, "pings_sent": 10, "bytes_sent": 640,
    "blocked_in_send_s": 0.0, "events_received": 0, "closes": {}, "sending": True,
    "latency": {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0},
}  # fmt: skip


def test_the_live_line_shows_workers_read_cost_and_failures():
    line = format_sample({**SAMPLE, "kernel_read_ms": 12.5, "processes": 2, "workers_running": 2,
                          "connect_failures": 3})  # fmt: skip
    assert "read=12.5ms" in line
    assert "workers=2/2" in line
    assert "failed=3" in line
    assert "workers=" not in format_sample(SAMPLE)


def test_the_summary_table_has_processes_sources_and_read_cost():
    summary = {
        "elapsed_s": 10.0, "clients": 5000, "connected_peak": 5000, "connect_failures": {},
        "pings_sent": 1, "pings_blocked": 0, "bytes_sent": 64, "blocked_in_send_s": 0.0,
        "events_received": 0, "latency": {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0},
        "closes": {}, "first_close": None, "server_recv_q_bytes_peak": 0,
        "client_send_q_bytes_peak": 0, "tcp_mem_guard_tripped": None, "processes": 2,
        "source_addresses": ["127.0.0.2", "127.0.0.3"],
        "kernel_read_ms": {"samples": 9, "p50_ms": 4.0, "max_ms": 9.0, "cpu_p50_ms": 3.0,
                           "cpu_max_ms": 5.0},
    }  # fmt: skip
    console = Console(width=120, record=True)
    console.print(summary_table(summary))
    text = console.export_text()
    assert "127.0.0.2-127.0.0.3" in text
    assert "4.0 / 9.0 ms (CPU 3.0 / 5.0)" in text


def test_the_plan_is_said_in_one_line():
    limits = Limits(20_000, (32768, 60999))
    assert describe_plan(plan_swarm(40_000, None, limits=limits, host="127.0.0.1")) == (
        "40000 clients over 3 processes, from 127.0.0.2-127.0.0.4"
    )
    remote = describe_plan(plan_swarm(100, 2, limits=limits, host="::1"))
    assert remote.startswith("100 clients over 2 processes (::1 is not on IPv4 loopback")
