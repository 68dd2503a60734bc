"""Lease fencing: a poller frozen in the middle of a batch, past its lease, must not write the rest
of that batch once another poller took the shard and copied newer records of the same keys."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import pytest
from test_replicate_poller import produce, read_stream

from replicator.core.putrecords import Limits
from replicator.runners.cli import add_arguments, build
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side, add_common_options
from xrh.contracts import checkpoint_scope
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional


class FreezingSink:
    """Writes the first request, then freezes (a paused process) until thawed."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.requests = 0
        self.frozen = threading.Event()
        self.thaw = threading.Event()

    def put_records(self, stream, entries, guard=None):
        results = self.inner.put_records(stream, entries, guard)
        self.requests += 1
        if self.requests == 1:
            self.frozen.set()
            self.thaw.wait(timeout=60)
        return results


def poller(config: HarnessConfig, run_dir: Path, worker: str):
    parser = argparse.ArgumentParser()
    add_common_options(parser)
    add_arguments(parser)
    args = parser.parse_args(
        ["--side", "a", "--worker-id", worker, "--lease-seconds", "3", "--poll-interval", "0.05"]
    )
    built, files = build(args, config, run_dir, worker)
    built.replicator.sender.limits = Limits(25)  # a shard's batch takes several requests
    return built, files


def checkpoints(config: HarnessConfig) -> dict[str, int]:
    names = ResourceNames(config.prefix)
    items = (
        AwsClients(config)
        .client("dynamodb", Side.B)
        .query(
            TableName=names.checkpoint_table,
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "scope"},
            ExpressionAttributeValues={
                ":s": {"S": checkpoint_scope("kinesis", names.stream, config.region_a)}
            },
            ConsistentRead=True,
        )["Items"]
    )
    return {
        i["shardId"]["S"]: int(i["sequenceNumber"]["S"]) for i in items if "sequenceNumber" in i
    }


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_frozen_owner_writes_nothing_after_its_lease_was_taken(
    provisioned: HarnessConfig, tmp_path: Path
) -> None:
    config = provisioned
    stream = ResourceNames(config.prefix).stream
    clients = AwsClients(config)
    ka, kb = clients.client("kinesis", Side.A), clients.client("kinesis", Side.B)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    produce(ka, stream, 0, 400, keys=20)  # older values of keys 0..19

    first, first_files = poller(config, run_dir, "first")
    freezer = FreezingSink(first.replicator.sender.sink)
    first.replicator.sender.sink = freezer
    second, second_files = poller(config, run_dir, "second")
    threads = [threading.Thread(target=p.run, name=p.leases.worker_id) for p in (first, second)]
    threads[0].start()
    try:
        assert freezer.frozen.wait(timeout=20), "the first poller never sent a request"
        produce(ka, stream, 400, 400, keys=20)  # newer values of the same keys
        threads[1].start()  # takes the leases once they expire, copies old and new records

        def copied_everything() -> bool:
            target = {t for ts in read_stream(kb, stream).values() for t in ts}
            return {f"p-{i:06d}" for i in range(800)} <= target

        assert wait_for(copied_everything, 30), "the second poller did not copy everything"
        before = checkpoints(config)
        freezer.thaw.set()  # the first poller wakes up in the middle of its batch
        time.sleep(2.0)
    finally:
        freezer.thaw.set()
        for p in (first, second):
            p.request_stop()
        for t in threads:
            if t.ident is not None:  # started
                t.join(timeout=30)
        first_files.close()
        second_files.close()
    assert not any(t.is_alive() for t in threads)

    source, target = read_stream(ka, stream), read_stream(kb, stream)
    stale = {k: (target[k][-1], ts[-1]) for k, ts in source.items() if target[k][-1] != ts[-1]}
    assert not stale, f"keys left on an older value (target last, source last): {stale}"
    after = checkpoints(config)
    assert all(after[shard] >= seq for shard, seq in before.items()), (before, after)
    assert first.replicator.metrics.counters.get("leases_lost", 0) >= 1


def test_checkpoint_rows_refuse_a_lower_lease_counter(provisioned: HarnessConfig) -> None:
    from replicator.adapters.dynamodb import DynamoCheckpointStore
    from replicator.core.checkpoint import ShardCheckpoint

    names = ResourceNames(provisioned.prefix)
    store = DynamoCheckpointStore(
        AwsClients(provisioned).client("dynamodb", Side.B),
        names.checkpoint_table,
        checkpoint_scope("kinesis", names.stream, provisioned.region_a),
    )
    assert store.advance(ShardCheckpoint("s0", "100", lease_counter=9))
    assert not store.advance(ShardCheckpoint("s0", "200", lease_counter=7))  # a stale owner
    assert store.advance(ShardCheckpoint("s0", "300", lease_counter=10))
    assert store.advance(ShardCheckpoint("s0", "400"))  # no lease: not fenced, counter kept
    row = store.load()["s0"]
    assert (row.sequence_number, row.lease_counter) == ("400", 10)
