"""An event router that fans events out to WebSocket subscribers: ``READ_HANDLER=missing``
reproduces the leak, ``fixed`` is the fix. Start it with ``python -m event_service``.
"""
