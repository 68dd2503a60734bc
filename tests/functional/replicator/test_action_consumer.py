"""The action-log consumers against the embedded endpoint: real actions put to ``{prefix}-actions``
in A, ``xrh replicate --pipeline action-log`` run as a process until drained, and each table
held against the fold of the log (ADD counters included): the fast consumer into A, then the
lazy one into B under a rate limit. A second fast run over the same log (its checkpoints
deleted: a crash before every checkpoint) leaves A's counters as they were."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from table_pipeline import scan

from xrh.action_log import LAG_FILE, action_partition_key
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side, parse_config
from xrh.endpoint import EmbeddedEndpoint
from xrh.provision import destroy, provision
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional


@pytest.fixture
def actions(endpoint: EmbeddedEndpoint, tmp_path: Path) -> Iterator[HarnessConfig]:
    prefix = f"al{os.getpid() % 10000}-{time.monotonic_ns() % 100000}"
    config = parse_config(
        ["--pipeline", "action-log", "--prefix", prefix, "--runs-dir", str(tmp_path / "runs")],
        environ={},
    ).with_endpoints(endpoint.url_of("a"), endpoint.url_of("b"))
    provision(config)
    yield config
    if endpoint.alive():
        destroy(config)


def log_of(rng: random.Random, n: int, keys: int) -> list[dict]:
    docs = []
    for i in range(n):
        k = rng.randrange(keys)
        pk, roll = str(k), rng.random()
        stamp = {"trace": f"t-{i}", "commitTimestamp": "2026-01-01T00:00:00.000Z"}
        if roll < 0.08:
            doc = {"Action": "DeleteItem", "Data": {"pk": pk}}
        elif roll < 0.2:
            doc = {"Action": "PutItem", "Data": {"pk": pk, "v": i, "f": i / 8, "l": [1, "x"]}}
        elif roll < 0.28:
            block = k // 25 * 25
            ks = rng.sample(range(block, block + 25), 2)
            doc = {"Action": "BatchWrite", "Data": [{"PutItem": {"pk": str(ks[0]), "v": i}},
                                                     {"DeleteItem": {"pk": str(ks[1])}}]}  # fmt: skip
        else:
            doc = {"Action": "UpdateItem",
                   "Data": {"pk": pk, "Add": {"count": rng.randrange(1, 4)}, "Set": {"s": f"s{i}"}}}  # fmt: skip
        docs.append({**doc, **stamp})
    return docs


def fold(docs: list[dict]) -> dict[str, dict]:
    table: dict[str, dict] = {}

    def one(kind: str, data: dict) -> None:
        if kind == "PutItem":
            table[data["pk"]] = dict(data)
        elif kind == "DeleteItem":
            table.pop(data["pk"], None)
        else:
            item = table.setdefault(data["pk"], {"pk": data["pk"]})
            item.update(data.get("Set", {}))
            for a, n in data.get("Add", {}).items():
                item[a] = item.get(a, 0) + n

    for doc in docs:
        requests = doc["Data"] if doc["Action"] == "BatchWrite" else [{doc["Action"]: doc["Data"]}]
        for request in requests:
            ((kind, data),) = request.items()
            one(kind, data)
    return table


def plain(items: dict[str, dict]) -> dict[str, dict]:
    def value(v):
        ((kind, x),) = v.items()
        if kind == "N":
            return int(x) if x.lstrip("-").isdigit() else float(x)
        if kind == "L":
            return [value(e) for e in x]
        return x

    return {
        pk: {k: value(v) for k, v in item.items() if not k.startswith("xrh_")}
        for pk, item in items.items()
    }


def consume(config: HarnessConfig, run_dir: Path, log: Path, *extra: str) -> str:
    cmd = [
        sys.executable, "-m", "xrh", "replicate", "--pipeline", "action-log",
        "--endpoint-url-a", config.endpoint_url_a, "--endpoint-url-b", config.endpoint_url_b,
        "--prefix", config.prefix, "--run-dir", str(run_dir), "--until-drained",
        "--quiet-seconds", "1", "--drain-timeout", "60", "--poll-interval", "0.05",
        "--lease-seconds", "3", "--write-timeout", "1", "--max-clock-skew-ms", "0", *extra,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    text = log.read_text()
    assert code == 0, text
    return text


def test_fast_and_lazy_consumers_leave_the_fold_of_the_log(
    actions: HarnessConfig, tmp_path: Path
) -> None:
    names = ResourceNames(actions.prefix)
    clients = AwsClients(actions)
    ka = clients.client("kinesis", Side.A)
    docs = log_of(random.Random(5), 600, 60)
    for start in range(0, len(docs), 200):
        entries = [
            {"Data": json.dumps(d).encode(), "PartitionKey": action_partition_key(int(
                (d["Data"][0]["PutItem"] if d["Action"] == "BatchWrite" else d["Data"])["pk"]))}
            for d in docs[start : start + 200]
        ]  # fmt: skip
        response = ka.put_records(StreamName=names.actions_stream, Records=entries)
        assert response["FailedRecordCount"] == 0
    # A record that is not an action: dead-lettered, never blocks its shard.
    ka.put_record(StreamName=names.actions_stream, Data=b"not an action", PartitionKey="g0")
    expected = fold(docs)
    assert any(item.get("count", 0) > 3 for item in expected.values())
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    out = consume(actions, run_dir, tmp_path / "fast.out", "--consumer", "fast")
    da = clients.client("dynamodb", Side.A)
    assert plain(scan(da, names.items_table)) == expected, out
    assert "fast consumer" in out and "1 dead-lettered" in out

    # Every checkpoint forgotten (a crash before each): the whole log again, nothing doubled.
    rows = da.scan(TableName=names.checkpoint_table)["Items"]
    for row in rows:
        da.delete_item(TableName=names.checkpoint_table,
                       Key={"scope": row["scope"], "shardId": row["shardId"]})  # fmt: skip
    consume(actions, run_dir, tmp_path / "fast2.out", "--side", "a")
    assert plain(scan(da, names.items_table)) == expected

    started = time.monotonic()
    out = consume(actions, run_dir, tmp_path / "lazy.out", "--side", "b", "--max-rate", "400")
    took = time.monotonic() - started
    db = clients.client("dynamodb", Side.B)
    assert plain(scan(db, names.items_table)) == expected, out
    assert took >= 601 / 400 - 1.0  # (a burst of one second's worth is free)
    workers = json.loads((run_dir / "replicator-metrics.json").read_text())["workers"]
    lazy = [w for name, w in workers.items() if name.startswith("lazy-")]
    assert lazy and lazy[0]["counters"]["rate_waited_ms"] > 0 and lazy[0]["max_rate"] == 400
    lines = [json.loads(x) for x in (run_dir / LAG_FILE).read_text().splitlines()]
    assert {x["consumer"] for x in lines} == {"fast", "lazy"}
    assert any(x["applied_arrival_ms"] is not None for x in lines if x["consumer"] == "lazy")
