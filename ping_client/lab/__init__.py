"""The lab: runs an experiment matrix (read handler x keepalive x WS implementation x ping kind)
against fresh event services, samples the kernel once a second, and writes a report with a
verdict per cell.
"""
