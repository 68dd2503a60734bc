"""The postgres-cdc pipeline end to end: ``locust -f locustfile.py --pipeline postgres-cdc``
starts a throwaway PostgreSQL server in the run directory, capture and the kinesis replicator,
runs transactions, drains capture then the replicator, verifies, and stops the server and
removes its data. The run directory must be open to the server's user (it runs as 'postgres'
under root), so it is a folder of its own rather than pytest's. Set-up (endpoint, provisioning, initdb, capture,
replicator) takes about 5 s on a quiet machine, more on a busy one: ``-t 12s`` leaves load."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_locust_runs import assert_stop_cut_nothing, report, run_locust, stats_rows

from xrh.postgres_cdc import ROLLED_BACK

pytestmark = pytest.mark.functional


def test_a_run_of_transactions_ends_valid_and_leaves_no_server(open_dir):
    code, out, err = run_locust(
        open_dir, "--pipeline", "postgres-cdc", "--headless", "-u", "4", "-r", "4", "-t", "12s",
        "--runs-dir", str(open_dir / "runs"), "--keys", "50", "--rollback-share", "0.2",
        "--drain-timeout", "30", "--settle-seconds", "5",
    )  # fmt: skip
    assert code == 0, err[-3000:]
    result = report(open_dir)
    assert (result["pipeline"], result["verdict"]) == ("postgres-cdc", "valid"), result["reasons"]
    run = (open_dir / "runs" / "latest").resolve()
    where = json.loads((run / "postgres.json").read_text())
    assert where["managed"] and where["table"].startswith("public.")
    assert not Path(where["data_dir"]).exists()  # stopped and removed after verify
    assert "replicator drained" in err and "PostgreSQL stopped" in err
    db = sqlite3.connect(run / "ledger.sqlite")
    try:
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM ledger GROUP BY status"))
        transactions = db.execute("SELECT COUNT(DISTINCT producer || ':' || txn) FROM ledger "
                                  "WHERE txn IS NOT NULL").fetchone()[0]  # fmt: skip
        assert db.execute("SELECT COUNT(*) FROM ledger WHERE status = 'ok' AND (txn IS NULL OR "
                          "rows NOT IN (0, 1))").fetchone()[0] == 0  # fmt: skip
        assert {r[0] for r in db.execute("SELECT DISTINCT op FROM ledger")} == {
            "insert", "update", "delete"}  # fmt: skip
        # Transactions that failed without being rolled back on purpose: on 50 keys, concurrent
        # transactions of several statements can deadlock (PostgreSQL aborts one of them)
        unplanned = db.execute("SELECT DISTINCT producer, txn, error FROM ledger WHERE "
                               "status = 'fail' AND error <> ?", (ROLLED_BACK,)).fetchall()  # fmt: skip
    finally:
        db.close()
    assert statuses.get("ok", 0) > 50 and statuses.get("fail", 0) > 0, statuses
    # one Locust request per transaction, its length the statements it ran
    rows = {r["Name"]: r for r in stats_rows(run / "locust_stats.csv") if r["Type"] == "postgres"}
    assert set(rows) == {"txn", "txn rolled back"}
    assert sum(int(r["Request Count"]) for r in rows.values()) == transactions
    # a Locust failure is a transaction that failed without being rolled back on purpose
    assert sum(int(r["Failure Count"]) for r in rows.values()) == len(unplanned), unplanned
    assert all(("40P01" in error or "40001" in error) for _, _, error in unplanned), unplanned
    assert_stop_cut_nothing(run, out, err)


def test_capture_and_copy_end_valid_under_lost_answers_and_partial_failures(open_dir):
    """Capture's PutRecords into A and the replicator's into B: answers lost after the records
    were written (resent: duplicates, never loss) and entries refused (resent in key order)."""
    faults = ("a:PutRecords:lost-answer=0.05,a:PutRecords:partial=0.1,"
              "b:PutRecords:lost-answer=0.05,b:PutRecords:partial=0.1")  # fmt: skip
    code, out, err = run_locust(
        open_dir, "--pipeline", "postgres-cdc", "--headless", "-u", "4", "-r", "4", "-t", "12s",
        "--runs-dir", str(open_dir / "runs"), "--keys", "500", "--faults", faults,
        "--drain-timeout", "60", "--settle-seconds", "10",
    )  # fmt: skip
    assert code == 0, err[-3000:]
    result = report(open_dir)
    assert result["verdict"] == "valid", result["reasons"]
    kinds = result["details"]["faults"]["by_kind"]
    assert {"lost-answer", "partial"} <= set(kinds), kinds
    assert result["counts"]["source_records"] > 0
