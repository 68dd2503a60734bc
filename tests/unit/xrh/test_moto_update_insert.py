"""An UpdateItem that creates its item streams one INSERT with the final image (as on AWS), not
moto's extra key-only INSERT first. Built on a subclass of moto's backend, so this process's
moto stays unpatched."""

from __future__ import annotations

import boto3
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from xrh.endpoint.moto_patches import one_insert_per_update


def _backend(patched: bool) -> DynamoDBBackend:
    class Backend(DynamoDBBackend):
        if patched:
            update_item = one_insert_per_update(DynamoDBBackend.update_item)

    backend = Backend("us-east-1", "123456789012")
    backend.create_table(
        "t", schema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        attr=[{"AttributeName": "pk", "AttributeType": "S"}], throughput=None,
        billing_mode="PAY_PER_REQUEST", indexes=None, global_indexes=None,
        streams={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}, sse_specification=None,
        tags=None, deletion_protection_enabled=False, warm_throughput=None,
    )  # fmt: skip
    return backend


def _events(backend: DynamoDBBackend) -> list[tuple[str, str, dict]]:
    shard = backend.get_table("t").stream_shard
    return [(r.record["eventName"], r.record["dynamodb"]["SequenceNumber"],
             r.record["dynamodb"].get("NewImage", {})) for r in shard.items]  # fmt: skip


def _write(backend: DynamoDBBackend) -> None:
    backend.update_item("t", {"pk": {"S": "1"}}, "SET a = :a", {}, {":a": {"N": "5"}})
    backend.update_item("t", {"pk": {"S": "1"}}, "SET a = :a", {}, {":a": {"N": "6"}})


def test_an_update_that_creates_its_item_streams_one_insert() -> None:
    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1")
        plain, patched = _backend(False), _backend(True)
        _write(plain)
        _write(patched)
    assert [e[0] for e in _events(plain)] == ["INSERT", "INSERT", "MODIFY"]  # moto's extra one
    events = _events(patched)
    assert [e[0] for e in events] == ["INSERT", "MODIFY"]
    assert events[0][2] == {"pk": {"S": "1"}, "a": {"N": "5"}}
    first = int(patched.get_table("t").stream_shard.starting_sequence_number)
    assert [int(e[1]) for e in events] == [first, first + 1]  # positions and numbers agree
