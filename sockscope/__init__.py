"""What the kernel says about sockets and memory, read for every package above it.

Per-socket queues and kernel memory, sockstat, tcp_mem, and the fixed schedule readings are
taken on: the only code in the project that opens ``/proc`` or asks the kernel about sockets.
"""
