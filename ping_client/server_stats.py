"""The server's own socket figures, read from its ``/stats``, for a swarm that cannot see them.

A swarm in another network namespace than the server (its own container, another host) finds
none of the server's sockets in its ``/proc/net/tcp``: the queues it would read there are its
own. The service measures its sockets itself and serves the figures on ``/stats`` next to the
WebSocket endpoint, so the swarm asks it there, once a sample.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from websockets.uri import WebSocketURI

__all__ = ["ServerStats", "server_figures", "stats_url"]

# The swarm's name of a figure -> the name /stats gives it: the few the swarm reads (the
# service's typed snapshot is the service's; the swarm meets it only as JSON).
STATS_FIGURES = {
    "server_recv_q_bytes": "recv_q_bytes",
    "server_recv_q_max_bytes": "recv_q_max_bytes",
}
TIMEOUT_S = 1.0


def stats_url(uri: WebSocketURI) -> str:
    """The ``/stats`` URL of the service that serves the WebSocket ``uri``."""
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    return f"http://{host}:{uri.port}/stats"


def server_figures(stats: Mapping[str, object]) -> dict[str, int]:
    """The swarm's server figures from a ``/stats`` answer; figures it lacks are left out."""
    figures = {}
    for ours, theirs in STATS_FIGURES.items():
        value = stats.get(theirs)
        if isinstance(value, int) and not isinstance(value, bool):
            figures[ours] = value
    return figures


class ServerStats:
    """Reads the server's ``/stats`` over one kept-alive HTTP connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        # No proxy: the *_PROXY variables of a container or CI must not divert it.
        self._client = httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False)

    async def read(self) -> dict[str, int] | None:
        """The server's figures now, or None when ``/stats`` does not answer with them."""
        try:
            response = (await self._client.get(self.url)).raise_for_status()
            stats = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return (server_figures(stats) or None) if isinstance(stats, dict) else None

    async def aclose(self) -> None:
        """Close the HTTP connection."""
        await self._client.aclose()
