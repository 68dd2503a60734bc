"""postgres-cdc verify on the embedded endpoint and a real PostgreSQL server: change records put
to both regions' ``{prefix}-cdc`` by hand, a ledger, the table's rows; valid, then a planted
fault invalid, then ``xrh verify --run-dir`` from the store once the table is gone."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from verify import cli, run_verify
from xrh import postgres_cdc as pc
from xrh.aws import AwsClients
from xrh.config import Side, parse_config
from xrh.contracts import LEDGER_DDL
from xrh.postgres_setup import create_table
from xrh.provision import destroy, provision
from xrh.runs import create_run

pytestmark = pytest.mark.functional
T0 = datetime(2024, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def cdc_config(endpoint, tmp_path):
    prefix = f"cdcv{tmp_path.name[-6:].replace('_', '')}".lower()
    config = parse_config(["--prefix", prefix, "--pipeline", "postgres-cdc", "--runs-dir",
                           str(tmp_path / "runs")], environ={})  # fmt: skip
    config = config.with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
    provision(config)
    yield config
    if endpoint.alive():
        destroy(config)


def fabricate(config, run_id, conn):
    """Transactions 501 (inserts of keys 1-12), 502 (updates of 1-4, delete of 5) and 503
    (rolled back): the ledger, the table as committed, and the change records."""
    table, records, stmts = pc.table_name(config.prefix), [], []
    txns = [(501, "ok", [("insert", k) for k in range(1, 13)]),
            (502, "ok", [("update", k) for k in range(1, 5)] + [("delete", 5)]),
            (503, "fail", [("update", 7)])]  # fmt: skip
    seq = 0
    for n, (xid, status, ops) in enumerate(txns):
        commit = T0 + timedelta(seconds=n, microseconds=123456)
        for op, key in ops:
            seq += 1
            trace = f"{run_id}/p0-{seq:09d}"
            stmts.append((trace, f"{run_id}/p0", seq, str(xid), str(key), op, status, 1,
                          int(commit.timestamp() * 1000), str(key)))  # fmt: skip
            row = {"key": key, "commit_timestamp": str(commit).replace("+00:00", "+00"),
                   "trace": trace, "payload": json.dumps({"n": seq})}  # fmt: skip
            if status != "ok":
                continue
            if op == "delete":
                conn.execute(f"DELETE FROM {table} WHERE key = %s", (key,))
            else:
                conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO "
                             "UPDATE SET commit_timestamp = excluded.commit_timestamp, trace = "
                             "excluded.trace, payload = excluded.payload",
                             (key, commit, trace, row["payload"]))  # fmt: skip
            data = {"key": key} if op == "delete" else row
            records.append((str(key), pc.encode(pc.change_record(
                data=data, operation=op, commit_time=commit.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                schema=pc.SCHEMA, table=table, transaction_id=xid))))  # fmt: skip
    return stmts, records


def write_ledger(path, stmts):
    db = sqlite3.connect(path)
    db.executescript(LEDGER_DDL)
    db.executemany(
        "INSERT INTO ledger (trace, producer, seq, txn, key, op, status, rows, commit_ts, "
        "partition_key, pipeline, region, target, invoked_at) VALUES "
        "(?,?,?,?,?,?,?,?,?,?,'postgres-cdc','us-east-1','public.t',0)", stmts)  # fmt: skip
    db.execute("INSERT INTO ledger_meta VALUES ('complete', '1')")
    db.commit()
    db.close()


def put(clients, side, stream, records):
    kinesis = clients.client("kinesis", side)
    for pk, data in records:  # one at a time: per key, in commit order
        kinesis.put_record(StreamName=stream, PartitionKey=pk, Data=data)


def test_cdc_verify_valid_invalid_and_from_store(cdc_config, postgres_server):
    config = cdc_config
    run = create_run(config.runs_dir, config.to_public_dict())
    table = pc.table_name(config.prefix)
    (run.path / pc.POSTGRES_FILE).write_text(json.dumps(
        {"url": postgres_server.url, "managed": True, "table": f"public.{table}"}))  # fmt: skip
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        create_table(conn, config.prefix)
        stmts, records = fabricate(config, run.run_id, conn)
    write_ledger(run.path / "ledger.sqlite", stmts)
    clients = AwsClients(config)
    stream = f"{config.prefix}-cdc"
    put(clients, Side.A, stream, records)
    put(clients, Side.B, stream, records)

    result = run_verify(run.path, config, progress=False, settle_s=0, timeout_s=60)
    report = result.report
    assert (result.exit_code, report["verdict"]) == (0, "valid"), report["reasons"]
    assert report["counts"]["source_records"] == report["counts"]["target_records"] == 17
    assert report["details"]["source_table"]["rows"] == 11

    # planted: a rolled-back change appears in B (and the table drifts on key 3)
    (_, rolled) = fabricate_rolled_back(config, run.run_id, stmts)
    put(clients, Side.B, stream, [rolled])
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET payload = '{{\"n\": -1}}' WHERE key = 3")
    result = run_verify(run.path, config, progress=False, settle_s=0, timeout_s=60)
    anomalies = result.report["anomalies"]
    assert result.exit_code == 1
    (phantom,) = anomalies["phantom"]["examples"]
    assert phantom["txn"] == "503" and phantom["in_b"] and not phantom["in_a"]
    # key 3 in both streams' folds; key 7 in B's, which ends on the phantom
    assert anomalies["diverged"]["count"] == 3
    assert {(e["stream"], e["key"]) for e in anomalies["diverged"]["examples"]} == {
        ("A", "3"), ("B", "3"), ("B", "7")}  # fmt: skip

    # the table is gone: xrh verify --run-dir re-checks the stored read
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {table}")
    code = cli.run(cli.build_parser().parse_args(
        ["--run-dir", str(run.path), "--no-progress", "--settle-seconds", "0"]))  # fmt: skip
    again = json.loads((run.path / "report.json").read_text())
    assert code == 1 and again["anomalies"] == result.report["anomalies"]
    assert any("re-checked from verify.sqlite" in n for n in again["details"]["notes"])


def fabricate_rolled_back(config, run_id, stmts):
    """The change record the rolled-back transaction 503 would have made."""
    trace, _, _, xid, key = stmts[-1][:5]
    data = {"key": int(key), "commit_timestamp": "2024-11-24 10:00:02.123456+00",
            "trace": trace, "payload": "{}"}  # fmt: skip
    return None, (key, pc.encode(pc.change_record(
        data=data, operation="update", commit_time="2024-11-24T10:00:02.123456Z",
        schema=pc.SCHEMA, table=pc.table_name(config.prefix), transaction_id=int(xid))))  # fmt: skip
