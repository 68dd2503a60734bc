"""``AwsClients(max_attempts=1)`` sends a request once: a producer whose answer was lost must
record "unknown" and leave ONE copy, never have botocore resend it behind the ledger's back
(which verify would then see as a record looping back into its own region)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ConnectionClosedError

from xrh.aws import AwsClients
from xrh.config import Side
from xrh.resources import ResourceNames


def copies(client, stream: str) -> int:
    total = 0
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        total += len(client.get_records(ShardIterator=iterator, Limit=10_000)["Records"])
    return total


@pytest.mark.functional
def test_one_attempt_means_one_send_when_the_answer_is_lost(endpoint, provisioned):
    stream = ResourceNames(provisioned.prefix).stream
    once = AwsClients(provisioned, max_attempts=1).client("kinesis", Side.A)
    endpoint.set_faults("a:PutRecords:lost-answer=1.0", seed=1)
    try:
        with pytest.raises(ConnectionClosedError):
            once.put_records(StreamName=stream, Records=[{"Data": b"x", "PartitionKey": "k"}])
    finally:
        endpoint.set_faults(None)
    reader = AwsClients(provisioned).client("kinesis", Side.A)
    assert copies(reader, stream) == 1
