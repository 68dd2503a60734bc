"""Live apply through the poller against the embedded endpoint: A's items table changes (puts,
updates, deletes) replayed from its stream into B's table, with region B leaving 30 % of each
BatchWriteItem unprocessed; B ends equal to A and the checkpoint covers the stream."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from table_pipeline import provisioned_tables, scan

from replicator.adapters.dynamodb import DynamoCheckpointStore
from replicator.adapters.dynamodb_bootstrap import DynamoBootstrapStore
from replicator.adapters.leases import LeaseTable
from replicator.adapters.streams import DynamoStreamReader
from replicator.adapters.table import DynamoTableWriter
from replicator.core.putrecords import Backoff
from replicator.core.table_apply import BootstrapGate, TableApplier
from replicator.core.table_writes import BatchWriter
from replicator.runners.poller import NoClaims, Poller, PollerSettings
from xrh.aws import AwsClients
from xrh.config import HarnessConfig, Side
from xrh.contracts import BOOTSTRAP_SHARD_ID, checkpoint_scope, iso_ms
from xrh.endpoint import EmbeddedEndpoint
from xrh.resources import ResourceNames

pytestmark = pytest.mark.functional


@pytest.fixture
def tables(endpoint: EmbeddedEndpoint, tmp_path: Path) -> Iterator[HarnessConfig]:
    """The dynamodb pipeline provisioned in both regions with a unique prefix."""
    yield from provisioned_tables(endpoint, tmp_path, "ta")


def test_stream_applied_through_the_poller_with_unprocessed_items(
    endpoint: EmbeddedEndpoint, tables: HarnessConfig
) -> None:
    names = ResourceNames(tables.prefix)
    table = names.items_table
    clients = AwsClients(tables, max_attempts=1, max_pool_connections=8)
    da, db = clients.client("dynamodb", Side.A), clients.client("dynamodb", Side.B)
    rng = random.Random(11)
    for i in range(400):  # puts, updates and deletes over 60 keys, as a workload would
        pk = {"S": str(rng.randrange(60))}
        roll = rng.random()
        if roll < 0.15:
            da.delete_item(TableName=table, Key={"pk": pk})
        elif roll < 0.5:
            da.update_item(
                TableName=table, Key={"pk": pk}, UpdateExpression="SET n = :n, commitTimestamp = :c",
                ExpressionAttributeValues={":n": {"N": str(i)}, ":c": {"S": iso_ms(int(time.time() * 1000))}},
            )  # fmt: skip
        else:
            item = {"pk": pk, "v": {"N": str(i)}, "blob": {"B": bytes([i % 256]) * 8},
                    "commitTimestamp": {"S": iso_ms(int(time.time() * 1000))}}  # fmt: skip
            da.put_item(TableName=table, Item=item)
    scope = checkpoint_scope("dynamodb", table, tables.region_a)
    db.put_item(
        TableName=names.checkpoint_table,
        Item={"scope": {"S": scope}, "shardId": {"S": BOOTSTRAP_SHARD_ID},
              "state": {"S": "complete"}},
    )  # fmt: skip
    sink = DynamoTableWriter(db)
    applier = TableApplier(
        table=table, source_region=tables.region_a, target_region=tables.region_b,
        writer=BatchWriter(sink, table, backoff=Backoff(base=0.01, cap=0.1, max_attempts=20),
                           max_in_flight=4),
        checkpoints=DynamoCheckpointStore(db, names.checkpoint_table, scope, owner="t"),
        dead_letters=None, clock_ms=lambda: int(time.time() * 1000),
        gate=BootstrapGate(DynamoBootstrapStore(db, names.checkpoint_table, scope).state),
    )  # fmt: skip
    poller = Poller(
        reader=DynamoStreamReader(clients.client("dynamodbstreams", Side.A), da, table),  # type: ignore[arg-type]
        leases=LeaseTable(da, names.lease_table, table, "w1"),
        replicator=applier,
        checkpoints=applier.checkpoints,  # type: ignore[arg-type]
        publisher=NoClaims(),
        settings=PollerSettings(
            batch_limit=100,
            poll_interval_s=0.05,
            quiet_s=0.5,
            drain_timeout_s=30,
            until_drained=True,
            lease_duration_s=6.0,
        ),  # fmt: skip
    )
    endpoint.set_faults("b:BatchWriteItem:partial=0.3", seed=5)
    try:
        code = poller.run()
    finally:
        endpoint.set_faults(None)
        applier.close()
    assert code == 0, poller.exit_reason
    assert scan(db, table) == scan(da, table)
    c = applier.metrics.counters
    stream = clients.client("dynamodbstreams", Side.A)
    arn = da.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    (shard,) = stream.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    records = stream.get_records(
        ShardIterator=stream.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
    )["Records"]
    # moto writes two INSERT records for an UpdateItem that creates an item, and one for a
    # write that changes nothing: more records than calls
    assert c["changes_in"] == c["changes_applied"] == len(records) >= 300
    assert c["unprocessed_retries"] > 0 and c["failed_batches"] == 0
    assert c["squashed"] > 0 and c["write_calls"] < 400 / 5
    (row,) = [r for r in applier.checkpoints.load().values() if r.sequence_number]
    assert row.sequence_number == records[-1]["dynamodb"]["SequenceNumber"]  # the stream's end
    assert applier.metrics.snapshot()["apply_lag_ms"]["count"] == len(records)
