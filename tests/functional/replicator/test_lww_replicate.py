"""The active-active reference replicator on the embedded endpoint: both sides' processes, plain
conflicting writes to both tables, a drain, and both tables on the (timestamp, region) winner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xrh.active_active import SOURCE_SEQ, Stamp, is_tombstone, stamp_of
from xrh.aws import AwsClients
from xrh.config import Side, parse_config
from xrh.provision import destroy, provision

A, B = "us-east-1", "us-east-2"


def stamped(pk: str, ts: int, region: str, v: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "last_update_timestamp": {"N": str(ts)},
            "last_updater_region": {"S": region}, "v": {"S": v}}  # fmt: skip


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def scan(client: Any, table: str) -> dict[str, dict]:
    """The table's items without the applier's bookkeeping (its origin stream position)."""
    page = client.scan(TableName=table, ConsistentRead=True)
    assert "LastEvaluatedKey" not in page
    return {i["pk"]["S"]: {k: v for k, v in i.items() if k != SOURCE_SEQ} for i in page["Items"]}


def staging(client: Any, stream: str) -> list[dict]:
    out = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        it = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
        for _ in range(100):
            page = client.get_records(ShardIterator=it, Limit=1000)
            out += [json.loads(r["Data"]) for r in page["Records"]]
            if not page["Records"]:
                break
            it = page["NextShardIterator"]
    return out


def start(config: Any, side: str, run_dir: Path, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "xrh", "replicate", "--pipeline", "active-active", "--side", side,
        "--endpoint-url-a", config.endpoint_url_a, "--endpoint-url-b", config.endpoint_url_b,
        "--prefix", config.prefix, "--run-dir", str(run_dir), "--quiet-seconds", "1",
        "--drain-timeout", "60", "--poll-interval", "0.05", "--lease-seconds", "3",
        "--write-timeout", "1", "--max-clock-skew-ms", "0", "--max-seconds", "150",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_both_tables_end_on_the_winner_with_tombstones_and_nothing_back(endpoint, tmp_path):
    prefix = f"aa{os.getpid() % 10000}-{time.monotonic_ns() % 100000}"
    config = parse_config(
        ["--prefix", prefix, "--pipeline", "active-active", "--runs-dir", str(tmp_path / "runs")],
        environ={},
    ).with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
    provision(config)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    procs: list[subprocess.Popen] = []
    try:
        clients = AwsClients(config)
        da, db = clients.client("dynamodb", Side.A), clients.client("dynamodb", Side.B)
        table = f"{prefix}-items"
        procs = [start(config, s, run_dir, tmp_path / f"{s}.log") for s in ("a", "b")]

        # an equal-timestamp conflict: us-east-2 wins in both tables
        da.put_item(TableName=table, Item=stamped("tie", 1000, A, "a"))
        db.put_item(TableName=table, Item=stamped("tie", 1000, B, "b"))
        # a delete racing an older write from the other region
        da.put_item(TableName=table, Item=stamped("del", 2000, A, "x"))
        wait_for("del in B", lambda: "del" in scan(db, table))
        old = da.delete_item(TableName=table, Key={"pk": {"S": "del"}}, ReturnValues="ALL_OLD")
        assert stamp_of(old["Attributes"]).ts == 2000  # the delete's stamp is (2001, A)
        db.put_item(TableName=table, Item=stamped("del", 1500, B, "late"))
        # a local write older than what the table already held
        db.put_item(TableName=table, Item=stamped("old", 3000, B, "winner"))
        wait_for("old in A", lambda: "old" in scan(da, table))
        da.put_item(TableName=table, Item=stamped("old", 2500, A, "loser"))
        # an UpdateItem from B over A's version
        da.put_item(TableName=table, Item=stamped("upd", 4000, A, "put"))
        wait_for("upd in B", lambda: "upd" in scan(db, table))
        db.update_item(
            TableName=table, Key={"pk": {"S": "upd"}},
            UpdateExpression="SET last_update_timestamp = :t, last_updater_region = :r, v = :v "
            "REMOVE xrh_deleted",
            ExpressionAttributeValues={":t": {"N": "4100"}, ":r": {"S": B}, ":v": {"S": "u"}},
        )  # fmt: skip

        for proc in procs:
            proc.send_signal(signal.SIGUSR1)
        codes = [proc.wait(timeout=90) for proc in procs]
        logs = [(tmp_path / f"{s}.log").read_text() for s in ("a", "b")]
        assert codes == [0, 0], logs

        ta, tb = scan(da, table), scan(db, table)
        assert ta == tb
        assert stamp_of(ta["tie"]) == Stamp(1000, B) and ta["tie"]["v"] == {"S": "b"}
        assert is_tombstone(ta["del"]) and stamp_of(ta["del"]) == Stamp(2001, A)
        assert stamp_of(ta["old"]) == Stamp(3000, B) and ta["old"]["v"] == {"S": "winner"}
        assert stamp_of(ta["upd"]) == Stamp(4100, B) and ta["upd"]["v"] == {"S": "u"}

        ka, kb = clients.client("kinesis", Side.A), clients.client("kinesis", Side.B)
        into_a, into_b = staging(ka, f"{prefix}-staging"), staging(kb, f"{prefix}-staging")
        assert {r["origin"] for r in into_a} == {B} and {r["origin"] for r in into_b} == {A}
        for records in (into_a, into_b):  # no change forwarded twice from two positions
            seen: dict[tuple, set] = {}
            for r in records:
                seen.setdefault((r["pk"], tuple(r["stamp"])), set()).add(r["source"]["seq"])
            assert all(len(positions) == 1 for positions in seen.values()), records
        assert not any(r["pk"] == "old" and r["stamp"] == [2500, A] for r in into_b)  # the loser
        lag = [json.loads(line) for line in (run_dir / "replication-lag.jsonl").open()]
        assert {x["direction"] for x in lag} == {"a->b", "b->a"}
    finally:
        for proc in procs:
            stop(proc)
        if endpoint.alive():
            destroy(config)
