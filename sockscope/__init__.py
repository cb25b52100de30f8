"""What the kernel says about a process's file descriptors, sockets and memory.

Pure parsers of ``/proc`` text and kernel structs (tested on literal inputs) beside short
readers that call them: ``fds`` (``/proc/self/fd``), ``tcp`` (TCP states, ``TCP_INFO``,
``/proc/net/tcp{,6}``), ``sockets`` (one socket of ours, asked through its fd), ``process``
(children, RSS). Sockets are identified by inode, never by port number alone.
"""
