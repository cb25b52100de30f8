"""The vanished-client cells' rule: how long does the service keep a client that vanished?

The clients run in a network namespace whose link the lab takes down once they are all
connected: they send no FIN, no RST, no data any more. The rule looks at the service's
registered sessions (``/stats`` ``connections``) after that moment. Pure functions.

- **healthy**: the sessions fell to ``REAPED_SHARE`` of their number at the link-down or
  fewer within ``REAPED_WITHIN_S`` (keepalive found the clients gone);
- **leak**: ``KEPT_SHARE`` of them or more were still registered at the last sample, at
  least ``MIN_KEPT_S`` after the link-down;
- **unknown**: the link never went down, no session was there, or neither of the above.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from leaklab.stories.ws_read_handler.sample import ReadHandlerSample
from leaklab.stories.ws_read_handler.verdict import CellFigures, cell_figures, figure
from leaklab.story import CellResult, Verdict

__all__ = ["KEPT_SHARE", "MIN_KEPT_S", "REAPED_SHARE", "REAPED_WITHIN_S", "VANISHED_RULES",
           "VanishedCellFigures", "VanishedFigures", "judge_vanished", "judge_vanished_cell",
           "vanished_figures"]  # fmt: skip

REAPED_SHARE = 0.1
REAPED_WITHIN_S = 30.0
KEPT_SHARE = 0.5
MIN_KEPT_S = 10.0

VANISHED_RULES = (
    "a vanished-client cell takes its clients' link down once they are connected: **healthy** "
    f"when the service's sessions fall to {REAPED_SHARE:.0%} of their number within "
    f"{REAPED_WITHIN_S:.0f} s, **leak** when {KEPT_SHARE:.0%} or more are still registered "
    f"at the end, at least {MIN_KEPT_S:.0f} s after the link went down, **unknown** otherwise"
)


class VanishedFigures(TypedDict):
    """The service's sessions at the link-down and after it."""

    link_down_at_s: float | None
    sessions_at_link_down: int | None
    sessions_end: int | None
    observed_after_down_s: float
    reaped_after_s: float | None
    sockets_by_state_end: dict[str, int]
    send_q_end_bytes: int | None
    tcp_retries2: int | None


class VanishedCellFigures(CellFigures, VanishedFigures):
    """A vanished-client cell's figures: the static ones too, for the shared columns."""


def vanished_figures(samples: Sequence[ReadHandlerSample]) -> VanishedFigures:
    """Sessions at the link-down and after it, when they were reaped, sockets by state."""
    down_at = next((s["link_down_at_s"] for s in samples if s.get("link_down_at_s") is not None),
                   None)  # fmt: skip
    after = [] if down_at is None else [
        (s["t_s"], int(v), s) for s in samples
        if s.get("t_s", -1.0) >= down_at and (v := figure(s, "server.connections")) is not None
    ]  # fmt: skip
    at_down = after[0][1] if after else None
    reaped_after_s = next(
        (round(t - down_at, 1) for t, v, _ in after
         if at_down and down_at is not None and v <= REAPED_SHARE * at_down),
        None,
    )  # fmt: skip
    last = after[-1][2] if after else None
    states = {} if last is None else dict(last.get("sockets_by_state") or {})
    return {
        "link_down_at_s": down_at,
        "sessions_at_link_down": at_down,
        "sessions_end": after[-1][1] if after else None,
        "observed_after_down_s": round(after[-1][0] - down_at, 1) if after and down_at else 0.0,
        "reaped_after_s": reaped_after_s,
        "sockets_by_state_end": states,
        "send_q_end_bytes": None if last is None else last.get("sockets_send_q_bytes"),
        "tcp_retries2": next((s["tcp_retries2"] for s in samples if "tcp_retries2" in s), None),
    }


def judge_vanished(figures: VanishedCellFigures) -> tuple[Verdict, str]:
    """The verdict of a vanished-client cell's figures and a sentence saying why."""
    at_down, end = figures["sessions_at_link_down"], figures["sessions_end"]
    if figures["link_down_at_s"] is None or not at_down or end is None:
        return "unknown", "unknown: the link never went down with sessions registered"
    reaped, observed = figures["reaped_after_s"], figures["observed_after_down_s"]
    states = ", ".join(f"{k} {n}" for k, n in sorted(figures["sockets_by_state_end"].items()))
    if reaped is not None and reaped <= REAPED_WITHIN_S:
        return "healthy", (
            f"healthy: the {at_down} vanished sessions were reaped {reaped:.0f} s after the "
            f"link went down (keepalive); sockets left: {states or 'none'}"
        )
    if end >= KEPT_SHARE * at_down and observed >= MIN_KEPT_S:
        retries = figures["tcp_retries2"]
        give_up = f"tcp_retries2={retries}" if retries is not None else "tcp_retries2"
        return "leak", (
            f"leaks: {end} of {at_down} vanished sessions still registered {observed:.0f} s "
            f"after the link went down ({states or 'no sockets'}); only TCP gives up, after "
            f"{give_up} retransmissions of unacknowledged data (about 15 min by default)"
        )
    return "unknown", (
        f"unknown: {end} of {at_down} sessions left {observed:.0f} s after the link went down"
    )


def judge_vanished_cell(samples: Sequence[ReadHandlerSample]) -> CellResult:
    """A vanished-client cell's figures (the static ones too, for the shared columns) and
    verdict."""
    # The clients are out of the lab's reach: what they received is not known.
    figures: VanishedCellFigures = {
        **cell_figures(samples),
        **vanished_figures(samples),
        "events_lost": None,
    }
    verdict, reason = judge_vanished(figures)
    return {"figures": {**figures}, "verdict": verdict, "reason": reason}
