"""``python -m event_service``: read the settings from the environment and serve."""

from __future__ import annotations

import logging
import os
import socket
import sys

from event_service.errors import SettingsError
from event_service.server import EventServer, build_config
from event_service.settings import settings_from_env
from event_service.uvicorn_guards import warn_if_unverified_uvicorn


def main() -> None:
    """Start the event service; exit with a one-line error if a setting is invalid."""
    try:
        settings = settings_from_env(os.environ)
    except SettingsError as exc:
        sys.exit(f"event-service: {exc}")
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("event_service").info(
        "starting read_handler=%s source=%s ws_impl=%s ws_ping_interval_s=%s http_impl=%s "
        "handshake_timeout_s=%g ws_max_size_bytes=%d fanout=%s fanout_window_s=%g",
        settings.read_handler,
        settings.source_name,
        settings.ws_impl,
        settings.ws_ping_interval_s,
        settings.http_impl,
        settings.handshake_timeout_s,
        settings.ws_max_size_bytes,
        settings.fanout,
        settings.fanout_window_s,
    )
    warn_if_unverified_uvicorn()
    # A launcher that chose the port itself passes the listening socket (LISTEN_FD).
    sockets = None if settings.listen_fd is None else [socket.socket(fileno=settings.listen_fd)]
    EventServer(build_config(settings)).run(sockets=sockets)


if __name__ == "__main__":
    main()
