"""How a swarm is spread over processes and loopback source addresses (pure).

Two kernel limits bound one process's share of a swarm:

- **File descriptors.** Each connection is one fd, and a process may hold at most its hard
  ``RLIMIT_NOFILE`` (the swarm raises its soft limit to it), less :data:`FD_HEADROOM` for
  everything else it opens (the event loop, pipes, imported modules).
- **Ephemeral ports.** ``connect()`` gives each connection a local port from
  ``ip_local_port_range`` that is unique for its (source address, destination) pair, so one
  source address reaches one server address at most about 28,000 times.

Past the first limit the swarm runs several worker processes; past the second, several source
addresses. Every address of 127.0.0.0/8 routes to ``lo``, so on a loopback target each worker
binds its clients to addresses of its own (127.0.0.2, 127.0.0.3, ...): the workers never
compete for ports, and the kernel's socket table tells each worker's sockets apart by their
exact source address. A target that is not on IPv4 loopback (another host, ``::1``) is reached
from the one address the route gives: then the ports bound the whole swarm.

:func:`plan_swarm` says how, or raises :class:`~ping_client.errors.InvalidConfig` with the
numbers when the target cannot be reached.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math

from ping_client.errors import InvalidConfig

__all__ = [
    "FD_HEADROOM",
    "FIRST_SOURCE_ADDRESS",
    "MAX_PROCESSES",
    "MAX_SOURCE_ADDRESSES",
    "PORT_SHARE",
    "Limits",
    "SwarmPlan",
    "WorkerPlan",
    "can_spread_sources",
    "plan_swarm",
    "split",
]

FD_HEADROOM = 256
# Other programs' connections and bound ports take some of the range too.
PORT_SHARE = 0.9
FIRST_SOURCE_ADDRESS = "127.0.0.2"
MAX_PROCESSES = 64
MAX_SOURCE_ADDRESSES = 250
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


@dataclasses.dataclass(frozen=True)
class Limits:
    """The kernel's limits a plan must fit: the fd hard limit and the ephemeral port range."""

    fd_hard_limit: int
    port_range: tuple[int, int]

    @property
    def connections_per_process(self) -> int:
        """Client connections one process can hold under its fd hard limit."""
        return max(0, self.fd_hard_limit - FD_HEADROOM)

    @property
    def connections_per_address(self) -> int:
        """Connections one source address may open to one server address."""
        first, last = self.port_range
        return int((last - first + 1) * PORT_SHARE)

    def describe_fds(self) -> str:
        """``19744 (fd hard limit 20000 less 256 for other files)``."""
        return (
            f"{self.connections_per_process} (fd hard limit {self.fd_hard_limit} "
            f"less {FD_HEADROOM} for other files)"
        )

    def describe_ports(self) -> str:
        """``25408 (90% of the ephemeral ports 32768-60999)``."""
        first, last = self.port_range
        return (
            f"{self.connections_per_address} ({PORT_SHARE:.0%} of the ephemeral ports "
            f"{first}-{last})"
        )


@dataclasses.dataclass(frozen=True)
class WorkerPlan:
    """One worker's share: its clients, and the source addresses it binds them to."""

    index: int
    clients: int
    source_addresses: tuple[str, ...]  # empty: the route's own address, unbound


@dataclasses.dataclass(frozen=True)
class SwarmPlan:
    """The whole swarm's spread; ``note`` says what was not possible, if anything."""

    clients: int
    workers: tuple[WorkerPlan, ...]
    note: str | None = None

    @property
    def processes(self) -> int:
        """How many processes hold the connections (1: the swarm's own, no worker)."""
        return len(self.workers)

    @property
    def source_addresses(self) -> tuple[str, ...]:
        """Every source address a worker binds to, in order."""
        return tuple(a for worker in self.workers for a in worker.source_addresses)


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares that differ by at most one, larger first."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    share, rest = divmod(total, parts)
    return [share + (1 if index < rest else 0) for index in range(parts)]


def can_spread_sources(host: str) -> bool:
    """Whether clients of ``host`` can come from several source addresses (IPv4 loopback)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True  # the swarm connects to these over IPv4
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


def plan_swarm(clients: int, processes: int | None, *, limits: Limits, host: str) -> SwarmPlan:
    """Spread ``clients`` over ``processes`` (None: as few as the fd limit allows).

    Raises InvalidConfig, with the numbers, when the limits cannot hold the swarm.
    """
    per_process = limits.connections_per_process
    if per_process < 1:
        raise InvalidConfig(f"the fd hard limit {limits.fd_hard_limit} leaves no room for clients")
    needed = math.ceil(clients / per_process)
    if needed == 1 and clients > limits.connections_per_address and can_spread_sources(host):
        needed = 2  # the fds would do in one process, the ports of one address would not
    if processes is None:
        processes = needed
    _check_processes(clients, processes, needed, limits)
    shares = split(clients, processes)
    if processes == 1:
        _check_one_address(clients, limits, host, processes)
        return SwarmPlan(clients, (WorkerPlan(0, clients, ()),))
    if not can_spread_sources(host):
        _check_one_address(clients, limits, host, processes)
        workers = tuple(WorkerPlan(i, share, ()) for i, share in enumerate(shares))
        return SwarmPlan(clients, workers, note=_one_address_reason(host))
    return SwarmPlan(clients, _spread(shares, limits))


def _check_processes(clients: int, processes: int, needed: int, limits: Limits) -> None:
    if not 1 <= processes <= MAX_PROCESSES:
        raise InvalidConfig(f"--processes must be from 1 to {MAX_PROCESSES}")
    if processes > clients:
        raise InvalidConfig(f"--processes {processes} is more than --clients {clients}")
    if processes < needed and clients > limits.connections_per_process:
        largest = split(clients, processes)[0]
        raise InvalidConfig(
            f"--clients {clients} over --processes {processes} is {largest} connections in "
            f"one process, but a process can hold {limits.describe_fds()}: "
            f"use --processes {needed} or more"
        )


def _check_one_address(clients: int, limits: Limits, host: str, processes: int) -> None:
    per_address = limits.connections_per_address
    if clients <= per_address:
        return
    if processes == 1 and can_spread_sources(host):
        hint = "one process connects from one source address: use --processes 2 or more"
    else:
        hint = _one_address_reason(host)
    raise InvalidConfig(
        f"--clients {clients} cannot reach {host}: one source address reaches one server "
        f"address at most {limits.describe_ports()} times, and {hint}"
    )


def _one_address_reason(host: str) -> str:
    return (
        f"{host} is not on IPv4 loopback, so the clients can only come from the one source "
        "address its route gives"
    )


def _spread(shares: list[int], limits: Limits) -> tuple[WorkerPlan, ...]:
    per_address = limits.connections_per_address
    counts = [math.ceil(share / per_address) for share in shares]
    if sum(counts) > MAX_SOURCE_ADDRESSES:
        raise InvalidConfig(
            f"{sum(shares)} clients need {sum(counts)} loopback source addresses at "
            f"{limits.describe_ports()} each; at most {MAX_SOURCE_ADDRESSES} are used"
        )
    first = int(ipaddress.IPv4Address(FIRST_SOURCE_ADDRESS))
    workers = []
    for index, (share, count) in enumerate(zip(shares, counts, strict=True)):
        addresses = tuple(str(ipaddress.IPv4Address(first + k)) for k in range(count))
        workers.append(WorkerPlan(index, share, addresses))
        first += count
    return tuple(workers)
