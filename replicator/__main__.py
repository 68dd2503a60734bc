"""``python -m replicator`` reaches the same commands as ``xrh``."""

import sys

from xrh.cli import main

sys.exit(main())
