"""The action log's load end to end: a real Locust run (produce only: ``--replicator external
--no-verify``) against the session's embedded endpoint, kept running after the run so the test
reads region A's actions stream itself and holds it against the ledger.

Part of every PutRecords fails in region A (injected), so the producer's retries of only the
failed entries, and the per-key order they must keep, are exercised against the real service
shapes: every acknowledged action is in the stream where the ledger says, with its keys' block
partition key, parseable, and each partition key's actions are in the order they were made.

Then the main job as a user runs it (its own embedded endpoint, both consumers, verify).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import sqlite3
from pathlib import Path

import pytest
from test_locust_runs import run_locust

from xrh.action_log import action_partition_key, parse_action
from xrh.aws import AwsClients
from xrh.config import Side, parse_config
from xrh.provision import destroy
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional

FAULTS = "a:PutRecords:partial=0.1"
_prefixes = itertools.count(1)


def read_stream(client, stream: str) -> list[dict]:
    """Every record of every shard, in shard order (bounded: the stream is small)."""
    out: list[dict] = []
    shards = client.list_shards(StreamName=stream)["Shards"]
    for shard in shards:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for _ in range(1000):
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            out.extend({**r, "ShardId": shard["ShardId"]} for r in page["Records"])
            iterator = page.get("NextShardIterator")
            if not page["Records"] or iterator is None:
                break
        else:
            raise AssertionError(f"shard {shard['ShardId']} did not end")
    return out


def ledger_rows(path: Path) -> list[dict]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM ledger ORDER BY rowid")]
    finally:
        db.close()


def test_action_log_load_matches_the_actions_stream(endpoint, tmp_path):
    prefix = f"al{os.getpid() % 10000}-{next(_prefixes)}"
    config = parse_config(["--pipeline", "action-log", "--prefix", prefix], environ={})
    config = config.with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
    endpoint.set_faults(FAULTS, seed=7)
    try:
        code, out, err = run_locust(
            tmp_path, "--pipeline", "action-log", "--headless", "-u", "4", "-r", "4", "-t", "7s",
            "--only-summary", "--replicator", "external", "--no-verify", "--keys", "500",
            "--rate-per-user", "60", "--seed", "13", "--prefix", prefix,
            "--endpoint-url-a", endpoint.url_of("a"), "--endpoint-url-b", endpoint.url_of("b"),
            timeout=90,
        )  # fmt: skip
    finally:
        endpoint.set_faults(None)
    try:
        assert code == 0, err[-3000:]
        run_dir = tmp_path / "runs" / "latest"
        rows = ledger_rows(run_dir / "ledger.sqlite")
        stream = ResourceNames(prefix).actions_stream
        records = read_stream(AwsClients(config).client("kinesis", Side.A), stream)
        assert records, "nothing reached the actions stream"

        # every record in the stream is an action of this run, keyed by its keys' block
        by_place: dict[tuple[str, str], dict] = {}
        for record in records:
            action = parse_action(record["Data"])
            keys = [int(op.pk) for op in action.ops]
            assert {action_partition_key(k) for k in keys} == {record["PartitionKey"]}
            by_place[(record["ShardId"], record["SequenceNumber"])] = {
                "action": action, "partition_key": record["PartitionKey"]}  # fmt: skip

        ok = [r for r in rows if r["status"] == "ok"]
        assert len(ok) >= 200, len(ok)
        assert {r["status"] for r in rows} <= {"ok", "fail"}  # no lost answer was injected
        assert len({r["trace"] for r in ok}) == len({r["trace"] for r in rows})  # all written
        assert any(r["status"] == "fail" for r in rows)  # partial failures were retried
        for row in ok:
            assert (row["pipeline"], row["target"], row["region"]) == (
                "action-log", stream, config.region_a)  # fmt: skip
            got = by_place.get((row["shard_id"], row["sequence_number"]))
            assert got is not None, f"acknowledged action {row['trace']} is not in the stream"
            action = got["action"]
            assert action.trace == row["trace"] and action.ledger_op == row["op"]
            assert action.ops[0].pk == row["key"]
            assert got["partition_key"] == row["partition_key"] == action_partition_key(
                int(row["key"]))  # fmt: skip
        assert {r["op"] for r in ok} == {"put", "update", "delete", "batch"}

        # per partition key, each producer's actions (their last copies) in the order made
        last: dict[tuple[str, str], dict[str, int]] = {}
        for index, record in enumerate(records):
            trace = parse_action(record["Data"]).trace
            producer, _, seq = trace.rpartition("-")
            last.setdefault((record["PartitionKey"], producer), {})[seq] = index
        for traces in last.values():
            assert sorted(traces, key=traces.get) == sorted(traces)

        db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
        try:
            complete = db.execute("SELECT value FROM ledger_meta WHERE name='complete'").fetchone()
        finally:
            db.close()
        assert complete == ("1",)
        with (run_dir / "locust_stats.csv").open(newline="") as handle:
            stats = {r["Name"]: r for r in csv.DictReader(handle) if r["Type"] == "kinesis"}
        assert int(stats["PutRecords"]["Request Count"]) > 0
        assert int(stats["PutRecords"]["Failure Count"]) > 0  # the partial failures shown
    finally:
        if endpoint.alive():
            destroy(config)


def test_main_job_starts_both_consumers_drains_them_and_ends_valid(tmp_path):
    """The whole run on its own embedded endpoint: the orchestrator starts the fast consumer
    (side a) and the lazy one (side b, at --lazy-rate), drains both, and verify holds both
    tables against the fold of the log."""
    code, out, err = run_locust(
        tmp_path, "--pipeline", "action-log", "--headless", "-u", "4", "-r", "4", "-t", "6s",
        "--only-summary", "--seed", "5", "--keys", "300", "--lazy-rate", "300",
        "--drain-timeout", "60", "--settle-seconds", "10", timeout=180,
    )  # fmt: skip
    assert code == 0, err[-3000:]
    assert "replicator of side A started" in err and "replicator of side B started" in err
    assert "replicator drained" in err
    run_dir = tmp_path / "runs" / "latest"
    logs = {side: (run_dir / f"replicator-{side}.log").read_text() for side in "ab"}
    assert "fast consumer" in logs["a"] and "lazy consumer" in logs["b"], logs
    report = json.loads((run_dir / "report.json").read_text())
    assert report["pipeline"] == "action-log" and report["verdict"] == "valid", report["reasons"]
    # how many actions 4 users make in 6 s depends on the machine's load; that they were all
    # applied in both tables does not
    assert report["counts"]["acknowledged"] > 0
    tables = report["details"]["tables"]
    assert tables["A"]["items"] == tables["B"]["items"] == tables["A"]["expected_items"] > 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["load"]["lazy_rate"] == 300.0
    assert config["load"]["ops"] == "put=40,update=40,delete=10,batch=10"


# Answers dropped after the request was carried out, in both regions: the producers' PutRecords
# (ledgered unknown), both consumers' reads, conditional updates, batch writes, checkpoints
# and lease renewals (UpdateItem).
LOST_ANSWERS = (
    "a:PutRecords:lost-answer=0.05,a:GetRecords:lost-answer=0.05,a:UpdateItem:lost-answer=0.05,"
    "a:BatchWriteItem:lost-answer=0.05,b:UpdateItem:lost-answer=0.05,"
    "b:BatchWriteItem:lost-answer=0.05"
)


def test_main_job_under_lost_answers_ends_valid(tmp_path):
    """A write whose answer was lost may or may not have landed: the consumers resend on the
    item's position (no ADD counted twice) and keep their leases; verify allows the unknown."""
    code, out, err = run_locust(
        tmp_path, "--pipeline", "action-log", "--headless", "-u", "4", "-r", "4", "-t", "8s",
        "--only-summary", "--seed", "7", "--faults", LOST_ANSWERS,
        "--drain-timeout", "60", "--settle-seconds", "10", timeout=180,
    )  # fmt: skip
    report = json.loads((tmp_path / "runs" / "latest" / "report.json").read_text())
    assert report["verdict"] == "valid" and code == 0, (report["reasons"], err[-3000:])
    assert report["details"]["faults"]["total"] > 0
    tables = report["details"]["tables"]
    assert tables["A"]["items"] == tables["B"]["items"] == tables["A"]["expected_items"] > 0
