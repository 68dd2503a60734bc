"""Make ``import verify`` find the verify package, not this test folder.

pytest (rootdir-relative, "prepend" import mode) puts ``tests/functional`` on ``sys.path``
because of the conftest there; this folder, also named ``verify`` and without ``__init__.py``,
would then be imported as a namespace package in place of the real one. Import the real package
once with that entry hidden; later imports reuse it from ``sys.modules``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_shadow = Path(__file__).resolve().parent.parent
if getattr(sys.modules.get("verify"), "__file__", None) is None:
    sys.modules.pop("verify", None)
    _saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _shadow]
    try:
        import verify  # noqa: F401  (the package under test)
    finally:
        sys.path[:] = _saved
