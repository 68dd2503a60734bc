"""``python -m xrh`` is the ``xrh`` command."""

import sys

from xrh.cli import main

sys.exit(main())
