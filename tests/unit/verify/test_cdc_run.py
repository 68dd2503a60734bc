"""run_verify for postgres-cdc over fake streams and a fake table read: report.json's schema,
the verdicts and exit codes, unknown when evidence is missing, and the stored re-check."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pytest
from test_cdc_checks import PREFIX, RUN, Cdc
from test_verify_runner import TOP_KEYS, FakeClients
from verify_fakes import FakeKinesis

from verify import run_verify
from verify.cdc import sources
from verify.cdc.records import normal_body
from xrh import postgres_cdc as pc
from xrh.config import HarnessConfig
from xrh.contracts import LEDGER_DDL

CONFIG = HarnessConfig(pipeline="postgres-cdc", prefix=PREFIX,
                       endpoint_url_a="http://127.0.0.1:1", endpoint_url_b="http://127.0.0.1:2")  # fmt: skip


def kinesis(records) -> FakeKinesis:
    shards: dict[str, tuple] = {}
    for r in records:
        shards.setdefault(r.shard_id, (None, False, []))[2].append({
            "SequenceNumber": r.sequence_number, "PartitionKey": r.partition_key, "Data": r.data,
            "ApproximateArrivalTimestamp": datetime.fromtimestamp(r.arrival_ms / 1000, UTC)})  # fmt: skip
    return FakeKinesis(shards, page=50)


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A run directory of a valid fabricated run; the table 'read' from ``state['table']``."""
    path = tmp_path / RUN
    path.mkdir()
    cdc = Cdc().valid()
    (path / "config.json").write_text(json.dumps({"pipeline": "postgres-cdc", "prefix": PREFIX}))
    (path / pc.POSTGRES_FILE).write_text(json.dumps({"url": "postgresql://127.0.0.1:1/x"}))
    db = sqlite3.connect(path / "ledger.sqlite")
    db.executescript(LEDGER_DDL)
    db.executemany(
        "INSERT INTO ledger (trace, producer, seq, txn, key, op, status, rows, commit_ts, "
        "pipeline, region, target, partition_key, invoked_at) VALUES "
        "(?,?,?,?,?,?,?,?,?,'postgres-cdc','us-east-1','public.t',?,0)",
        [(*s, s[4]) for s in cdc.stmts],
    )
    db.execute("INSERT INTO ledger_meta VALUES ('complete', '1')")
    db.commit()
    db.close()
    state = {"cdc": cdc, "table": dict(cdc.table), "down": None}

    def read_table(store, db_info, table, own_prefix):
        rows = state["table"].items()
        return store.add_table_rows((str(k), normal_body(v), v["trace"], 1) for k, v in rows)

    monkeypatch.setattr(sources, "probe", lambda db_info, table: state["down"])
    monkeypatch.setattr(sources, "read_table", read_table)
    return path, state


def verify(path, cdc, b=None, **kw):
    clients = FakeClients(kinesis(cdc.a), kinesis(cdc.copies() if b is None else b))
    return run_verify(path, CONFIG, clients=clients, progress=False, settle_s=0, **kw)


def test_valid_report_and_page(run_dir):
    path, state = run_dir
    result = verify(path, state["cdc"])
    report = json.loads(result.report_json.read_text())
    assert (result.exit_code, report["verdict"]) == (0, "valid"), report["reasons"]
    assert set(report) == TOP_KEYS and report["pipeline"] == "postgres-cdc"
    assert {"incomplete_transaction", "malformed", "lost", "checkpoint_ahead"} <= set(
        report["anomalies"])  # fmt: skip
    counts = report["counts"]
    assert (counts["acknowledged"], counts["failed"], counts["unknown"]) == (8, 1, 3)
    assert counts["source_records"] == counts["target_records"] == 10
    assert report["lag_ms"]["max"] == 40
    assert "the contract's names" in report["details"]["names"]["source"]
    page = result.report_html.read_text()
    assert "Change data capture" in page and "chart-lag-over-time" in page


def test_a_planted_fault_is_invalid(run_dir):
    path, state = run_dir
    state["table"][1] = {**state["table"][1], "payload": {"v": 0}}
    result = verify(path, state["cdc"])
    report = json.loads(result.report_json.read_text())
    assert (result.exit_code, report["verdict"]) == (1, "invalid")
    assert report["anomalies"]["diverged"]["count"] == 2
    assert any("differ from the table" in r for r in report["reasons"])


def test_incomplete_ledger_is_unknown(run_dir):
    path, state = run_dir
    db = sqlite3.connect(path / "ledger.sqlite")
    db.execute("DELETE FROM ledger_meta")
    db.commit()
    db.close()
    result = verify(path, state["cdc"])
    assert result.exit_code == 2 and "not marked complete" in result.report["reasons"][0]


def test_database_gone_with_nothing_stored_is_unknown(run_dir):
    path, state = run_dir
    state["down"] = "OperationalError: connection refused"
    result = verify(path, state["cdc"])
    assert result.exit_code == 2
    assert any("table cannot be read" in r for r in result.report["reasons"])


def test_stored_read_is_rechecked_once_the_database_is_gone(run_dir):
    path, state = run_dir
    state["table"][3] = {**state["table"][3], "payload": {"v": 0}}
    first = verify(path, state["cdc"])
    assert first.exit_code == 1
    state["down"] = "OperationalError: connection refused"
    again = verify(path, state["cdc"])
    assert again.exit_code == 1
    assert again.report["anomalies"] == first.report["anomalies"]
    assert any("re-checked from verify.sqlite" in n for n in again.report["details"]["notes"])
    stored = run_verify(path, CONFIG, from_store=True, progress=False)
    assert stored.report["anomalies"] == first.report["anomalies"]


def test_a_claim_ahead_of_b_from_claims_jsonl(run_dir):
    path, state = run_dir
    cdc = state["cdc"]
    last = cdc.a[-1]
    claim = {"claimed_at_ms": last.arrival_ms + 1, "watermark_ms": last.arrival_ms,
             "stream": f"{PREFIX}-cdc", "source_region": CONFIG.region_a,
             "target_region": CONFIG.region_b, "replicator_id": "r1"}  # fmt: skip
    (path / "claims.jsonl").write_text(json.dumps(claim) + "\n")
    result = verify(path, cdc, b=cdc.copies()[:-1])
    report = result.report
    assert report["anomalies"]["checkpoint_ahead"]["count"] == 1
    assert report["anomalies"]["lost"]["count"] == 1
    assert report["watermark"]["held"] is False
