"""``python -m leaklab.stories.http_keepalive.caller``: the service that calls the callee.

``GET /forward`` calls the callee's ``/hello`` through the client implementation named by
``CLIENT`` (see :mod:`.upstream`) and answers with both sides' counts; ``GET /counts``
answers the caller's own. The upstream client (or the list of leaked ones) is owned by the
app's lifespan.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from leaklab.stories.http_keepalive.counts import own_counts
from leaklab.stories.http_keepalive.settings import CallerSettings, SettingsError, caller_from_env
from leaklab.stories.http_keepalive.upstream import Upstream, make_upstream

__all__ = ["create_app", "main"]

logger = logging.getLogger("leaklab.caller")


def create_app(settings: CallerSettings) -> Starlette:
    """The caller's app: /forward and /counts."""
    hello_url = settings.callee_url.rstrip("/") + "/hello"
    upstream: Upstream | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal upstream
        upstream = make_upstream(settings.client, settings.upstream_timeout_s)
        try:
            yield
        finally:
            await upstream.aclose()

    async def forward(request: Request) -> JSONResponse:
        assert upstream is not None, "the lifespan has not started"
        try:
            response = (await upstream.get(hello_url)).raise_for_status()
        except httpx.HTTPError as exc:
            logger.warning("upstream failed error=%r", exc)
            return JSONResponse({"caller": own_counts(), "error": repr(exc)}, status_code=502)
        return JSONResponse({"caller": own_counts(), "callee": response.json()})

    async def counts(request: Request) -> JSONResponse:
        return JSONResponse({"side": "caller", **own_counts()})

    return Starlette(
        routes=[Route("/forward", forward), Route("/counts", counts)], lifespan=lifespan
    )


def build_config(settings: CallerSettings) -> uvicorn.Config:
    """uvicorn with its defaults (the caller's own keep-alive plays no part in the story)."""
    return uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
    )


def main() -> None:
    """Serve on the socket the launcher passed; exit with a one-line error on a bad setting."""
    try:
        settings = caller_from_env(os.environ)
    except SettingsError as exc:
        sys.exit(f"caller: {exc}")
    logging.basicConfig(level=settings.log_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per upstream request
    logger.info("starting client=%s callee_url=%s", settings.client, settings.callee_url)
    # The lab passes a socket it bound (LISTEN_FD); by hand, the program binds loopback:PORT.
    sockets = None if settings.listen_fd is None else [socket.socket(fileno=settings.listen_fd)]
    uvicorn.Server(build_config(settings)).run(sockets=sockets)


if __name__ == "__main__":
    main()
