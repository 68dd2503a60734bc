"""Fixtures shared by every functional test: one embedded endpoint for the session, and a
freshly provisioned pipeline (unique prefix) per test, so tests never see each other's data;
a throwaway PostgreSQL server per test process for the postgres-cdc pipeline."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from xrh.config import HarnessConfig, parse_config
from xrh.endpoint import EmbeddedEndpoint
from xrh.postgres_server import PostgresServer, temporary_server
from xrh.provision import destroy, provision

_prefixes = itertools.count(1)


@pytest.fixture(scope="session")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEndpoint]:
    """Both regions on 127.0.0.1 for the whole session; stopped at its end."""
    runs = tmp_path_factory.mktemp("runs")
    config = parse_config(["--runs-dir", str(runs)], environ={})
    with EmbeddedEndpoint(config) as started:
        yield started


@pytest.fixture
def provisioned(endpoint: EmbeddedEndpoint, tmp_path: Path) -> Iterator[HarnessConfig]:
    """A kinesis pipeline with a unique prefix, provisioned in both regions, removed afterwards."""
    prefix = f"t{os.getpid() % 10000}-{next(_prefixes)}"
    config = parse_config(["--prefix", prefix, "--runs-dir", str(tmp_path / "runs")], environ={})
    config = config.with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
    provision(config)
    yield config
    if endpoint.alive():
        destroy(config)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server (wal_level logical, 127.0.0.1 and a socket in its data
    directory) per test process; tests use tables, publications and slots of their own prefix.
    The folder is open to the server's user (it runs as 'postgres' when the tests run as root;
    pytest's own temporary folders are closed to other users)."""
    with temporary_server() as server:
        yield server


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder of the test's own that the throwaway server's user can enter (pytest's
    tmp_path is not: PostgreSQL runs as 'postgres' under root), removed afterwards: the
    working directory of runs that start a PostgreSQL server in their run directory."""
    base = Path(tempfile.mkdtemp(prefix="xrh-pgrun-"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
