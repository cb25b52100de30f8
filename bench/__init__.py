"""Benchmarks of the event service, each against a baseline measured in the same run:
``python -m bench [fanout|latency|swarm|idle|sockets|all] [--quick]``.
"""
