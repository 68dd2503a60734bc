"""Suite-wide options: the long drill matrix runs on demand.

The default run (README's test command) proves one or two drills of each pipeline under
their worst fault (a crash, a failover, an outage) and that the harness catches the published
samples' mistakes; every other drill is marked ``drill_matrix`` and runs with
``pytest --drill-matrix`` (or ``XRH_DRILL_MATRIX=1``), as ``xrh drill --all`` does outside pytest.
That keeps the default suite under ten minutes on two cores as pipelines add drills.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--drill-matrix", action="store_true", default=False,
        help="also run every drill marked drill_matrix (the long matrix; about 15 minutes more)",
    )  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--drill-matrix") or os.environ.get("XRH_DRILL_MATRIX") == "1":
        return
    skip = pytest.mark.skip(
        reason="part of the long drill matrix: run with `pytest --drill-matrix` "
        "(or XRH_DRILL_MATRIX=1)"
    )
    for item in items:
        if "drill_matrix" in item.keywords:
            item.add_marker(skip)
