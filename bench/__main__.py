"""``python -m bench [fanout|latency|swarm|idle|sockets|all] [--quick]``."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from bench.report import say
from bench.subscribers import raise_fd_limit

BENCHMARKS = ("fanout", "latency", "swarm", "idle", "sockets")


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark or all of them, in order."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of the event service against baselines measured in the same run.",
    )
    parser.add_argument("benchmark", nargs="?", default="all", choices=(*BENCHMARKS, "all"))
    parser.add_argument(
        "--quick", action="store_true", help="fewer subscribers, short windows: checks the code"
    )
    parser.add_argument("--reps", type=int, help="repetitions (default: per benchmark)")
    parser.add_argument(
        "--no-profile", action="store_true", help="fanout: skip the py-spy profiles"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be at least 1")
    raise_fd_limit(20_000)
    names = BENCHMARKS if args.benchmark == "all" else (args.benchmark,)
    for name in names:
        started = time.monotonic()
        module = importlib.import_module(f"bench.{name}")
        options = {"with_profile": not args.no_profile} if name == "fanout" else {}
        module.run(args.quick, reps=args.reps, **options)
        say(f"{name} took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
