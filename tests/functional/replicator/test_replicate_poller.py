"""Two poller processes replicate A -> B across a reshard: nothing lost, per-key order kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.contracts import WatermarkClaim, iso_ms
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional


def produce(client, stream: str, start: int, count: int, keys: int = 40) -> None:
    batch = []
    for i in range(start, start + count):
        key = i % keys
        payload = {
            "key": key,
            "commitTimestamp": iso_ms(int(time.time() * 1000)),
            "trace": f"p-{i:06d}",
        }
        batch.append({"PartitionKey": str(key), "Data": json.dumps(payload).encode()})
        if len(batch) == 250:
            response = client.put_records(StreamName=stream, Records=batch)
            assert response.get("FailedRecordCount", 0) == 0
            batch = []
    if batch:
        client.put_records(StreamName=stream, Records=batch)


def read_stream(client, stream: str) -> dict[str, list[str]]:
    """Per partition key, traces in stream order (parents before children)."""
    shards = client.list_shards(StreamName=stream)["Shards"]
    done: set[str] = set()
    per_key: dict[str, list[str]] = {}
    while len(done) < len(shards):
        for s in shards:
            sid = s["ShardId"]
            parents = {s.get("ParentShardId"), s.get("AdjacentParentShardId")} - {None}
            if sid in done or not parents <= done:
                continue
            it = client.get_shard_iterator(
                StreamName=stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for _ in range(1000):
                r = client.get_records(ShardIterator=it, Limit=10000)
                for rec in r["Records"]:
                    per_key.setdefault(rec["PartitionKey"], []).append(
                        json.loads(rec["Data"])["trace"]
                    )
                it = r.get("NextShardIterator")
                if it is None or (not r["Records"] and r.get("MillisBehindLatest", 0) == 0):
                    break
            done.add(sid)
    return per_key


def first_arrivals(traces: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for t in traces:
        seen.setdefault(t, None)
    return list(seen)


def poller_cmd(
    config: HarnessConfig, run_dir: Path, worker: str, side: str = "a", *extra: str
) -> list[str]:
    return [
        sys.executable, "-m", "replicator.runners.cli",
        "--endpoint-url-a", config.endpoint_url_a, "--endpoint-url-b", config.endpoint_url_b,
        "--prefix", config.prefix, "--side", side, "--run-dir", str(run_dir),
        "--worker-id", worker, "--quiet-seconds", "2", "--drain-timeout", "45",
        "--lease-seconds", "3", "--write-timeout", "1.5", "--max-clock-skew-ms", "0",
        "--poll-interval", "0.05", "--max-commit-delay-ms", "2000",
        "--watermark-margin-ms", "200", *extra,
    ]  # fmt: skip


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_two_pollers_across_a_reshard_lose_nothing_and_keep_key_order(
    provisioned: HarnessConfig, tmp_path: Path
) -> None:
    config = provisioned
    stream = ResourceNames(config.prefix).stream
    clients = AwsClients(config)
    ka, kb = clients.client("kinesis", Side.A), clients.client("kinesis", Side.B)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    procs = [
        start(poller_cmd(config, run_dir, "w1", "a", "--until-drained"), tmp_path / "w1.out"),
        start(poller_cmd(config, run_dir, "w2", "a", "--until-drained"), tmp_path / "w2.out"),
    ]
    try:
        produce(ka, stream, 0, 1500)
        time.sleep(1.0)
        ka.update_shard_count(StreamName=stream, TargetShardCount=8, ScalingType="UNIFORM_SCALING")
        producer = threading.Thread(target=produce, args=(ka, stream, 1500, 1500))
        producer.start()
        producer.join(timeout=60)
        codes = [p.wait(timeout=60) for p in procs]
    finally:
        stop(procs)
    logs = "\n".join((tmp_path / f"{w}.out").read_text() for w in ("w1", "w2"))
    assert codes == [0, 0], logs

    source, target = read_stream(ka, stream), read_stream(kb, stream)
    assert sum(map(len, source.values())) == 3000
    missing = {t for ts in source.values() for t in ts} - {t for ts in target.values() for t in ts}
    assert not missing, sorted(missing)[:10]
    for key, traces in source.items():
        assert first_arrivals(target[key]) == traces, key

    metrics = json.loads((run_dir / "replicator-metrics.json").read_text())
    assert set(metrics["workers"]) == {"w1", "w2"}
    assert metrics["totals"]["records_copied"] >= 3000
    copied_by = [w["counters"]["records_copied"] for w in metrics["workers"].values()]
    assert all(c > 0 for c in copied_by), copied_by  # both pollers shared the work
    claims = [
        WatermarkClaim.from_line(x) for x in (run_dir / "claims.jsonl").read_text().splitlines()
    ]
    assert claims and all(c.source_region == config.region_a for c in claims)
    marks = [c.watermark_ms for c in sorted(claims, key=lambda c: c.claimed_at_ms)]
    assert marks == sorted(marks)
