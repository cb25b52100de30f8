"""Benchmarks of the event service, each against a baseline measured in the same run.

``python -m bench [fanout|latency|swarm|idle|all] [--quick]``. One module per benchmark
(:mod:`bench.fanout`, :mod:`bench.latency`, :mod:`bench.swarm`, :mod:`bench.idle`), the
servers behind :mod:`bench.targets`, the client processes in :mod:`bench.children`, and
the arithmetic, pure, in :mod:`bench.figures`. Results go to ``bench/results/<name>.json``.
"""
