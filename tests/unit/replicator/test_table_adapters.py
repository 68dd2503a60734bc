"""boto3 adapters of the table pipelines without a network: BatchWriteItem over canned HTTP
answers (guard at before-send, UnprocessedItems, error kinds), the stream reader over a fake
client (pagination, parents, positions, expired and trimmed iterators), the bootstrap row."""

from __future__ import annotations

import datetime as dt
import json

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from replicator.adapters.dynamodb_bootstrap import DynamoBootstrapStore
from replicator.adapters.streams import DynamoStreamReader, IteratorExpired, TrimmedData
from replicator.adapters.table import DynamoTableWriter
from replicator.core.changes import ChangeEvent
from replicator.core.table_writes import WriteRequest
from replicator.errors import (
    InvalidRequestError,
    LeaseLost,
    ReplicatorUsageError,
    RetryableRequestError,
    TerminalRequestError,
)


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_):
        yield self.body


def canned_dynamodb(answers: list[tuple[int, dict]], sent: list[dict]):
    """A real botocore DynamoDB client whose HTTP answers are ``answers`` (no network)."""
    client = botocore.session.Session().create_client(
        "dynamodb", region_name="us-west-2", endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )  # fmt: skip
    pending = list(answers)

    def answer(request, **_):
        sent.append(json.loads(request.body))
        status, body = pending.pop(0)
        headers = {"content-type": "application/x-amz-json-1.0"}
        return AWSResponse(request.url, status, headers, _Body(json.dumps(body).encode()))

    return client, answer


def put(k: str) -> WriteRequest:
    return WriteRequest({"pk": {"S": k}}, {"pk": {"S": k}, "v": {"N": "1"}})


def test_batch_write_sends_puts_and_deletes_and_maps_unprocessed_back() -> None:
    sent: list[dict] = []
    unprocessed = {"items": [{"PutRequest": {"Item": {"pk": {"S": "b"}, "v": {"N": "1"}}}},
                             {"DeleteRequest": {"Key": {"pk": {"S": "c"}}}}]}  # fmt: skip
    client, answer = canned_dynamodb([(200, {"UnprocessedItems": unprocessed})], sent)
    writer = DynamoTableWriter(client)
    client.meta.events.register("before-send.dynamodb.BatchWriteItem", answer)
    delete_c = WriteRequest({"pk": {"S": "c"}}, None)
    requests = [put("a"), put("b"), delete_c]
    left = writer.batch_write("items", requests)
    assert left == [requests[1], delete_c] and writer.calls == 1
    assert sent[0]["RequestItems"]["items"][2] == {"DeleteRequest": {"Key": {"pk": {"S": "c"}}}}


def test_the_guard_runs_at_before_send_and_a_refusal_sends_nothing() -> None:
    sent: list[dict] = []
    client, answer = canned_dynamodb([(200, {"UnprocessedItems": {}})], sent)
    writer = DynamoTableWriter(client)  # registered first: runs before the canned answer
    client.meta.events.register("before-send.dynamodb.BatchWriteItem", answer)

    def refuse() -> None:
        raise LeaseLost("taken")

    with pytest.raises(LeaseLost):
        writer.batch_write("items", [put("a")], guard=refuse)
    assert sent == []
    assert writer.batch_write("items", [put("a")], guard=lambda: None) == []
    assert len(sent) == 1


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "ProvisionedThroughputExceededException", RetryableRequestError),
        (400, "ThrottlingException", RetryableRequestError),
        (400, "RequestLimitExceeded", RetryableRequestError),
        (500, "InternalServerError", RetryableRequestError),
        (400, "ValidationException", InvalidRequestError),
        (400, "ResourceNotFoundException", TerminalRequestError),
        (400, "AccessDeniedException", TerminalRequestError),
    ],
)
def test_errors_are_classified(status: int, code: str, kind: type) -> None:
    sent: list[dict] = []
    body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "no"}
    client, answer = canned_dynamodb([(status, body)], sent)
    writer = DynamoTableWriter(client)
    client.meta.events.register("before-send.dynamodb.BatchWriteItem", answer)
    with pytest.raises(kind) as caught:
        writer.batch_write("items", [put("a")])
    assert caught.value.code == code


def test_bootstrap_state_reads_the_row_consistently() -> None:
    sent: list[dict] = []
    client, answer = canned_dynamodb(
        [(200, {"Item": {"state": {"S": "copying"}}}), (200, {})], sent
    )
    client.meta.events.register("before-send.dynamodb.GetItem", answer)
    read = DynamoBootstrapStore(client, "cp", "dynamodb:app-items:us-east-1").state
    assert read() == "copying" and read() is None
    assert sent[0]["ConsistentRead"] is True
    assert sent[0]["Key"] == {"scope": {"S": "dynamodb:app-items:us-east-1"},
                              "shardId": {"S": "#bootstrap"}}  # fmt: skip


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "x"}}, "GetRecords")


class FakeStreams:
    def __init__(self) -> None:
        self.iterator_calls: list[dict] = []
        self.fail: ClientError | None = None

    def describe_stream(self, **kwargs):
        if "ExclusiveStartShardId" not in kwargs:
            return {"StreamDescription": {"Shards": [
                {"ShardId": "s-1", "SequenceNumberRange": {"StartingSequenceNumber": "1",
                                                           "EndingSequenceNumber": "9"}},
            ], "LastEvaluatedShardId": "s-1"}}  # fmt: skip
        return {"StreamDescription": {"Shards": [
            {"ShardId": "s-2", "ParentShardId": "s-1",
             "SequenceNumberRange": {"StartingSequenceNumber": "10"}}]}}  # fmt: skip

    def get_shard_iterator(self, **kwargs):
        self.iterator_calls.append(kwargs)
        if self.fail is not None:
            raise self.fail
        return {"ShardIterator": "it-1"}

    def get_records(self, **kwargs):
        if self.fail is not None:
            raise self.fail
        record = {"eventName": "REMOVE", "dynamodb": {
            "Keys": {"pk": {"S": "a"}}, "OldImage": {"pk": {"S": "a"}},
            "SequenceNumber": "12", "ApproximateCreationDateTime": dt.datetime(2024, 1, 1)}}  # fmt: skip
        return {"Records": [record], "NextShardIterator": "it-2", "limit": kwargs["Limit"]}


class FakeTables:
    def __init__(self, arn: str | None = "arn:stream") -> None:
        self.arn = arn
        self.calls = 0

    def describe_table(self, TableName):
        self.calls += 1
        table = {"TableName": TableName}
        if self.arn:
            table.update(LatestStreamArn=self.arn, StreamSpecification={"StreamEnabled": True})
        return {"Table": table}


def test_stream_reader_lists_pages_positions_and_reads() -> None:
    streams, tables = FakeStreams(), FakeTables()
    reader = DynamoStreamReader(streams, tables, "app-items")
    shards = reader.list_shards()
    assert [(s.shard_id, s.parent_ids, s.closed) for s in shards] == [
        ("s-1", (), True),
        ("s-2", ("s-1",), False),
    ]
    reader.iterator("s-2", None)
    reader.iterator("s-2", "12")
    assert streams.iterator_calls[0]["ShardIteratorType"] == "TRIM_HORIZON"
    assert streams.iterator_calls[1]["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    assert streams.iterator_calls[1]["SequenceNumber"] == "12"
    result = reader.read("s-2", "it-1", 10_000)
    (change,) = result.records
    assert change.event is ChangeEvent.REMOVE and change.shard_id == "s-2"
    assert result.next_iterator == "it-2" and result.millis_behind_latest is None
    assert tables.calls == 1 and reader.calls == 6


def test_stream_reader_refuses_latest_and_timestamps_and_tables_without_stream() -> None:
    reader = DynamoStreamReader(FakeStreams(), FakeTables(), "app-items")
    with pytest.raises(ReplicatorUsageError, match="TRIM_HORIZON"):
        reader.iterator("s-1", None, latest=True)
    with pytest.raises(ReplicatorUsageError, match="bootstrap"):
        reader.iterator("s-1", None, at_timestamp_ms=5)
    with pytest.raises(ReplicatorUsageError, match="no stream"):
        DynamoStreamReader(FakeStreams(), FakeTables(None), "t").list_shards()


def test_expired_and_trimmed_positions_are_named() -> None:
    streams = FakeStreams()
    reader = DynamoStreamReader(streams, FakeTables(), "app-items")
    streams.fail = _error("ExpiredIteratorException")
    with pytest.raises(IteratorExpired, match="again from the checkpoint"):
        reader.read("s-1", "it", 100)
    streams.fail = _error("TrimmedDataAccessException")
    with pytest.raises(TrimmedData, match="bootstrap the target again"):
        reader.iterator("s-1", "5")
    streams.fail = _error("InternalServerError")
    with pytest.raises(ClientError):
        reader.read("s-1", "it", 100)
