"""The swarm's live line and final summary, drawn with rich."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ping_client.plan import SwarmPlan
from ping_client.safety import TCP_MEM_PATH

__all__ = ["LiveLine", "describe_plan", "format_bytes", "format_sample", "summary_table"]


def format_bytes(value: float) -> str:
    """Bytes in a short human form: 512 B, 12.3 KiB, 4.0 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_sample(sample: dict[str, Any]) -> str:
    """One line of live figures."""
    latency = sample["latency"]
    closes = ",".join(f"{code}:{n}" for code, n in sample["closes"].items()) or "-"
    parts = [
        f"t={sample['t_s']:5.0f}s",
        f"connected={sample['connected']}",
        *([f"failed={sample['connect_failures']}"] if sample.get("connect_failures") else []),
        f"pings={sample['pings_sent']}",
        f"sent={format_bytes(sample['bytes_sent'])}",
        f"blocked={sample['blocked_in_send_s']:.1f}s",
        f"events={sample['events_received']}",
        f"p50={latency['p50_ms']:.1f}ms p99={latency['p99_ms']:.1f}ms",
        f"closes={closes}",
        *([f"opened={sample['opened']} left={sample['left']}"] if sample.get("left") else []),
    ]
    if "server_recv_q_bytes" in sample:
        parts.append(f"server_recv_q={format_bytes(sample['server_recv_q_bytes'])}")
    if "kernel_tcp_mem_bytes" in sample:
        parts.append(f"tcp_mem={format_bytes(sample['kernel_tcp_mem_bytes'])}")
    if sample.get("kernel_read_ms") is not None:
        parts.append(f"read={sample['kernel_read_ms']:.1f}ms")
    if sample.get("processes", 1) > 1:
        parts.append(f"workers={sample['workers_running']}/{sample['processes']}")
    if not sample["sending"]:
        parts.append("[not sending]")
    return "  ".join(parts)


def summary_table(summary: dict[str, Any]) -> Table:
    """The final summary as a two-column table."""
    table = Table(title="ping swarm summary", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    latency = summary["latency"]
    first = summary["first_close"]
    rows = [
        ("elapsed", f"{summary['elapsed_s']:.1f} s"),
        ("clients (peak connected)", f"{summary['clients']} ({summary['connected_peak']})"),
        *([_churn_row(summary)] if summary.get("left") else []),
        ("connect failures", _mapping(summary["connect_failures"])),
        ("pings sent / blocked", f"{summary['pings_sent']} / {summary['pings_blocked']}"),
        ("bytes sent", format_bytes(summary["bytes_sent"])),
        ("time blocked in send", f"{summary['blocked_in_send_s']:.1f} s"),
        ("events received", str(summary["events_received"])),
        (
            "latency p50 / p99 / max",
            "{p50_ms:.1f} / {p99_ms:.1f} / {max_ms:.1f} ms".format(**latency),
        ),
        ("closes by code", _mapping(summary["closes"])),
        ("first close", f"{first['code']} after {first['after_s']:.1f} s" if first else "-"),
        ("server Recv-Q peak", _server_peak(summary)),
        ("client Send-Q peak", _bytes_or_dash(summary["client_send_q_bytes_peak"])),
        ("kernel read p50 / max", _read_cost(summary.get("kernel_read_ms"))),
        ("processes", str(summary.get("processes", 1))),
    ]
    if summary.get("source_addresses"):
        rows.append(("source addresses", _address_span(summary["source_addresses"])))
    if summary.get("tcp_mem_guard_threshold_from", TCP_MEM_PATH) != TCP_MEM_PATH:
        rows.append(("guard threshold from", summary["tcp_mem_guard_threshold_from"]))
    if summary["tcp_mem_guard_tripped"]:
        rows.append(("guard", summary["tcp_mem_guard_tripped"]))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _server_peak(summary: dict[str, Any]) -> str:
    """The server's Recv-Q peak and where it was read: the kernel here, or the server's /stats."""
    peak = summary["server_recv_q_bytes_peak"]
    source = summary.get("server_figures_from")
    if peak is None:
        return "- (not visible from here)"
    return format_bytes(peak) if source in (None, "kernel") else f"{format_bytes(peak)} ({source})"


def describe_plan(plan: SwarmPlan) -> str:
    """``5000 clients over 2 processes, from 127.0.0.2-127.0.0.3``, and the plan's note."""
    words = f"{plan.clients} clients over {plan.processes} processes"
    if plan.source_addresses:
        words += f", from {_address_span(list(plan.source_addresses))}"
    return f"{words} ({plan.note})" if plan.note else words


def _address_span(addresses: list[str]) -> str:
    return addresses[0] if len(addresses) == 1 else f"{addresses[0]}-{addresses[-1]}"


def _read_cost(cost: dict[str, float] | None) -> str:
    if not cost:
        return "-"
    return (f"{cost['p50_ms']:.1f} / {cost['max_ms']:.1f} ms "
            f"(CPU {cost['cpu_p50_ms']:.1f} / {cost['cpu_max_ms']:.1f})")  # fmt: skip


def _bytes_or_dash(value: int | None) -> str:
    return "-" if value is None else format_bytes(value)


def _churn_row(summary: dict[str, Any]) -> tuple[str, str]:
    left = f"{summary['left']} ({summary['left_unanswered']})"
    return ("clients opened / left (close unanswered)", f"{summary['opened']} / {left}")


def _mapping(values: dict[str, int]) -> str:
    return ", ".join(f"{key}: {n}" for key, n in values.items()) or "-"


class LiveLine:
    """One line of figures per second: refreshed in place on a terminal, appended otherwise."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._live = Live(console=console, auto_refresh=False) if console.is_terminal else None

    def __enter__(self) -> LiveLine:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def __call__(self, sample: dict[str, Any]) -> None:
        line = Text(format_sample(sample))
        if self._live is not None:
            self._live.update(line, refresh=True)
        else:
            self._console.print(line, soft_wrap=True)
