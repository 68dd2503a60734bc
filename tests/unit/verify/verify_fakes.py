"""Scriptable fakes of the Kinesis, DynamoDB and S3 APIs verify reads."""

from __future__ import annotations

from datetime import UTC, datetime

from botocore.exceptions import ClientError


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetRecords")


class FakeKinesis:
    """Shards as lists of records; iterators are 'shard:position'. ``faults`` scripts errors
    by GetRecords call number."""

    def __init__(self, shards, *, page=2, faults=None, list_page=1):
        self.shards = shards  # shard_id -> (parent, closed, [records])
        self.page = page
        self.faults = dict(faults or {})
        self.list_page = list_page
        self.calls = 0
        self.list_calls = []

    def list_shards(self, **kwargs):
        self.list_calls.append(kwargs)
        ids = sorted(self.shards)
        start = int(kwargs.get("NextToken", 0))
        chunk = ids[start : start + self.list_page]
        out = []
        for sid in chunk:
            parent, closed, _ = self.shards[sid]
            rng = {"StartingSequenceNumber": "0"}
            if closed:
                rng["EndingSequenceNumber"] = "999"
            shard = {"ShardId": sid, "SequenceNumberRange": rng}
            if parent:
                shard["ParentShardId"] = parent
            out.append(shard)
        result = {"Shards": out}
        if start + self.list_page < len(ids):
            result["NextToken"] = str(start + self.list_page)
        return result

    def get_shard_iterator(self, StreamName, ShardId, ShardIteratorType, **kw):
        records = self.shards[ShardId][2]
        pos = 0
        if ShardIteratorType == "AFTER_SEQUENCE_NUMBER":
            pos = next(
                i + 1
                for i, r in enumerate(records)
                if r["SequenceNumber"] == kw["StartingSequenceNumber"]
            )
        return {"ShardIterator": f"{ShardId}:{pos}"}

    def get_records(self, ShardIterator, Limit):
        self.calls += 1
        fault = self.faults.pop(self.calls, None)
        if fault:
            raise fault
        sid, pos = ShardIterator.rsplit(":", 1)
        pos = int(pos)
        _, closed, records = self.shards[sid]
        chunk = records[pos : pos + min(self.page, Limit)]
        end = pos + len(chunk)
        nxt = None if closed and end >= len(records) else f"{sid}:{end}"
        return {"Records": chunk, "NextShardIterator": nxt, "MillisBehindLatest": 0}


def rec(seq: int, pk="k"):
    return {
        "SequenceNumber": str(seq),
        "PartitionKey": pk,
        "Data": b'{"trace": "p-%d"}' % seq,
        "ApproximateArrivalTimestamp": datetime.fromtimestamp(1_700_000_000 + seq, UTC),
    }
