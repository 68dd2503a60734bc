"""The throwaway PostgreSQL server: logical decoding on, loopback only, restartable, removed."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from xrh.postgres_server import PostgresServer, PostgresUnavailable, throwaway_server

pytestmark = pytest.mark.functional


def test_the_shared_server_decodes_logically_and_listens_on_loopback_only(
    postgres_server: PostgresServer,
) -> None:
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    assert (postgres_server.socket_dir / f".s.PGSQL.{postgres_server.port}").exists()


def test_a_crash_restart_keeps_committed_rows_and_remove_leaves_nothing() -> None:
    base = Path(tempfile.mkdtemp(prefix="xrh-pg-"))
    os.chmod(base, 0o755)
    server = throwaway_server(base)
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (k int PRIMARY KEY)")
            conn.execute("INSERT INTO kept VALUES (1), (2)")
        first_pid = server.pid
        server.restart("immediate")
        assert server.pid not in (None, first_pid)
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (2,)
    finally:
        server.remove()
    assert server.pid is None
    assert not server.data_dir.exists()
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a server run for root changes user")
def test_a_folder_closed_to_the_servers_user_is_named() -> None:
    base = Path(tempfile.mkdtemp(prefix="xrh-pg-closed-"))  # 0700: closed to others
    try:
        with pytest.raises(PostgresUnavailable, match="closed to the user PostgreSQL runs as"):
            throwaway_server(base / "run")
    finally:
        shutil.rmtree(base, ignore_errors=True)
