"""A swarm of WebSocket clients that send upstream pings, and the lab that runs experiments."""
