"""How the caller makes its HTTP client for the callee: four small implementations, by name.

The bug and its fixes differ in one visible thing, what happens to the client after the call:

- ``unclosed``: a new ``httpx.AsyncClient`` per request, never closed, and kept (here in a
  list; in real code on an object, in a cache, in a closure a task holds). Its pool keeps the
  connection open for ever: httpx has no background reaper of idle connections.
- ``dropped``: a new client per request, never closed, and not kept. CPython frees most of
  them as soon as the request ends (reference counting), closing their sockets; the few caught
  in reference cycles wait for the cyclic collector (about 10 held after 400 requests here,
  not growing). In Python the leak needs a held reference, which is why ``unclosed`` keeps one.
- ``closed``: a new client per request in an ``async with`` block (the first fix).
- ``shared``: one client for every request, closed at shutdown (the second fix, and the
  cheaper: no new connection per call).

Every client shares one SSL context: httpx would load certifi's CA bundle for each new client
(about 20 ms here), which would slow the story down without changing its connections.
"""

from __future__ import annotations

import ssl
from typing import Protocol

import httpx

__all__ = ["UPSTREAMS", "Upstream", "make_upstream"]


class Upstream(Protocol):
    """What the caller's /forward uses to call the callee."""

    async def get(self, url: str) -> httpx.Response:
        """One GET to the callee."""
        ...

    async def aclose(self) -> None:
        """Close what is still open (at shutdown)."""
        ...


class UnclosedClients:
    """The bug: a new client per request, kept and never closed."""

    def __init__(self, timeout_s: float, verify: ssl.SSLContext) -> None:
        self._timeout_s, self._verify = timeout_s, verify
        self.held: list[httpx.AsyncClient] = []

    async def get(self, url: str) -> httpx.Response:
        client = httpx.AsyncClient(timeout=self._timeout_s, verify=self._verify)
        self.held.append(client)
        return await client.get(url)

    async def aclose(self) -> None:
        for client in self.held:  # the process is exiting: tidy up, the kernel would anyway
            await client.aclose()
        self.held.clear()


class DroppedClients:
    """Not closed, not kept either: the garbage collector closes the socket."""

    def __init__(self, timeout_s: float, verify: ssl.SSLContext) -> None:
        self._timeout_s, self._verify = timeout_s, verify

    async def get(self, url: str) -> httpx.Response:
        client = httpx.AsyncClient(timeout=self._timeout_s, verify=self._verify)
        return await client.get(url)

    async def aclose(self) -> None:
        return None


class ClosedClients:
    """Fix 1: a new client per request, closed when the request ends."""

    def __init__(self, timeout_s: float, verify: ssl.SSLContext) -> None:
        self._timeout_s, self._verify = timeout_s, verify

    async def get(self, url: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=self._timeout_s, verify=self._verify) as client:
            return await client.get(url)

    async def aclose(self) -> None:
        return None


class SharedClient:
    """Fix 2: one client for every request, closed at shutdown."""

    def __init__(self, timeout_s: float, verify: ssl.SSLContext) -> None:
        self._client = httpx.AsyncClient(timeout=timeout_s, verify=verify)

    async def get(self, url: str) -> httpx.Response:
        return await self._client.get(url)

    async def aclose(self) -> None:
        await self._client.aclose()


UPSTREAMS: dict[str, type[UnclosedClients | DroppedClients | ClosedClients | SharedClient]] = {
    "unclosed": UnclosedClients,
    "dropped": DroppedClients,
    "closed": ClosedClients,
    "shared": SharedClient,
}


def make_upstream(name: str, timeout_s: float) -> Upstream:
    """The client implementation called ``name`` (one of :data:`.settings.CLIENTS`)."""
    return UPSTREAMS[name](timeout_s, ssl.create_default_context())
