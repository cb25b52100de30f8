"""A swarm of WebSocket clients that send upstream pings and read the events pushed to them;
``python -m ping_client`` or ``ping-swarm``. It meets the service only on a socket.
"""
