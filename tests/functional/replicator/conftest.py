"""Fixtures of the replicator's functional tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from replicator_pipeline import Pipeline

from xrh.config import HarnessConfig


@pytest.fixture
def pipeline(provisioned: HarnessConfig, tmp_path: Path) -> Pipeline:
    return Pipeline.of(provisioned, tmp_path / "run")
