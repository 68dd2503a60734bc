"""``xrh replicate --behaviour sample`` on the embedded endpoint: the sample's copy logic under the
same poller, labelled in its log and metrics, with its per-record checkpoint in the watermark
row verify observes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from replicator_pipeline import Pipeline
from test_replicate_poller import poller_cmd, produce, read_stream, start, stop

from xrh.config import Side
from xrh.contracts import WATERMARK_SHARD_ID, checkpoint_scope, parse_iso_ms

pytestmark = pytest.mark.functional


def test_sample_behaviour_copies_per_record_and_says_so(pipeline: Pipeline, tmp_path: Path) -> None:
    config, names, clients, ka, kb, run_dir = pipeline
    produce(ka, names.stream, 0, 200)
    cmd = [*poller_cmd(config, run_dir, "s1", "a", "--until-drained"), "--behaviour", "sample"]
    proc = start(cmd, tmp_path / "s1.out")
    try:
        code = proc.wait(timeout=60)
    finally:
        stop([proc])
    out = (tmp_path / "s1.out").read_text()
    assert code == 0, out
    assert "sample behaviour" in out

    target = {t for ts in read_stream(kb, names.stream).values() for t in ts}
    assert {f"p-{i:06d}" for i in range(200)} <= target

    row = clients.client("dynamodb", Side.B).get_item(
        TableName=names.checkpoint_table,
        Key={
            "scope": {"S": checkpoint_scope("kinesis", names.stream, config.region_a)},
            "shardId": {"S": WATERMARK_SHARD_ID},
        },
        ConsistentRead=True,
    )["Item"]
    assert int(row["watermarkMs"]["N"]) == parse_iso_ms(row["watermark"]["S"])
    assert row["updatedBy"]["S"] == "s1"
    assert not (run_dir / "claims.jsonl").exists()  # no stream watermark of its own

    metrics = json.loads((run_dir / "replicator-metrics.json").read_text())
    assert metrics["behaviour"].startswith("sample behaviour")
    worker = metrics["workers"]["s1"]
    assert worker["counters"]["records_copied"] == 200
    calls = worker["aws_calls"]
    assert calls["target_puts"] == 200  # one PutRecord per record
    assert calls["checkpoint"] >= 200  # one checkpoint write per record (+ positions)
    lines = [json.loads(x) for x in (run_dir / "replicator-s1.log").read_text().splitlines()]
    events = [x for x in lines if "event" in x]
    assert events and all(x["behaviour"] == "sample behaviour" for x in events)
