"""The lab: stories of connection-resource leaks, each a matrix of cells run against real
processes, sampled from the kernel every second, judged by explicit rules, and reported.
"""
