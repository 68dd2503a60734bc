"""The embedded endpoint corrects moto where the harness would otherwise inherit its defects."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side, parse_config
from xrh.endpoint import EmbeddedEndpoint, answers, resolve_config
from xrh.errors import UsageError

WRITERS = 8
BATCHES_PER_WRITER = 20
RECORDS_PER_BATCH = 50


def _read_shard(kinesis, stream: str, shard_id: str) -> list[dict]:
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict] = []
    for _ in range(1000):
        page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
        records += page["Records"]
        iterator = page.get("NextShardIterator")
        if iterator is None or (not page["Records"] and page.get("MillisBehindLatest", 0) == 0):
            break
    return records


def test_concurrent_writers_into_one_shard_lose_nothing(endpoint: EmbeddedEndpoint) -> None:
    """Unpatched moto lost 68 of 8,000 acknowledged records this way."""
    clients = AwsClients(endpoint.config, max_pool_connections=WRITERS)
    kinesis = clients.client("kinesis", Side.A)
    kinesis.create_stream(StreamName="race", ShardCount=1)
    acknowledged: dict[str, bytes] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            for batch in range(BATCHES_PER_WRITER):
                entries = [
                    {"Data": f"{writer}-{batch}-{n}".encode(), "PartitionKey": "one-key"}
                    for n in range(RECORDS_PER_BATCH)
                ]
                answer = kinesis.put_records(StreamName="race", Records=entries)
                assert answer.get("FailedRecordCount", 0) == 0
                with lock:
                    for entry, result in zip(entries, answer["Records"], strict=True):
                        assert result["SequenceNumber"] not in acknowledged, (
                            "sequence number reused"
                        )
                        acknowledged[result["SequenceNumber"]] = entry["Data"]
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(acknowledged) == WRITERS * BATCHES_PER_WRITER * RECORDS_PER_BATCH

    shard_id = kinesis.list_shards(StreamName="race")["Shards"][0]["ShardId"]
    read = _read_shard(kinesis, "race", shard_id)
    numbers = [int(r["SequenceNumber"]) for r in read]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), (
        "not unique and increasing"
    )
    assert {r["SequenceNumber"]: r["Data"] for r in read} == acknowledged


def test_reshard_keeps_parent_records_and_closes_parent(endpoint: EmbeddedEndpoint) -> None:
    kinesis = AwsClients(endpoint.config).client("kinesis", Side.A)
    kinesis.create_stream(StreamName="reshard", ShardCount=1)
    before = [{"Data": f"before-{i}".encode(), "PartitionKey": str(i)} for i in range(40)]
    kinesis.put_records(StreamName="reshard", Records=before)
    parent = kinesis.list_shards(StreamName="reshard")["Shards"][0]["ShardId"]
    kinesis.split_shard(StreamName="reshard", ShardToSplit=parent, NewStartingHashKey=str(2**127))
    kinesis.put_records(
        StreamName="reshard",
        Records=[{"Data": f"after-{i}".encode(), "PartitionKey": str(i)} for i in range(40)],
    )
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName="reshard")["Shards"]}
    children = [s for s in shards.values() if s.get("ParentShardId") == parent]
    assert len(children) == 2
    assert "EndingSequenceNumber" in shards[parent]["SequenceNumberRange"]

    parent_records = _read_shard(kinesis, "reshard", parent)
    assert [r["Data"] for r in parent_records] == [e["Data"] for e in before]
    child_data = [
        r["Data"] for c in children for r in _read_shard(kinesis, "reshard", c["ShardId"])
    ]
    assert sorted(child_data) == sorted(f"after-{i}".encode() for i in range(40))


def test_closed_shard_read_to_its_end_returns_no_iterator(endpoint: EmbeddedEndpoint) -> None:
    kinesis = AwsClients(endpoint.config).client("kinesis", Side.A)
    kinesis.create_stream(StreamName="closing", ShardCount=2)
    kinesis.put_records(
        StreamName="closing", Records=[{"Data": b"x", "PartitionKey": str(i)} for i in range(20)]
    )
    first, second = (s["ShardId"] for s in kinesis.list_shards(StreamName="closing")["Shards"])
    kinesis.merge_shards(StreamName="closing", ShardToMerge=first, AdjacentShardToMerge=second)
    iterator = kinesis.get_shard_iterator(
        StreamName="closing", ShardId=first, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    page = kinesis.get_records(ShardIterator=iterator)
    assert page["Records"] and page.get("NextShardIterator") is None


def test_regions_are_separate_servers(endpoint: EmbeddedEndpoint) -> None:
    clients = AwsClients(endpoint.config)
    clients.client("kinesis", Side.A).create_stream(StreamName="only-in-a", ShardCount=1)
    assert "only-in-a" not in clients.client("kinesis", Side.B).list_streams()["StreamNames"]
    assert endpoint.url_of("a") != endpoint.url_of("b")
    assert endpoint.pid(Side.A) != endpoint.pid(Side.B)


def test_one_region_stops_and_restarts_alone(tmp_path: Path) -> None:
    config = parse_config(["--runs-dir", str(tmp_path)], environ={})
    with EmbeddedEndpoint(config, run_dir=tmp_path) as started:
        url_a, url_b = started.url_of("a"), started.url_of("b")
        assert (tmp_path / "endpoints.json").exists()
        assert resolve_config(config, tmp_path).endpoint_url_b == url_b
        started.stop_region(Side.B)
        assert answers(url_a) and not answers(url_b)
        started.start_region(Side.B)
        assert started.url_of("b") == url_b and answers(url_b)
        pids = [started.pid(Side.A), started.pid(Side.B)]
    assert not (tmp_path / "endpoints.json").exists()
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(UsageError, match="no embedded endpoint is running"):
        resolve_config(config, tmp_path)


def test_resolve_config_leaves_explicit_endpoints_alone() -> None:
    config: HarnessConfig = parse_config(["--endpoint-url", "http://127.0.0.1:4566"], environ={})
    assert resolve_config(config) is config
