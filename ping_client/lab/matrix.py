"""The experiment matrix: which cells a lab run has, and what each cell is expected to show."""

from __future__ import annotations

import dataclasses
import itertools

WS_IMPLS = ("websockets-sansio", "wsproto", "websockets")
PING_KINDS = ("message", "control")


@dataclasses.dataclass(frozen=True)
class Keepalive:
    """Server keepalive: ping every ``interval_s``, close with 1011 after ``timeout_s``."""

    name: str
    interval_s: float | None
    timeout_s: float | None

    def env(self) -> dict[str, str]:
        """The service's settings for this keepalive."""
        if self.interval_s is None:
            return {"WS_PING_INTERVAL": "off", "WS_PING_TIMEOUT": "off"}
        return {
            "WS_PING_INTERVAL": f"{self.interval_s:g}",
            "WS_PING_TIMEOUT": f"{self.timeout_s:g}",
        }


KEEPALIVE_OFF = Keepalive("off", None, None)
KEEPALIVE_DEFAULT = Keepalive("20s/20s", 20.0, 20.0)  # uvicorn's defaults
# Short enough for quick runs, long enough that the backlog passes 64 KiB before the close.
KEEPALIVE_SHORT = Keepalive("2s/2s", 2.0, 2.0)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One experiment: a service configuration and the kind of client traffic."""

    read_handler: str  # "off" (missing) or "on" (fixed)
    keepalive: Keepalive
    ws_impl: str = "websockets-sansio"
    ping_kind: str = "message"

    @property
    def name(self) -> str:
        """A short unique name, usable as a file name."""
        return (
            f"read-{self.read_handler}_keepalive-{self.keepalive.name.replace('/', '-')}"
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

    def env(self) -> dict[str, str]:
        """The service's settings for this cell."""
        return {"READ_HANDLER": self.read_handler, "WS_IMPL": self.ws_impl, **self.keepalive.env()}

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
    if cell.read_handler == "on" or cell.ping_kind == "control":
        return "healthy"
    return "leak" if cell.keepalive.interval_s is None else "masked"


def build_matrix(
    *,
    quick: bool = False,
    full: bool = False,
    ws_impls: tuple[str, ...] | None = None,
    ping_kinds: tuple[str, ...] | None = None,
) -> list[Cell]:
    """The default matrix (READ_HANDLER x keepalive), or every axis with ``full``.

    ``ws_impls`` and ``ping_kinds`` choose those axes explicitly (default: the first value,
    or every value with ``full``).
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
            ws_impls, ping_kinds, ("off", "on"), keepalives
        )
    ]


def parse_axis(text: str, valid: tuple[str, ...], option: str) -> tuple[str, ...]:
    """A comma-separated choice of axis values, in the order given, without repeats."""
    values = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    unknown = [v for v in values if v not in valid]
    if not values or unknown:
        raise ValueError(f"{option} takes a comma-separated list of {', '.join(valid)}")
    return values


def demo_matrix() -> list[Cell]:
    """The demo's cells: the default matrix, quick (the leak, its mask by keepalive, the fix)."""
    return build_matrix(quick=True)
