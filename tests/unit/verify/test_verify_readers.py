"""Readers against scriptable fakes: lineage, paging, throttling, expiry, deadline, scan."""

from __future__ import annotations

import base64
import json

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from verify_fakes import FakeKinesis, client_error, rec

from verify.errors import EndpointUnreachable
from verify.kinesis_reader import Backoff, arrival_ms, list_shards, raw_get_records, read_stream
from verify.table_reader import scan_table


def lineage():
    return FakeKinesis(
        {
            "shardId-2": ("shardId-0", False, [rec(20), rec(21)]),
            "shardId-0": (None, True, [rec(1), rec(2), rec(3)]),
            "shardId-1": (None, False, []),
        }
    )


def test_list_shards_pages_and_orders_parents_first():
    fake = lineage()
    shards = list_shards(fake, "s")
    assert [s.shard_id for s in shards] == ["shardId-0", "shardId-1", "shardId-2"]
    assert shards[2].generation == 1 and shards[0].closed and not shards[1].closed
    assert fake.list_calls[0] == {"StreamName": "s"}
    assert all("StreamName" not in c for c in fake.list_calls[1:])


def test_reads_every_shard_to_the_end():
    got = []
    stats = read_stream(lineage(), "s", got.append, deadline=float("inf"))
    assert [r.sequence_number for r in got] == ["1", "2", "3", "20", "21"]
    assert got[3].generation == 1
    assert got[0].arrival_ms == 1_700_000_001_000
    assert stats.complete and stats.records == 5
    assert stats.per_shard == {"shardId-0": 3, "shardId-1": 0, "shardId-2": 2}


def test_more_threads_read_shards_concurrently_each_in_order():
    got = []
    stats = read_stream(lineage(), "s", got.append, deadline=float("inf"), max_threads=3)
    per_shard = {}
    for r in got:
        per_shard.setdefault(r.shard_id, []).append(r.sequence_number)
    assert per_shard == {"shardId-0": ["1", "2", "3"], "shardId-2": ["20", "21"]}
    assert stats.complete and stats.records == 5


def test_throttling_backs_off_with_the_given_sleep():
    fake = lineage()
    err = "ProvisionedThroughputExceededException"
    fake.faults = {1: client_error(err), 2: client_error(err), 3: client_error(err)}
    slept = []
    got = []
    stats = read_stream(
        fake, "s", got.append, deadline=float("inf"), sleep=slept.append, backoff=Backoff(0.1, 5)
    )
    assert slept == [0.1, 0.2, 0.4]
    assert stats.throttles == 3 and len(got) == 5


def test_expired_iterator_resumes_after_the_last_record():
    fake = lineage()
    fake.faults = {2: client_error("ExpiredIteratorException")}
    got = []
    stats = read_stream(fake, "s", got.append, deadline=float("inf"))
    assert [r.sequence_number for r in got] == ["1", "2", "3", "20", "21"]
    assert stats.expired_iterators == 1


def test_deadline_leaves_shards_unfinished():
    ticks = iter(range(100))
    got = []
    stats = read_stream(lineage(), "s", got.append, deadline=3, clock=lambda: next(ticks))
    assert not stats.complete
    assert "shardId-2" in stats.unfinished


def test_connection_failure_is_endpoint_unreachable():
    fake = lineage()
    fake.faults = {1: EndpointConnectionError(endpoint_url="http://127.0.0.1:1")}
    with pytest.raises(EndpointUnreachable, match="not reachable"):
        read_stream(fake, "s", lambda r: None, deadline=float("inf"))


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_):
        yield self.body


def canned_kinesis(answers: list[tuple[int, dict]]):
    """A real botocore Kinesis client whose HTTP answers are ``answers`` (no network)."""
    client = botocore.session.Session().create_client(
        "kinesis", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )  # fmt: skip
    pending = list(answers)

    def answer(request, **_):
        status, body = pending.pop(0)
        headers = {"content-type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, status, headers, _Body(json.dumps(body).encode()))

    client.meta.events.register("before-send.kinesis.GetRecords", answer)
    return client


def test_raw_get_records_parses_the_wire_form_and_leaves_other_calls_to_botocore():
    page = {
        "Records": [
            {"SequenceNumber": "49", "PartitionKey": "k", "ApproximateArrivalTimestamp":
             1_700_000_000.123, "Data": base64.b64encode(b'{"trace": "t-1"}').decode()},
        ],
        "NextShardIterator": "next", "MillisBehindLatest": 0,
    }  # fmt: skip
    client = canned_kinesis([(200, page), (200, page)])
    get = raw_get_records(client)
    raw = get("it", 10)
    parsed = client.get_records(ShardIterator="it", Limit=10)  # not through get: botocore's
    assert raw["Records"][0]["Data"] == parsed["Records"][0]["Data"] == b'{"trace": "t-1"}'
    assert isinstance(raw["Records"][0]["ApproximateArrivalTimestamp"], float)
    assert not isinstance(parsed["Records"][0]["ApproximateArrivalTimestamp"], float)
    assert (
        arrival_ms(raw["Records"][0]["ApproximateArrivalTimestamp"])
        == arrival_ms(parsed["Records"][0]["ApproximateArrivalTimestamp"])
        == 1_700_000_000_123
    )
    assert raw["NextShardIterator"] == "next" and raw["MillisBehindLatest"] == 0
    assert raw_get_records(client) is not None  # registering twice is harmless


def test_raw_get_records_errors_are_still_client_errors():
    error = {"__type": "ProvisionedThroughputExceededException", "message": "slow down"}
    client = canned_kinesis([(400, error)])
    with pytest.raises(ClientError) as caught:
        raw_get_records(client)("it", 10)
    assert caught.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"


def test_raw_get_records_needs_botocore_hooks():
    assert raw_get_records(lineage()) is None


class FakeTable:
    def __init__(self, items, page=3, throttle_first=False):
        self.items = items
        self.page = page
        self.throttle = throttle_first
        self.segments_seen = set()

    def scan(self, TableName, Segment, TotalSegments, ExclusiveStartKey=None, **kw):
        if self.throttle:
            self.throttle = False
            raise client_error("ProvisionedThroughputExceededException")
        self.segments_seen.add(Segment)
        mine = [i for n, i in enumerate(self.items) if n % TotalSegments == Segment]
        start = 0 if ExclusiveStartKey is None else int(ExclusiveStartKey["n"]["N"])
        chunk = mine[start : start + self.page]
        out = {"Items": chunk}
        if start + self.page < len(mine):
            out["LastEvaluatedKey"] = {"n": {"N": str(start + self.page)}}
        return out


def test_parallel_scan_reads_every_segment_once():
    items = [{"id": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(25)]
    fake = FakeTable(items, throttle_first=True)
    rows = []
    stats = scan_table(
        fake, "t", ("id",), rows.extend, segments=3, deadline=float("inf"), sleep=lambda s: None
    )
    assert stats.complete and stats.items == 25 and stats.throttles == 1
    assert fake.segments_seen == {0, 1, 2}
    assert sorted(r[0] for r in rows) == sorted(f'{{"id":{{"S":"k{i}"}}}}' for i in range(25))


def test_scan_deadline_marks_segments_unfinished():
    items = [{"id": {"S": f"k{i}"}} for i in range(10)]
    stats = scan_table(
        FakeTable(items), "t", ("id",), lambda rows: None, segments=2, deadline=0,
        clock=lambda: 1.0,
    )  # fmt: skip
    assert sorted(stats.unfinished) == [0, 1]
