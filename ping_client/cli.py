"""Command line of the ping swarm: ``python -m ping_client`` / ``ping-swarm``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from ping_client.errors import PingClientError
from ping_client.fleet import Fleet
from ping_client.limits import raise_fd_limit, read_limits
from ping_client.plan import SwarmPlan, plan_swarm
from ping_client.swarm import PAYLOADS, PING_KINDS, Swarm, SwarmConfig
from ping_client.view import LiveLine, describe_plan, summary_table

__all__ = [
    "config_from_args",
    "event_types",
    "main",
    "plan_from_config",
    "run_swarm",
    "run_until_sigterm",
    "seconds_or_off",
    "swarm_parser",
    "write_json",
]


def seconds_or_off(value: str) -> float | None:
    """argparse type: seconds > 0, or 0 / off for none."""
    if value.strip().lower() in ("0", "off", "none"):
        return None
    seconds = float(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("expected seconds > 0, or 0 / off")
    return seconds


def event_types(value: str) -> tuple[str, ...]:
    """argparse type: comma-separated event types (checked by the swarm's config)."""
    types = tuple(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
    if not types:
        raise argparse.ArgumentTypeError("expected one or more event types, comma-separated")
    return types


def swarm_parser() -> argparse.ArgumentParser:
    """The swarm's options."""
    parser = argparse.ArgumentParser(
        prog="ping-swarm",
        description="Open WebSocket clients that send upstream pings and read pushed events. "
        "The lab that runs it against the service is 'python -m leaklab'.",
    )
    defaults = SwarmConfig()
    add = parser.add_argument
    add("--url", default=defaults.url, help="subscriber URL (default: %(default)s)")
    add("--clients", type=int, default=defaults.clients, help="connections (default: %(default)s)")
    add(
        "--ramp",
        type=float,
        default=defaults.ramp_per_s,
        dest="ramp_per_s",
        help="new connections per second (default: %(default)s)",
    )
    add(
        "--interval",
        type=float,
        default=defaults.interval_s,
        dest="interval_s",
        help="seconds between pings of one client (default: %(default)s)",
    )
    add(
        "--size",
        type=int,
        default=defaults.size_bytes,
        dest="size_bytes",
        help="bytes per ping (default: %(default)s)",
    )
    add(
        "--payload",
        choices=PAYLOADS,
        default=defaults.payload,
        help="random: incompressible binary; text: compressible text (default: %(default)s)",
    )
    add(
        "--ping-kind",
        choices=PING_KINDS,
        default=defaults.ping_kind,
        help="message: data frames, which fill Recv-Q; control: Ping frames, answered by the "
        "server's WebSocket library (default: %(default)s)",
    )
    add("--compression", action="store_true", help="offer permessage-deflate (default: off)")
    add(
        "--client-keepalive",
        type=seconds_or_off,
        default=None,
        dest="client_keepalive_s",
        metavar="SECONDS",
        help="send keepalive pings and fail with 1011 after no pong (default: off)",
    )
    add(
        "--duration",
        type=float,
        default=defaults.duration_s,
        dest="duration_s",
        help="seconds before the swarm stops by itself (default: %(default)s)",
    )
    add(
        "--tcp-mem-guard",
        type=float,
        default=defaults.tcp_mem_guard,
        help="stop sending at this fraction of the kernel's TCP memory pressure threshold "
        "(default: %(default)s)",
    )
    churn = parser.add_argument_group(
        "churn",
        "clients that come and go: a batch of new clients every --churn-every seconds, each "
        "leaving with a normal close after --lifetime seconds (default: off, the clients "
        "connect once and stay)",
    )
    churn.add_argument(
        "--churn-every",
        type=seconds_or_off,
        default=defaults.churn_every_s,
        dest="churn_every_s",
        metavar="SECONDS",
        help="open --churn-batch new clients every SECONDS, after the first --clients "
        "(default: off)",
    )
    churn.add_argument(
        "--churn-batch",
        type=int,
        default=defaults.churn_batch,
        metavar="N",
        help="clients per churn batch (default: %(default)s)",
    )
    churn.add_argument(
        "--lifetime",
        type=seconds_or_off,
        default=defaults.client_lifetime_s,
        dest="client_lifetime_s",
        metavar="SECONDS",
        help="each client closes normally SECONDS after it opened (default: off, stays)",
    )
    churn.add_argument(
        "--subscribe",
        type=event_types,
        default=defaults.subscribe,
        metavar="TYPE[,TYPE...]",
        help="subscribe to these event types only (?events=...); a type that is rarely or "
        "never published keeps the server from ever writing to the client "
        "(default: every type)",
    )
    add(
        "--processes",
        type=int,
        default=defaults.processes,
        metavar="N",
        help="worker processes to spread the clients over, each from loopback source "
        "addresses of its own (127.0.0.2, ...); 1: this process alone (default: as few as "
        "the fd hard limit allows)",
    )
    add("--allow-remote", action="store_true", help="allow a target that is not loopback")
    add("--json-out", type=Path, help="write the final summary as JSON to this file")
    return parser  # fmt: skip


def config_from_args(args: argparse.Namespace) -> SwarmConfig:
    """The swarm config the parsed arguments describe."""
    fields = {name: value for name, value in vars(args).items() if name != "json_out"}
    return SwarmConfig(**fields)


def plan_from_config(config: SwarmConfig) -> SwarmPlan:
    """How the swarm spreads over processes under this process's limits (raised first)."""
    uri = config.validate()
    raise_fd_limit()
    return plan_swarm(config.clients, config.processes, limits=read_limits(), host=uri.host)


def run_swarm(argv: list[str]) -> int:
    """Parse options, run one swarm with a live line, print and save the summary."""
    parser = swarm_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    if not console.is_terminal:
        # Logs, pipes and `docker compose run -T`: room for the summary's rows, unwrapped
        # (a wrapped row splits a value from what it says, e.g. where it was read).
        console = Console(stderr=True, width=200)
    try:
        config = config_from_args(args)
        plan = plan_from_config(config)
        swarm: Swarm | Fleet = Swarm(config) if plan.processes == 1 else Fleet(config, plan)
    except ValueError as exc:
        parser.error(str(exc))
    if plan.processes > 1:
        console.print(describe_plan(plan))
    try:
        with LiveLine(console) as live:
            summary = asyncio.run(run_until_sigterm(swarm, live))
    except PingClientError as exc:
        console.print(f"ping-swarm: error: {exc}")
        return 1
    console.print(summary_table(summary))
    if args.json_out:
        write_json(args.json_out, summary)
        console.print(f"summary written to {args.json_out}")
    return 0


async def run_until_sigterm(swarm: Swarm | Fleet, on_sample: LiveLine) -> dict[str, Any]:
    """Run the swarm; SIGTERM (``docker stop``) or Ctrl-C ends it early with a clean close and
    the summary (with workers, they ignore Ctrl-C and the parent stops them and merges their
    summaries). A second Ctrl-C interrupts at once, without a summary.
    """
    loop = asyncio.get_running_loop()

    def stop(signum: signal.Signals) -> None:
        if signum == signal.SIGINT:
            loop.remove_signal_handler(signal.SIGINT)  # the next Ctrl-C is KeyboardInterrupt
        swarm.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await swarm.run(on_sample)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, creating the folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the swarm with the command line's options."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        return run_swarm(argv)
    except KeyboardInterrupt:
        return 130
