"""Fixtures for verify unit tests."""

from __future__ import annotations

import pytest
from verify_planting import Planted

from verify.store import Store


@pytest.fixture
def planted(tmp_path):
    store = Store(tmp_path / "verify.sqlite")
    yield Planted(store)
    store.close()
