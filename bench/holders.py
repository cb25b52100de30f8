"""``python -m bench.holders``: a child process that holds many idle loopback TCP connections.

Two roles, so that no process holds more fds than its limit (20,000 here):

- ``accept``: accepts ``--count`` connections from a listening socket it inherited
  (``--listen-fd``), several of these sharing one listener, so that every server-side
  socket has the same local address and port, as a service's would;
- ``connect``: opens ``--count`` connections to ``--target`` from ``--source`` (a loopback
  address of its own, so that more connections fit than one address has ephemeral ports),
  and sends ``--send-bytes`` on every ``--send-every``-th one, which the acceptors never
  read: their Recv-Q and skmem are not all zero.

Prints one JSON line when it holds them all (``{"held": N}``), then waits for SIGTERM (from
its launcher, :class:`leaklab.children.ChildProcess`, or from Linux when the launcher dies),
and closes everything. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys

from bench.subscribers import raise_fd_limit

# linux/in.h: let connect() pick the port for the whole 4-tuple, not bind() for the address.
IP_BIND_ADDRESS_NO_PORT = 24


def accept(listen_fd: int, count: int) -> list[socket.socket]:
    """Accept ``count`` connections from the inherited listener."""
    listener = socket.socket(fileno=listen_fd)
    held: list[socket.socket] = []
    while len(held) < count:
        conn, _ = listener.accept()
        held.append(conn)
    listener.detach()
    return held


def connect(
    target: tuple[str, int], source: str, count: int, send_bytes: int, send_every: int
) -> list[socket.socket]:
    """Open ``count`` connections to ``target`` from ``source``; send on some of them."""
    held = []
    for index in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.connect(target)
        if send_bytes and index % send_every == 0:
            sock.sendall(b"\x00" * send_bytes)
        held.append(sock)
    return held


def main(argv: list[str] | None = None) -> int:
    """Hold the connections until told to stop."""
    parser = argparse.ArgumentParser(prog="python -m bench.holders", description=__doc__)
    parser.add_argument("role", choices=("accept", "connect"))
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--listen-fd", type=int)
    parser.add_argument("--target", help="HOST:PORT (connect)")
    parser.add_argument("--source", default="127.0.0.1", help="local address (connect)")
    parser.add_argument("--send-bytes", type=int, default=0)
    parser.add_argument("--send-every", type=int, default=3)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    raise_fd_limit(args.count + 64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.role == "accept":
        if args.listen_fd is None:
            parser.error("accept needs --listen-fd")
        held = accept(args.listen_fd, args.count)
    else:
        host, _, port = (args.target or "").rpartition(":")
        if not host.startswith("127.") or not args.source.startswith("127."):
            parser.error("--target and --source must be in 127.0.0.0/8")
        held = connect((host, int(port)), args.source, args.count, args.send_bytes, args.send_every)
    print(json.dumps({"held": len(held)}), flush=True)
    try:
        while True:
            signal.pause()  # until SIGTERM, whose handler exits
    finally:
        for sock in held:
            sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
