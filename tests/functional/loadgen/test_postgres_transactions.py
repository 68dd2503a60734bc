"""The postgres-cdc producer against a real PostgreSQL (the session's throwaway server), without
Locust: the ledger says exactly what the table shows. Every ok statement's effect is in the
table (replaying the ledger's ok statements in commit order gives the table), nothing of a
rolled-back or failed transaction is, and the ledger's txn is the xid PostgreSQL reports (the
rows' xmin, and the transactions a test_decoding slot sees commit). Also under a restart of the
server during the load: transactions fail or end unknown, the producer reconnects and goes on."""

from __future__ import annotations

import itertools
import random
import re
import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest

from loadgen.keyspace import KeyspaceSpec
from loadgen.ledger import LedgerWriter
from loadgen.postgres_load import (
    PostgresProducer,
    PostgresSettings,
    psycopg_connector,
    qualified_table,
)
from loadgen.templates import compile_template
from loadgen.templates.compiler import DEFAULT_TEMPLATE
from xrh import postgres_setup
from xrh.postgres_cdc import ROLLED_BACK, table_name

pytestmark = pytest.mark.functional

_prefixes = itertools.count(1)


def _producers(server, tmp_path: Path, count: int, *, keys: int = 12):
    """``count`` producers on a fresh table (their own prefix), one ledger, and a test_decoding
    slot that sees every transaction committed from now on."""
    prefix = f"pgt-{next(_prefixes)}-{random.randrange(10**6)}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        postgres_setup.create_table(conn, prefix)
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')",
                     (f"{table_name(prefix)}_td",))  # fmt: skip
    ledger = LedgerWriter(tmp_path / "ledger.sqlite")
    settings = PostgresSettings(qualified_table(prefix), "us-east-1", statements_per_txn=4,
                                rollback_share=0.2)  # fmt: skip
    producers = []
    for index in range(count):
        rng = random.Random(index)
        pid = f"run/lu{index + 1}"
        producers.append(PostgresProducer(
            pid, compile_template(DEFAULT_TEMPLATE).bind(rng=rng, producer=pid),
            KeyspaceSpec(size=keys).build(rng), psycopg_connector(server.url), ledger, settings,
            rng=rng,
        ))  # fmt: skip
    return prefix, ledger, producers


def _decoded(server, prefix: str) -> tuple[set[str], dict[str, str]]:
    """The xids of the committed transactions that changed the table, and trace -> xid of
    every inserted or updated row version, as the slot decoded them; the slot dropped."""
    slot = f"{table_name(prefix)}_td"
    with psycopg.connect(server.url, autocommit=True) as conn:
        rows = conn.execute("SELECT xid::text, data FROM pg_logical_slot_get_changes(%s, NULL, "
                            "NULL)", (slot,)).fetchall()  # fmt: skip
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    committed: set[str] = set()
    traces: dict[str, str] = {}
    for xid, data in rows:
        if data.startswith(f"table public.{table_name(prefix)}:"):
            committed.add(xid)
            found = re.search(r"trace\[text\]:'([^']*)'", data)
            if found:
                traces[found.group(1)] = xid
    return committed, traces


def _check(server, prefix: str, db_path: Path) -> dict[str, int]:
    """The ledger against the table and the decoded changes; counts by status."""
    db = sqlite3.connect(db_path)
    rows = db.execute("SELECT trace, producer, seq, key, op, status, error, txn, rows, commit_ts "
                      "FROM ledger ORDER BY rowid").fetchall()  # fmt: skip
    db.close()
    with psycopg.connect(server.url) as conn:
        table = {str(k): (trace, xmin, ts) for k, trace, xmin, ts in conn.execute(
            f"SELECT key, trace, xmin::text, commit_timestamp FROM {qualified_table(prefix)}")}  # fmt: skip
    committed, decoded = _decoded(server, prefix)
    # gap-free seqs per producer; a transaction's statements consecutive, one status and xid
    by_producer: dict[str, list[int]] = {}
    for trace, producer, seq, *_ in rows:
        by_producer.setdefault(producer, []).append(seq)
        assert trace == f"{producer}-{seq:09d}"
    for seqs in by_producer.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
    # replaying the ok statements in the order their transactions committed gives the table
    expected: dict[str, str | None] = {}
    for trace, _, _, key, op, status, error, txn, changed, _ in rows:
        if status == "fail" and error == ROLLED_BACK:
            assert txn is not None and txn not in committed
        if status == "fail":
            assert trace not in decoded
        if status != "ok" or not changed:
            continue
        assert decoded.get(trace, txn) == txn  # the xid pgoutput's decoding reports
        expected[key] = None if op == "delete" else trace
    unknown = {r[0] for r in rows if r[5] == "unknown"}
    for key, trace in expected.items():
        if trace is None:
            assert key not in table or table[key][0] in unknown, key
            continue
        got = table.get(key)
        if got is not None and got[0] in unknown:
            continue  # an unknown transaction committed after it
        assert got is not None and got[0] == trace, (key, trace, got)
        txn = next(r[7] for r in rows if r[0] == trace)
        assert got[1] == txn  # the row version's xmin is the ledgered xid
    oks = {r[0]: r for r in rows if r[5] == "ok"}
    for key, (trace, _, ts) in table.items():
        assert trace in oks or trace in unknown, (key, trace)
        if trace in oks:
            assert int(ts.timestamp() * 1000) == oks[trace][9]  # commit_timestamp = commit_ts
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[5]] = counts.get(r[5], 0) + 1
    return counts


def test_the_ledger_is_what_the_table_shows(postgres_server, tmp_path):
    prefix, ledger, producers = _producers(postgres_server, tmp_path, 3)
    for _ in range(150):  # interleaved: conflicting keys, commit order = ledger order
        for producer in producers:
            producer.add(1)
            producer.flush()
    for producer in producers:
        producer.close()
    summary = ledger.close()
    assert summary.complete
    counts = _check(postgres_server, prefix, tmp_path / "ledger.sqlite")
    assert counts.get("ok", 0) > 500 and counts.get("fail", 0) > 50, counts
    assert "unknown" not in counts


def test_a_server_restart_under_load(postgres_server, tmp_path):
    prefix, ledger, producers = _producers(postgres_server, tmp_path, 1)
    producer = producers[0]
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            producer.add(1)
            producer.flush()

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        time.sleep(0.5)
        postgres_server.restart("fast")
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(40)
    assert not worker.is_alive()
    producer.close()
    assert ledger.close().complete
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    errors = db.execute("SELECT status, COUNT(*) FROM ledger WHERE status != 'ok' AND "
                        "error != ? GROUP BY status", (ROLLED_BACK,)).fetchall()  # fmt: skip
    last_ok = db.execute("SELECT MAX(seq) FROM ledger WHERE status = 'ok'").fetchone()[0]
    first_bad = db.execute("SELECT MIN(seq) FROM ledger WHERE status != 'ok' AND error != ?",
                           (ROLLED_BACK,)).fetchone()[0]  # fmt: skip
    db.close()
    assert errors, "the restart failed no transaction"
    assert last_ok > first_bad  # it reconnected and committed again after the restart
    _check(postgres_server, prefix, tmp_path / "ledger.sqlite")
