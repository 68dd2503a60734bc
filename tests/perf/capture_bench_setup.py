"""What the capture benchmark sets up: a throwaway PostgreSQL (a folder open to its user), a
postgres-cdc pipeline on the embedded endpoint, and a load of committed changes waiting in two
slots (the capture's own, and a second one read alone as the baseline)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg

from xrh import postgres_cdc as cdc
from xrh import postgres_setup
from xrh.postgres_server import PostgresServer, temporary_server


def postgres() -> Iterator[PostgresServer]:
    with temporary_server("xrh-pg-bench-") as server:
        yield server


def bare_slot(prefix: str) -> str:
    return cdc.slot_name(prefix) + "_bare"


def load(url: str, prefix: str, changes: int, per_txn: int = 100) -> None:
    """Slots first (nothing missed), then ``changes`` inserts in transactions of ``per_txn``."""
    with psycopg.connect(url, autocommit=True) as conn:
        postgres_setup.create_all(conn, prefix)
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (bare_slot(prefix),))
        table = f"public.{cdc.table_name(prefix)}"
        payload = json.dumps({"kind": "bench", "pad": "x" * 60})
        for start in range(0, changes, per_txn):
            conn.execute(f"INSERT INTO {table} SELECT g, now(), 'b-' || g, %s::jsonb "
                         "FROM generate_series(%s::bigint, %s::bigint) g", (payload, start, start + per_txn - 1))  # fmt: skip


def drop(url: str, prefix: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (bare_slot(prefix),))
        postgres_setup.drop_all(conn, prefix)
