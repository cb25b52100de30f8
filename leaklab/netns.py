"""A network namespace of the lab's own, joined to the host by a veth pair (root only).

Clients in the namespace reach a service that listens on the host side of the pair; taking
the namespace's end of the link down makes them vanish without a FIN or a RST, the way a
phone leaving coverage does. The host keeps its route to the namespace (marked ``linkdown``),
so what the service still sends goes into the dead veth and nowhere else.

Names are unique per run (``leaklab-<pid>-<hex>``, veths ``lk<hex>h`` / ``lk<hex>n``) and the
addresses are a /30 of ``SUBNET_POOL`` that no interface of the host uses, so parallel runs
do not collide. :meth:`VethNamespace.close` kills the host's sockets to the namespace and
deletes the namespace, which deletes the pair; it runs in ``finally`` blocks, so also after
Ctrl-C. Namespaces left by a lab that was killed outright carry the dead pid in their name
and are removed by the next run. Nothing else of the host is touched: no default route, no
other interface.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import random
import re
import secrets
import subprocess
from collections.abc import Sequence
from types import TracebackType

from leaklab.errors import LabError

__all__ = ["NAME_PREFIX", "SUBNET_POOL", "NetnsError", "VethNamespace", "free_subnets"]

NAME_PREFIX = "leaklab-"
# Private, and apart from the 172.31.0.0/16 and 10.0.0.0/8 networks others use on this host.
SUBNET_POOL = ipaddress.IPv4Network("192.168.251.0/24")
IP_TIMEOUT_S = 10.0
_ATTEMPTS = 5
_STALE_RE = re.compile(rf"^{re.escape(NAME_PREFIX)}(\d+)-[0-9a-f]+$")


class NetnsError(LabError):
    """An ``ip`` command of the namespace set-up failed; the message has its stderr."""


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from None
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result


def used_networks(ip_addr_text: str) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of the interfaces in ``ip -4 -o addr show`` output."""
    networks = []
    for match in re.finditer(r"\binet (\d+\.\d+\.\d+\.\d+/\d+)", ip_addr_text):
        networks.append(ipaddress.IPv4Interface(match.group(1)).network)
    return networks


def free_subnets(ip_addr_text: str) -> list[ipaddress.IPv4Network]:
    """The /30s of ``SUBNET_POOL`` that overlap no network of the host's interfaces."""
    used = used_networks(ip_addr_text)
    return [
        net for net in SUBNET_POOL.subnets(new_prefix=30) if not any(net.overlaps(u) for u in used)
    ]


def stale_namespaces(netns_list_text: str) -> list[str]:
    """Namespaces of ours (``ip netns list`` output) whose lab process is gone."""
    stale = []
    for line in netns_list_text.splitlines():
        name = line.split(" ", 1)[0]
        match = _STALE_RE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            stale.append(name)
    return stale


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclasses.dataclass
class VethNamespace:
    """A namespace and a veth pair; the host end has ``host_address``, the other ``ns_address``."""

    name: str
    host_ifname: str
    ns_ifname: str
    host_address: str
    ns_address: str
    prefix: int = 30
    _closed: bool = dataclasses.field(default=False, repr=False)

    @classmethod
    def create(cls) -> VethNamespace:
        """Set up a fresh namespace and pair on a free /30; raise :class:`NetnsError`."""
        if os.geteuid() != 0:
            raise NetnsError("a network namespace needs root")
        for name in stale_namespaces(_run(["ip", "netns", "list"]).stdout):
            _run(["ip", "netns", "del", name], check=False)
        for _ in range(_ATTEMPTS):
            free = free_subnets(_run(["ip", "-4", "-o", "addr", "show"]).stdout)
            if not free:
                raise NetnsError(f"no free /30 left in {SUBNET_POOL}")
            subnet = random.choice(free)  # parallel runs rarely pick the same one
            token = secrets.token_hex(3)
            host, peer = (str(address) for address in subnet.hosts())
            netns = cls(
                f"{NAME_PREFIX}{os.getpid()}-{token}", f"lk{token}h", f"lk{token}n", host, peer
            )
            try:
                netns._set_up()
                if netns._is_alone_on_subnet(subnet):
                    return netns
            except BaseException:
                netns.close()
                raise
            netns.close()  # another run took the same /30 at the same moment: try again
        raise NetnsError(f"could not find a /30 of {SUBNET_POOL} that stays free")

    def _set_up(self) -> None:
        _run(["ip", "netns", "add", self.name])
        _run(["ip", "link", "add", self.host_ifname, "type", "veth",
              "peer", "name", self.ns_ifname, "netns", self.name])  # fmt: skip
        _run(["ip", "addr", "add", f"{self.host_address}/{self.prefix}", "dev", self.host_ifname])
        _run(["ip", "link", "set", self.host_ifname, "up"])
        inside = ["ip", "-n", self.name]
        _run([*inside, "addr", "add", f"{self.ns_address}/{self.prefix}", "dev", self.ns_ifname])
        _run([*inside, "link", "set", self.ns_ifname, "up"])
        _run([*inside, "link", "set", "lo", "up"])

    def _is_alone_on_subnet(self, subnet: ipaddress.IPv4Network) -> bool:
        text = _run(["ip", "-4", "-o", "addr", "show"]).stdout
        owners = [line for line in text.splitlines()
                  if any(net.overlaps(subnet) for net in used_networks(line))]  # fmt: skip
        return len(owners) == 1

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def take_link_down(self) -> None:
        """Take the namespace's end of the pair down: its clients vanish, no FIN, no RST."""
        _run(["ip", "-n", self.name, "link", "set", self.ns_ifname, "down"])

    def exists(self) -> bool:
        """Whether the namespace or the host end of the pair is still there."""
        names = _run(["ip", "netns", "list"], check=False).stdout.split()
        link = _run(["ip", "link", "show", self.host_ifname], check=False)
        return self.name in names or link.returncode == 0

    def close(self) -> None:
        """Kill the host's sockets to the namespace, delete the namespace and the pair."""
        if self._closed:
            return
        self._closed = True
        # Without the pair the host has no route to these sockets' peer: whatever they still
        # had to send would follow the default route. Kill them first (ss sends a RST into
        # the dead link).
        _run(["ss", "-K", "-tn", "dst", self.ns_address], check=False)
        _run(["ip", "netns", "del", self.name], check=False)
        _run(["ip", "link", "del", self.host_ifname], check=False)

    def __enter__(self) -> VethNamespace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
