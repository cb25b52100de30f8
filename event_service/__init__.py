"""An event router that fans events out to WebSocket subscribers, with or without a read handler.

``READ_HANDLER=missing`` reproduces the leak (client messages are never read and pile up in
the kernel), ``READ_HANDLER=fixed`` is the fix. Start it with ``python -m event_service``.
"""
