"""Reading sockets at scale: one ``/stats``, and one lab sample, against baselines in the run.

Three parts, loopback only, every connection closed at the end:

- ``stats``: the event service with 10,000 idle sessions (:mod:`bench.subscribers`). Each
  ``GET /stats`` is timed end to end, with the reading's own time (``sockets_read_s``) and
  the worst ``/healthz`` answer during it (the service's loop, seen from outside), and its
  figures are checked against ``ss -tmnHe`` for the same sockets (exact local address and
  port, inodes of the service's fds). Baselines on the same sockets: ``ss -tmnH`` with the
  same filter, and the old reading (``/proc/net/tcp`` parsed whole, sockets by port).
- ``loop``: this process accepts 10,000 connections and reads its own sockets as the service
  does (``event_service.observer.read_service_sockets``, in a worker thread), while a 1 ms
  ticker on the event loop records how late it runs; baseline: the old ``/proc`` reading,
  in a worker thread too, as the old observer did.
- ``sample``: a lab-style sample at 10,000 to 40,000 connections held by child processes
  (:mod:`bench.holders`): the server's sockets by exact local address and port with skmem,
  the clients' by exact remote address and port. Baselines, interleaved: ``ss -tmnH`` with
  the same filter, and the old ``/proc/net/tcp`` parse by port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.children import SubscriberProcess
from bench.figures import median, ratio
from bench.report import log_dir, print_table, say, write_result
from bench.run import plan_for
from event_service.observer import read_service_sockets
from event_service.settings import settings_from_env
from leaklab.children import ChildProcess, ServiceProcess, bind_listener
from sockscope.diag import socket_totals
from sockscope.kernel import read_tcp_sockets
from sockscope.netlink import read_sockets
from sockscope.procfs import queue_totals

PER_PROCESS = 15_000  # connections per holder process: under the fd limit and port range
SS_CONNECTED = "state established state syn-sent state fin-wait-1 state fin-wait-2 " \
    "state close-wait state last-ack state closing"  # fmt: skip
_SKMEM_RE = re.compile(r"skmem:\(r(\d+),rb(\d+),t(\d+),tb(\d+),f(\d+),w(\d+)")


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one run."""

    sessions: int
    loop_sockets: int
    sample_steps: tuple[int, ...]
    reps: int


FULL = Plan(10_000, 10_000, (10_000, 20_000, 40_000), 9)
QUICK = Plan(1_000, 1_000, (2_000,), 3)


def timed(read: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = read()
    return time.perf_counter() - started, result


# Witnesses and the old way


@dataclasses.dataclass(frozen=True)
class SsFigures:
    """What ``ss -tmnH`` says about a set of sockets, summed."""

    sockets: int
    recv_q_bytes: int
    send_q_bytes: int
    skmem_r_bytes: int
    skmem_rb_bytes: int


def ss_figures(filter_text: str, inodes: set[int] | None = None) -> SsFigures:
    """Run ``ss -tmnH`` (``-e`` too when keeping ``inodes``) and sum its sockets."""
    flags = "-tmnHe" if inodes is not None else "-tmnH"
    out = subprocess.run(
        ["ss", flags, *SS_CONNECTED.split(), filter_text],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    count = recv = send = r = rb = 0
    keep = False
    for line in out.splitlines():
        if line and not line[0].isspace():
            words = line.split()
            inode = re.search(r"\bino:(\d+)", line)
            keep = inodes is None or (inode is not None and int(inode.group(1)) in inodes)
            if keep:  # several states asked for: the State column is there
                count += 1
                recv, send = recv + int(words[1]), send + int(words[2])
        match = _SKMEM_RE.search(line)
        if match and keep:
            r, rb = r + int(match.group(1)), rb + int(match.group(2))
    return SsFigures(count, recv, send, r, rb)


def old_server_reading(port: int) -> dict[str, int]:
    """What the service did before: every row of /proc/net/tcp{,6}, sockets by port."""
    totals = queue_totals(s for s in read_tcp_sockets() if s.local_port == port)
    return {"sockets": totals.sockets, "recv_q_bytes": totals.recv_q_bytes}


def old_lab_reading(port: int) -> dict[str, int]:
    """What the swarm did before: one parse, server and clients by port."""
    rows = read_tcp_sockets()
    server = queue_totals(s for s in rows if s.local_port == port)
    clients = queue_totals(s for s in rows if s.remote_port == port)
    return {"server_sockets": server.sockets, "client_sockets": clients.sockets}


def process_inodes(pid: int) -> set[int]:
    """Socket inodes of process ``pid``, from its fd links (apart from sockscope)."""
    found = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            if target.startswith("socket:["):
                found.add(int(target[8:-1]))
    return found


# Connections held by children


@contextlib.contextmanager
def held(connections: int, logs: Path, *, accept_here: bool = False) -> Iterator[Any]:
    """``connections`` idle loopback connections to a listener of ours, held by children.

    Yields ``(listener, accepted)``: ``accepted`` is the list this process holds when
    ``accept_here`` is set (one in three has 100 unread bytes), else acceptor children hold
    the server side. The clients connect from 127.0.0.2, 127.0.0.3, ... (one address per
    ``PER_PROCESS``), so that the ephemeral ports of one source address suffice.
    """
    listener = bind_listener("127.0.0.1", backlog=4096)
    children: list[ChildProcess] = []
    accepted: list[socket.socket] = []
    processes = math.ceil(connections / PER_PROCESS)
    counts = [connections // processes + (i < connections % processes) for i in range(processes)]
    port = listener.getsockname()[1]
    try:
        fd = listener.fileno()
        for index, count in enumerate(counts if not accept_here else ()):
            args = ["accept", "--count", str(count), "--listen-fd", str(fd)]
            children.append(_holder(logs / f"holder-accept-{index}.log", args, listen_fd=fd))
        for index, count in enumerate(counts):
            args = ["connect", "--count", str(count), "--target", f"127.0.0.1:{port}",
                    "--source", f"127.0.0.{index + 2}", "--send-bytes", "100"]  # fmt: skip
            children.append(_holder(logs / f"holder-connect-{index}.log", args))
        if accept_here:
            while len(accepted) < connections:
                accepted.append(listener.accept()[0])
        for child in children:
            if not child.stdout.readline():
                raise RuntimeError(f"a holder exited early: {child.log_tail()}")
        time.sleep(0.5)  # the last bytes land
        yield listener, accepted
    finally:
        for child in children:  # all at once: each closes thousands of sockets
            if child.is_running():
                child.signal(signal.SIGTERM)
        for child in children:
            child.stop(30.0)
        for sock in accepted:
            sock.close()
        listener.close()


def _holder(log_path: Path, args: list[str], listen_fd: int | None = None) -> ChildProcess:
    argv = [sys.executable, "-m", "bench.holders", *args]
    pass_fds = () if listen_fd is None else (listen_fd,)
    return ChildProcess(argv, {}, log_path, pass_fds=pass_fds, capture_stdout=True).start()


# Part 1: /stats of the real service


class Http:
    """One kept-alive HTTP/1.1 connection."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str) -> bytes:
        self._connection.request("GET", path)
        response = self._connection.getresponse()
        return response.read()

    def close(self) -> None:
        self._connection.close()


def measure_stats(plan: Plan, logs: Path) -> dict[str, Any]:
    """``/stats`` with ``plan.sessions`` idle sessions: time, loop, figures against ss."""
    settings = settings_from_env({"READ_HANDLER": "fixed", "PORT": "0", "EVENT_RATE": "0"})
    service = ServiceProcess(settings, logs / "service.log", fd_limit=20_000).start()
    try:
        assert service.port is not None and service.pid is not None
        url = service.ws_url
        with SubscriberProcess(url, plan.sessions, 900, logs / "subscribers.log") as clients:
            clients.wait_connected(timeout_s=300)
            stats_http, probe_http = Http(service.port), Http(service.port)
            try:
                stats_http.get("/healthz")  # both connections open and served from now on
                probe_http.get("/healthz")
                idle_probe = [timed(lambda: probe_http.get("/healthz"))[0] for _ in range(50)]
                rows = [_one_stats(service, stats_http, probe_http) for _ in range(plan.reps)]
            finally:
                stats_http.close()
                probe_http.close()
    finally:
        service.stop()
    keys = ("stats_s", "sockets_read_s", "stats_with_probe_s", "healthz_during_max_s", "ss_s",
            "old_proc_s")  # fmt: skip
    medians = {key: median([row[key] for row in rows]) for key in keys}
    return {
        "sessions": plan.sessions,
        "reps": rows,
        "medians": medians,
        "healthz_idle_median_s": median(idle_probe),
        "healthz_idle_max_s": max(idle_probe),
        "figures_agree_with_ss": all(row["agrees"] for row in rows),
    }


def _one_stats(service: ServiceProcess, stats_http: Http, probe_http: Http) -> dict[str, Any]:
    """One /stats between two equal ss readings; then one more, /healthz asked meanwhile."""
    assert service.port is not None and service.pid is not None
    witness = f"src 127.0.0.1:{service.port}"
    for _ in range(5):  # until ss says the same just before and just after
        before = ss_figures(witness, process_inodes(service.pid))
        stats_s, body = timed(lambda: stats_http.get("/stats"))
        after = ss_figures(witness, process_inodes(service.pid))
        if before == after:
            break
    stats = json.loads(body)
    ours = SsFigures(stats["sockets"], stats["recv_q_bytes"], stats["send_q_bytes"],
                     stats["skmem_r_bytes"], stats["skmem_rb_bytes"])  # fmt: skip
    probes: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            probes.append(timed(lambda: probe_http.get("/healthz"))[0])

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        probed_s, _ = timed(lambda: stats_http.get("/stats"))
    finally:
        done.set()
        prober.join()
    ss_s, _ = timed(lambda: ss_figures(witness))
    old_s, _ = timed(lambda: old_server_reading(service.port or 0))
    return {
        "stats_s": stats_s,
        "sockets_read_s": stats["sockets_read_s"],
        "stats_with_probe_s": probed_s,
        "healthz_during_max_s": max(probes, default=0.0),
        "healthz_during_count": len(probes),
        "ss_s": ss_s,
        "old_proc_s": old_s,
        "sockets": stats["sockets"],
        "agrees": before == after == ours,
        "unchanged": before == after,
        "ours": dataclasses.asdict(ours),
        "ss": dataclasses.asdict(before),
    }


# Part 2: the loop of a process that reads its own sockets


async def _loop_lateness(read: Callable[[], Any]) -> tuple[float, float, float]:
    """Run ``read`` in a worker thread; (its seconds, worst and total lateness of a 1 ms tick)."""
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            expected = loop.time() + 0.001
            await asyncio.sleep(0.001)
            lateness.append(max(0.0, loop.time() - expected))

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    lateness.clear()
    started = time.perf_counter()
    await asyncio.to_thread(read)
    read_s = time.perf_counter() - started
    done.set()
    await ticker
    return read_s, max(lateness, default=0.0), sum(lateness)


def measure_loop(plan: Plan, logs: Path) -> dict[str, Any]:
    """This process's own sockets, read as the service does and as it did, loop watched."""
    with held(plan.loop_sockets, logs, accept_here=True) as (listener, accepted):
        port = listener.getsockname()[1]
        readers: dict[str, Callable[[], Any]] = {
            "netlink + own fds (now)": lambda: read_service_sockets(port),
            "/proc/net/tcp by port (before)": lambda: old_server_reading(port),
            "idle (no reading, 20 ms)": lambda: time.sleep(0.02),
        }
        rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in readers}
        for _ in range(plan.reps):
            for name, read in readers.items():
                rows[name].append(asyncio.run(_loop_lateness(read)))
        check = read_service_sockets(port)
        assert check.sockets == len(accepted), (check.sockets, len(accepted))
    table = {
        name: {
            "read_s": median([r[0] for r in values]),
            "worst_tick_late_s": median([r[1] for r in values]),
            "tick_late_total_s": median([r[2] for r in values]),
        }
        for name, values in rows.items()
    }
    return {"sockets": plan.loop_sockets, "medians": table, "reps": rows}


# Part 3: a lab-style sample


def lab_sample(server: tuple[str, int]) -> dict[str, int]:
    """Server sockets by exact local end (with skmem), clients by exact remote end.

    As the lab reads them: the server's of its listener's family, the clients' of both.
    """
    served = socket_totals(read_sockets(local=server, families=(socket.AF_INET,)))
    clients = socket_totals(read_sockets(remote=server, skmem=False))
    return {
        "server_sockets": served.sockets,
        "server_recv_q_bytes": served.recv_q_bytes,
        "server_skmem_r_bytes": served.skmem_r_bytes,
        "client_sockets": clients.sockets,
        "client_send_q_bytes": clients.send_q_bytes,
    }


def ss_sample(server: tuple[str, int]) -> dict[str, int]:
    """The same sample from one ``ss -tmnH`` run with the same filter."""
    end = f"{server[0]}:{server[1]}"
    out = subprocess.run(
        ["ss", "-tmnH", *SS_CONNECTED.split(), f"( src {end} or dst {end} )"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    sample = dict.fromkeys(("server_sockets", "server_recv_q_bytes", "server_skmem_r_bytes",
                            "client_sockets", "client_send_q_bytes"), 0)  # fmt: skip
    is_server = False
    for line in out.splitlines():
        if line and not line[0].isspace():
            words = line.split()
            is_server = words[3] == end
            if is_server:
                sample["server_sockets"] += 1
                sample["server_recv_q_bytes"] += int(words[1])
            else:
                sample["client_sockets"] += 1
                sample["client_send_q_bytes"] += int(words[2])
        match = _SKMEM_RE.search(line)
        if match and is_server:
            sample["server_skmem_r_bytes"] += int(match.group(1))
    return sample


def measure_samples(plan: Plan, logs: Path) -> list[dict[str, Any]]:
    """At each step: the three readings, interleaved, ``plan.reps`` times each."""
    results = []
    for connections in plan.sample_steps:
        say(f"sockets sample: {connections} connections")
        with held(connections, logs) as (listener, _):
            server = ("127.0.0.1", listener.getsockname()[1])
            readers: dict[str, Callable[[], Any]] = {
                "netlink": functools.partial(lab_sample, server),
                "ss -tmnH": functools.partial(ss_sample, server),
                "/proc/net/tcp by port": functools.partial(old_lab_reading, server[1]),
            }
            times: dict[str, list[float]] = {name: [] for name in readers}
            cpu: list[float] = []
            agree = []
            ours: dict[str, int] = {}
            for _ in range(plan.reps):
                for name, read in readers.items():
                    cpu_before = time.process_time()
                    seconds, value = timed(read)
                    times[name].append(seconds)
                    if name == "netlink":
                        cpu.append(time.process_time() - cpu_before)
                        ours = value
                agree.append(ours == ss_sample(server))
            results.append({
                "connections": connections,
                "sample": ours,
                "agrees_with_ss": all(agree),
                "median_s": {name: median(values) for name, values in times.items()},
                "netlink_cpu_median_s": median(cpu),
                "times_s": times,
            })  # fmt: skip
    return results


def run(quick: bool, reps: int | None = None) -> dict[str, Any]:
    """All three parts; tables; JSON."""
    plan = plan_for(quick, reps, QUICK, FULL)
    logs = log_dir("sockets")
    say(f"sockets: /stats with {plan.sessions} sessions")
    stats = measure_stats(plan, logs)
    say(f"sockets: own sockets read in a thread, {plan.loop_sockets} sockets, loop watched")
    loop = measure_loop(plan, logs)
    samples = measure_samples(plan, logs)
    ms = 1000.0
    m = stats["medians"]
    print_table(
        f"/stats at {stats['sessions']} sessions (medians of {plan.reps}; ms)",
        ["reading", "ms", "x of /stats"],
        [
            ["GET /stats, end to end", m["stats_s"] * ms, 1.0],
            ["  its socket reading (sockets_read_s)", m["sockets_read_s"] * ms,
             ratio(m["sockets_read_s"], m["stats_s"])],
            ["  worst /healthz during it", m["healthz_during_max_s"] * ms,
             ratio(m["healthz_during_max_s"], m["stats_s"])],
            ["/healthz, idle (median)", stats["healthz_idle_median_s"] * ms, math.nan],
            ["ss -tmnH, same sockets (baseline)", m["ss_s"] * ms, ratio(m["ss_s"], m["stats_s"])],
            ["/proc/net/tcp by port (before)", m["old_proc_s"] * ms,
             ratio(m["old_proc_s"], m["stats_s"])],
        ],
    )  # fmt: skip
    say(f"/stats figures agree with ss: {stats['figures_agree_with_ss']}")
    print_table(
        f"own sockets read in a worker thread, {loop['sockets']} sockets (medians; ms)",
        ["reading", "read", "worst tick late", "ticks late in all"],
        [[name, v["read_s"] * ms, v["worst_tick_late_s"] * ms, v["tick_late_total_s"] * ms]
         for name, v in loop["medians"].items()],
    )  # fmt: skip
    print_table(
        f"lab-style sample: server and client sockets (medians of {plan.reps}; ms)",
        ["connections", "netlink", "its CPU", "ss -tmnH", "/proc by port", "ss / netlink",
         "agrees"],
        [[r["connections"], r["median_s"]["netlink"] * ms, r["netlink_cpu_median_s"] * ms,
          r["median_s"]["ss -tmnH"] * ms, r["median_s"]["/proc/net/tcp by port"] * ms,
          ratio(r["median_s"]["ss -tmnH"], r["median_s"]["netlink"]), str(r["agrees_with_ss"])]
         for r in samples],
    )  # fmt: skip
    data = {"plan": dataclasses.asdict(plan), "stats": stats, "loop": loop, "samples": samples}
    write_result("sockets", quick, data)
    return data
