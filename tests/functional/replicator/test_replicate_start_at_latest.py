"""--start-at-latest: records older than the replicator are skipped, so it claims no watermark
(no claim for what was never read), and everything that arrives after its start is copied,
including what lands in the children of a reshard before the replicator reaches them."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from replicator_pipeline import Pipeline
from test_replicate_poller import poller_cmd, produce, read_stream, start, stop

from xrh.config import Side
from xrh.contracts import WATERMARK_SHARD_ID, checkpoint_scope

pytestmark = pytest.mark.functional


def test_start_at_latest_claims_nothing_and_loses_nothing_after_its_start(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    config, names, clients, ka, kb, run_dir = pipeline
    produce(ka, names.stream, 0, 200)  # history: skipped
    time.sleep(0.1)
    proc = start(poller_cmd(config, run_dir, "w", "a", "--start-at-latest"), tmp_path / "w.out")
    log = run_dir / "replicator-w.log"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            not log.exists() or log.read_text().count('"lease_taken"') < config.shards
        ):
            time.sleep(0.1)
        time.sleep(0.5)  # every shard has its iterator
        produce(ka, names.stream, 1000, 200)
        ka.update_shard_count(
            StreamName=names.stream, TargetShardCount=8, ScalingType="UNIFORM_SCALING"
        )
        produce(ka, names.stream, 2000, 200)  # into the children, before the poller gets there
        time.sleep(1.0)  # > the claim interval: a claim, if any, would have been published
        proc.send_signal(signal.SIGUSR1)
        code = proc.wait(timeout=60)
    finally:
        stop([proc])
    assert code == 0, (tmp_path / "w.out").read_text()

    target = {t for ts in read_stream(kb, names.stream).values() for t in ts}
    after_start = {f"p-{i:06d}" for i in (*range(1000, 1200), *range(2000, 2200))}
    assert after_start <= target, f"{len(after_start - target)} records after the start lost"
    assert not target & {f"p-{i:06d}" for i in range(200)}  # the history was skipped

    items = clients.client("dynamodb", Side.B).query(
        TableName=names.checkpoint_table,
        KeyConditionExpression="#s = :s",
        ExpressionAttributeNames={"#s": "scope"},
        ExpressionAttributeValues={
            ":s": {"S": checkpoint_scope("kinesis", names.stream, config.region_a)}
        },
        ConsistentRead=True,
    )["Items"]
    rows = {i["shardId"]["S"]: i for i in items}
    assert WATERMARK_SHARD_ID not in rows, rows.get(WATERMARK_SHARD_ID)
    skipped = [r for r in rows.values() if r.get("startedAtLatest", {}).get("BOOL")]
    assert len(skipped) == config.shards  # the shards open at the start, now closed parents
    assert all("shardWatermarkMs" not in r for r in skipped)
    claims = run_dir / "claims.jsonl"
    assert not claims.exists() or not claims.read_text().strip()
