"""The read-handler story's matrix: which cells a run has, and what each is expected to show."""

from __future__ import annotations

import dataclasses
import itertools

from event_service.settings import READ_HANDLERS

WS_IMPLS = ("websockets-sansio", "wsproto", "websockets")
PING_KINDS = ("message", "control")


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
class Cell:
    """One experiment: a service configuration and the kind of client traffic."""

    read_handler: str  # "missing" or "fixed"
    keepalive: Keepalive
    ws_impl: str = "websockets-sansio"
    ping_kind: str = "message"

    @property
    def name(self) -> str:
        """A short unique name, usable as a file name."""
        return (
            f"{self.read_handler}_keepalive-{self.keepalive.name.replace('/', '-')}"
            f"_{self.ws_impl}_{self.ping_kind}"
        )

    @property
    def label(self) -> str:
        """A human label for tables and charts."""
        parts = [f"READ_HANDLER={self.read_handler}", f"keepalive {self.keepalive.name}"]
        if self.ws_impl != "websockets-sansio":
            parts.append(self.ws_impl)
        if self.ping_kind != "message":
            parts.append(f"{self.ping_kind} pings")
        return ", ".join(parts)

    def settings(self) -> dict[str, str]:
        """The cell's axes, as written to summary.json."""
        return {
            "read_handler": self.read_handler,
            "keepalive": self.keepalive.name,
            "ws_impl": self.ws_impl,
            "ping_kind": self.ping_kind,
        }


def expected_verdict(cell: Cell) -> str:
    """What the story predicts: unread data messages leak unless keepalive kills the sessions."""
    if cell.read_handler == "fixed" or cell.ping_kind == "control":
        return "healthy"
    return "leak" if cell.keepalive.interval_s is None else "masked"


AXES = {"ws_impl": WS_IMPLS, "ping_kind": PING_KINDS}


def build_matrix(
    *,
    quick: bool = False,
    full: bool = False,
    ws_impls: tuple[str, ...] | None = None,
    ping_kinds: tuple[str, ...] | None = None,
) -> list[Cell]:
    """The default matrix (READ_HANDLER x keepalive), or every axis with ``full``.

    ``ws_impls`` and ``ping_kinds`` choose those axes explicitly (default: the first value,
    or every value with ``full``). ``quick`` uses the short keepalive.
    """
    keepalive_on = KEEPALIVE_SHORT if quick else KEEPALIVE_DEFAULT
    keepalives = (KEEPALIVE_OFF, keepalive_on)
    if ws_impls is None:
        ws_impls = WS_IMPLS if full else WS_IMPLS[:1]
    if ping_kinds is None:
        ping_kinds = PING_KINDS if full else PING_KINDS[:1]
    return [
        Cell(read_handler, keepalive, ws_impl, ping_kind)
        for ws_impl, ping_kind, read_handler, keepalive in itertools.product(
            ws_impls, ping_kinds, READ_HANDLERS, keepalives
        )
    ]
