"""``python -m leaklab.stories.http_keepalive.callee``: the service being called.

``GET /hello`` answers with the callee's own counts (tasks, fds, connections), with
``Connection: close`` when the settings say so; ``GET /counts`` answers the same for the lab
and always keeps its connection. uvicorn closes idle keep-alive connections after
``KEEP_ALIVE`` seconds (its ``timeout_keep_alive``, 5 s by default).
"""

from __future__ import annotations

import logging
import os
import socket
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from leaklab.stories.http_keepalive.counts import own_counts
from leaklab.stories.http_keepalive.settings import CalleeSettings, SettingsError, callee_from_env

__all__ = ["create_app", "main"]


def create_app(settings: CalleeSettings) -> Starlette:
    """The callee's app: /hello and /counts."""
    headers = {"Connection": "close"} if settings.connection == "close" else None

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"side": "callee", **own_counts()}, headers=headers)

    async def counts(request: Request) -> JSONResponse:
        return JSONResponse({"side": "callee", **own_counts()})

    return Starlette(routes=[Route("/hello", hello), Route("/counts", counts)])


def build_config(settings: CalleeSettings) -> uvicorn.Config:
    """uvicorn with the cell's keep-alive timeout."""
    return uvicorn.Config(
        create_app(settings),
        timeout_keep_alive=settings.keep_alive_s,
        host="127.0.0.1",
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        lifespan="off",
    )


def main() -> None:
    """Serve on the socket the launcher passed; exit with a one-line error on a bad setting."""
    try:
        settings = callee_from_env(os.environ)
    except SettingsError as exc:
        sys.exit(f"callee: {exc}")
    logging.basicConfig(level=settings.log_level.upper())
    logging.getLogger("leaklab.callee").info(
        "starting keep_alive_s=%g connection=%s", settings.keep_alive_s, settings.connection
    )
    # The lab passes a socket it bound (LISTEN_FD); by hand, the program binds loopback:PORT.
    sockets = None if settings.listen_fd is None else [socket.socket(fileno=settings.listen_fd)]
    uvicorn.Server(build_config(settings)).run(sockets=sockets)


if __name__ == "__main__":
    main()
