"""The soda service: one unary gRPC method that answers a random number after 10 ms.

``python -m leaklab.stories.grpc_unclosed.server --ready-fd FD [--max-connection-idle-ms MS]``

A sync ``grpc.server`` on a bounded thread pool, the way most Python gRPC services are
deployed: connections cost the server no thread (grpc's C core polls them), so its thread
count stays flat while its fds grow with every connection a client holds. The method is
served by a generic handler with bytes in and out, so there is no generated code to keep.

The lab learns the port from one JSON line (``{"port": N, "pid": N}``) written to
``--ready-fd`` once the server serves; nothing else is ever written there. People read the
same facts on stderr (``soda server listening host=... port=... pid=... fd_limit=...``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

from leaklab.stories.grpc_unclosed.protocol import METHOD, SERVICE

__all__ = ["build_server", "main", "server_options"]

DELAY_S = 0.010


def _random(request: bytes, context: grpc.ServicerContext) -> bytes:
    """A random number in [0, 1), as ASCII, after the soda machine's 10 ms."""
    time.sleep(DELAY_S)
    return repr(random.random()).encode()


def server_options(max_connection_idle_ms: int) -> list[tuple[str, int]]:
    """The server's channel args: exclusive port; the idle timeout when > 0."""
    # grpc sets SO_REUSEPORT by default on Linux: another process could then share the port.
    options = [("grpc.so_reuseport", 0)]
    if max_connection_idle_ms > 0:
        options.append(("grpc.max_connection_idle_ms", max_connection_idle_ms))
    return options


def build_server(workers: int, max_connection_idle_ms: int) -> grpc.Server:
    """The soda server, not started and not yet bound."""
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(_random)}
    )
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="soda"),
        handlers=[handler],
        options=server_options(max_connection_idle_ms),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m leaklab.stories.grpc_unclosed.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (see --ready-fd)")
    parser.add_argument("--workers", type=int, default=8, help="RPC threads")
    parser.add_argument(
        "--max-connection-idle-ms", type=int, default=0, help="GOAWAY idle connections (0: off)"
    )
    parser.add_argument(
        "--ready-fd", type=int, help='write {"port": N, "pid": N} here once serving'
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    args = _parser().parse_args(argv)
    server = build_server(args.workers, args.max_connection_idle_ms)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    if port == 0:
        raise SystemExit(f"could not bind {args.host}:{args.port}")
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    server.start()
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print(
        f"soda server listening host={args.host} port={port} pid={os.getpid()} "
        f"fd_limit={fd_limit} max_connection_idle_ms={args.max_connection_idle_ms}",
        file=sys.stderr,
        flush=True,
    )
    if args.ready_fd is not None:
        with os.fdopen(args.ready_fd, "w") as ready:
            ready.write(json.dumps({"port": port, "pid": os.getpid()}) + "\n")
    stopping.wait()
    server.stop(grace=1.0).wait(2.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
