"""What the kernel says about sockets, fds and memory (and the clock readings are taken on):
the only code in the project that opens ``/proc`` or asks the kernel about sockets.
"""
