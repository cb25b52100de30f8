"""``python -m ping_client``: the ping swarm."""

from __future__ import annotations

import sys

from ping_client.cli import main

if __name__ == "__main__":
    sys.exit(main())
