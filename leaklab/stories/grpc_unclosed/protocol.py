"""What the soda server, its client and the lab agree on: the method, the client modes, the pools.

Kept apart from the two programs so that the lab (and each program's package import) does not
load the other program.
"""

from __future__ import annotations

__all__ = ["CLIENT_MODES", "METHOD", "PATH", "POOLS", "SERVICE"]

SERVICE = "soda.Soda"
METHOD = "Random"
PATH = f"/{SERVICE}/{METHOD}"  # bytes in (ignored), a random number in [0, 1) as ASCII out

CLIENT_MODES = ("leak-per-call-held", "close-each", "reuse-one")
POOLS = ("shared", "local")  # grpc's default shared subchannel pool, or one per channel
