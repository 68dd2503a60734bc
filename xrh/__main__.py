"""``python -m xrh`` is the ``xrh`` command."""

import sys

from xrh import early_signals

early_signals.install()  # before the imports that take seconds: a drain request is kept

from xrh.cli import main  # noqa: E402

sys.exit(main())
