"""The read-handler story's matrix: which cells a run has, and what each is expected to show.

Cells come in three shapes of client traffic:

- ``churn``: clients arrive, ping for a few seconds and leave with a normal close, while new
  ones keep arriving, subscribed to an event type that is never published (production's
  shape, and the first cell a user sees);
- ``static``: the same clients for the whole cell (the receive buffers fill, then plateau);
- ``vanished``: clients in a network namespace of the lab's own whose link goes down, so
  they disappear without FIN or RST (a phone leaving coverage; root only, ``--full``);
- ``large``: static clients at production-like scale (:data:`LARGE`: 10,000 clients, one
  1 KiB message every 2 s each, subscribed to a type never published), keepalive off,
  ``--full`` only.
"""

from __future__ import annotations

import dataclasses
import itertools
import os

from event_service.settings import READ_HANDLERS

__all__ = [
    "AXES",
    "CHURN_DEFAULT",
    "CHURN_QUICK",
    "KEEPALIVE_DEFAULT",
    "KEEPALIVE_OFF",
    "KEEPALIVE_SHORT",
    "LARGE",
    "NEVER_PUBLISHED",
    "PING_KINDS",
    "SHAPES",
    "WS_IMPLS",
    "Cell",
    "Churn",
    "Keepalive",
    "Large",
    "build_matrix",
    "can_run",
    "expected_verdict",
]

WS_IMPLS = ("websockets-sansio", "wsproto", "websockets")
PING_KINDS = ("message", "control")
SHAPES = ("churn", "static", "vanished", "large")
# An event type nobody publishes: the service never writes to these subscribers, so it
# learns that they left only if it reads.
NEVER_PUBLISHED = "deploy"


@dataclasses.dataclass(frozen=True)
class Keepalive:
    """Server keepalive: ping every ``interval_s``, close with 1011 after ``timeout_s``."""

    name: str
    interval_s: float | None
    timeout_s: float | None


KEEPALIVE_OFF = Keepalive("off", None, None)
KEEPALIVE_DEFAULT = Keepalive("20s/20s", 20.0, 20.0)  # uvicorn's defaults
# Short enough for quick runs, long enough that the backlog passes 64 KiB before the close.
KEEPALIVE_SHORT = Keepalive("2s/2s", 2.0, 2.0)


@dataclasses.dataclass(frozen=True)
class Churn:
    """Clients coming and going: ``batch`` new ones every ``every_s``, each for ``lifetime_s``."""

    every_s: float
    batch: int
    lifetime_s: float

    @property
    def name(self) -> str:
        """``4/1s-4s``: batch / period - lifetime."""
        return f"{self.batch}/{self.every_s:g}s-{self.lifetime_s:g}s"


# The measured shape: 20 new clients every 5 s, each pinging for 5 s.
CHURN_DEFAULT = Churn(every_s=5.0, batch=20, lifetime_s=5.0)
# The same 4 arrivals a second in smaller batches, so that a 10 s cell shows a line. 4 s of
# pings (160 KiB) is still more than a server socket takes in unread, so each client's FIN
# waits behind its own unsent data and the server's socket stays ESTABLISHED, as measured.
CHURN_QUICK = Churn(every_s=1.0, batch=4, lifetime_s=4.0)


@dataclasses.dataclass(frozen=True)
class Large:
    """Static clients at scale: ``clients`` connect at ``ramp_per_s``, each sends one message
    of ``size_bytes`` every ``interval_s`` from its connection on; the cell ends ``steady_s``
    after the ramp is over (the lab stops the swarm then), or at ``max_duration_s``."""

    clients: int
    ramp_per_s: float
    steady_s: float
    interval_s: float = 1.0
    size_bytes: int = 1024

    @property
    def name(self) -> str:
        """``10000x1024B-1s``: clients x message size - interval."""
        return f"{self.clients}x{self.size_bytes}B-{self.interval_s:g}s"

    @property
    def ramp_s(self) -> float:
        """How long the ramp takes if the service keeps up."""
        return self.clients / self.ramp_per_s

    @property
    def duration_s(self) -> float:
        """The cell's length if the service keeps up: the ramp, then the steady part."""
        return self.ramp_s + self.steady_s

    @property
    def max_duration_s(self) -> float:
        """The swarm's bound: a ramp up to twice as long as asked, then the steady part."""
        return RAMP_SLACK * self.ramp_s + self.steady_s

    @property
    def sent_bytes(self) -> float:
        """The payload the clients send at most, each from its own connection on, with a ramp
        twice as long as asked (then each client is connected for ``ramp_s`` on average).

        Without a reader nearly all of it stays in the service's receive queues: the kernel
        memory a missing-handler cell reaches by its end, before the kernel's own overhead.
        """
        connected_s = RAMP_SLACK * self.ramp_s / 2 + self.steady_s
        return self.clients * self.size_bytes / self.interval_s * connected_s


RAMP_SLACK = 2.0
# 10,000 clients (half the fd hard limit of a process here, 20,000), each sending one 1 KiB
# message every 2 s: 5,000 messages a second in all. Measured here (2 cores, the swarm in the
# lab's process): the fixed handler's service read 1 KiB messages from 10,000 clients once a
# second only up to about 8,000 of them, and there its handshakes timed out; at 5,000 a second
# it still took 200-250 handshakes a second. 20 s of steady part give the verdict 20 samples.
# Without a reader the receive queues end near 10,000 x 512 B/s x (25 + 20) s = 0.23 GB
# (0.36 GB if the ramp takes twice as long), well under tcp_mem's pressure threshold here.
LARGE = Large(clients=10_000, ramp_per_s=200.0, steady_s=20.0, interval_s=2.0)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One experiment: a service configuration and the shape and kind of client traffic."""

    read_handler: str  # "missing" or "fixed"
    keepalive: Keepalive
    ws_impl: str = "websockets-sansio"
    ping_kind: str = "message"
    shape: str = "static"
    churn: Churn | None = None  # the churn cells' arrivals and lifetime
    large: Large | None = None  # the large cells' size

    @property
    def name(self) -> str:
        """A short unique name, usable as a file name."""
        base = (
            f"{self.read_handler}_keepalive-{self.keepalive.name.replace('/', '-')}"
            f"_{self.ws_impl}_{self.ping_kind}"
        )
        return base if self.shape == "static" else f"{self.shape}_{base}"

    @property
    def label(self) -> str:
        """A human label for tables and charts."""
        parts = [f"READ_HANDLER={self.read_handler}", f"keepalive {self.keepalive.name}"]
        if self.churn is not None:
            parts.insert(0, f"churn {self.churn.batch} every {self.churn.every_s:g} s "
                            f"for {self.churn.lifetime_s:g} s")  # fmt: skip
        elif self.shape == "vanished":
            parts.insert(0, "vanished clients")
        elif self.large is not None:
            large = self.large
            parts.insert(0, f"large: {large.clients:,} clients x {large.size_bytes} B every "
                            f"{large.interval_s:g} s")  # fmt: skip
        if self.ws_impl != "websockets-sansio":
            parts.append(self.ws_impl)
        if self.ping_kind != "message":
            parts.append(f"{self.ping_kind} pings")
        return ", ".join(parts)

    def settings(self) -> dict[str, str]:
        """The cell's axes, as written to summary.json."""
        settings = {
            "read_handler": self.read_handler,
            "keepalive": self.keepalive.name,
            "ws_impl": self.ws_impl,
            "ping_kind": self.ping_kind,
            "shape": self.shape,
        }
        if self.churn is not None:
            settings["churn"] = self.churn.name
        if self.large is not None:
            settings["large"] = self.large.name
        return settings


def can_run(cell: Cell) -> str | None:
    """Why this machine cannot run ``cell`` (None: it can)."""
    if cell.shape == "vanished" and os.geteuid() != 0:
        return "needs root (it creates a network namespace and a veth pair): skipped"
    return None


def expected_verdict(cell: Cell) -> str:
    """What the story predicts.

    Unread data messages leak unless keepalive kills the sessions. Clients that leave leak
    sessions with keepalive too: its pings reset the departed clients' sockets, but a session
    that neither reads nor sends never learns. A vanished client sends nothing (no FIN, no
    RST, no data), so a reader cannot notice it: only keepalive reaps it. A cell this machine
    cannot run is expected ``unknown``.
    """
    if can_run(cell) is not None:
        return "unknown"
    if cell.shape == "vanished":
        return "leak" if cell.keepalive.interval_s is None else "healthy"
    if cell.shape in ("churn", "large"):
        return "healthy" if cell.read_handler == "fixed" else "leak"
    if cell.read_handler == "fixed" or cell.ping_kind == "control":
        return "healthy"
    return "leak" if cell.keepalive.interval_s is None else "masked"


AXES = {"ws_impl": WS_IMPLS, "ping_kind": PING_KINDS, "shape": SHAPES}


def build_matrix(
    *,
    quick: bool = False,
    full: bool = False,
    ws_impls: tuple[str, ...] | None = None,
    ping_kinds: tuple[str, ...] | None = None,
    shapes: tuple[str, ...] | None = None,
) -> list[Cell]:
    """The cells of a run, churn first: churn (READ_HANDLER, keepalive off; x keepalive with
    ``full``), then static (READ_HANDLER x keepalive), then, with ``full``, vanished clients
    (keepalive off / on) and the large cells (READ_HANDLER, keepalive off).

    ``ws_impls``, ``ping_kinds`` and ``shapes`` choose those axes explicitly (default: the
    first ws_impl and ping kind and the churn and static shapes, or every value with
    ``full``). ``quick`` uses the short keepalive and the quick churn. The large cells are
    in ``full`` only, even when ``shapes`` names them (a minute and half a GB each).
    """
    keepalive_on = KEEPALIVE_SHORT if quick else KEEPALIVE_DEFAULT
    keepalives = (KEEPALIVE_OFF, keepalive_on)
    if ws_impls is None:
        ws_impls = WS_IMPLS if full else WS_IMPLS[:1]
    if ping_kinds is None:
        ping_kinds = PING_KINDS if full else PING_KINDS[:1]
    if shapes is None:
        shapes = SHAPES if full else ("churn", "static")
    cells: list[Cell] = []
    if "churn" in shapes and "message" in ping_kinds:  # control pings never pile up
        churn = CHURN_QUICK if quick else CHURN_DEFAULT
        # With full, keepalive too: it frees the departed clients' sockets, not their sessions.
        churn_keepalives = keepalives if full else (KEEPALIVE_OFF,)
        cells += [
            Cell(read_handler, keepalive, ws_impl, shape="churn", churn=churn)
            for ws_impl, read_handler, keepalive in itertools.product(
                ws_impls, READ_HANDLERS, churn_keepalives
            )
        ]
    if "static" in shapes:
        cells += [
            Cell(read_handler, keepalive, ws_impl, ping_kind)
            for ws_impl, ping_kind, read_handler, keepalive in itertools.product(
                ws_impls, ping_kinds, READ_HANDLERS, keepalives
            )
        ]
    if "vanished" in shapes:
        # A reader cannot see a client that sends nothing: the fixed handler (on the first
        # WebSocket implementation chosen), and keepalive 2s/2s against none.
        cells += [
            Cell("fixed", keepalive, ws_impls[0], shape="vanished")
            for keepalive in (KEEPALIVE_OFF, KEEPALIVE_SHORT)
        ]
    if "large" in shapes and full and "message" in ping_kinds:  # control pings never pile up
        cells += [
            Cell(read_handler, KEEPALIVE_OFF, ws_impls[0], shape="large", large=LARGE)
            for read_handler in READ_HANDLERS
        ]
    return cells
