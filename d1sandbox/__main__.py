"""Entry point for `python -m d1sandbox`."""

import sys

from d1sandbox.cli import main

sys.exit(main())
