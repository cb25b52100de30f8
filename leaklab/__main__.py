"""``python -m leaklab``: the lab's command line."""

from __future__ import annotations

import sys

from leaklab.cli import main

if __name__ == "__main__":
    sys.exit(main())
