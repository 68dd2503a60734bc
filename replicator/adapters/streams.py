"""boto3 DynamoDB Streams: a table's stream as the poller reads a Kinesis stream.

:class:`DynamoStreamReader` has the poller's reader interface (``list_shards``, ``iterator``,
``read``, ``calls``; :class:`replicator.runners.poller.Poller`), and its reads give
:class:`~replicator.core.changes.ChangeRecord` in the same
:class:`~replicator.adapters.kinesis.ReadResult` shape. DynamoDB Streams differs from Kinesis
where it matters:

- the stream is found through the table (``DescribeTable``'s ``LatestStreamArn``);
- shards come from ``DescribeStream``, paginated by ``LastEvaluatedShardId``; a shard has one
  parent at most; a closed shard has an ending sequence number. Shards roll over about every
  four hours even without resharding, so parents and children are the normal case;
- there is no ``MillisBehindLatest`` (``millis_behind_latest`` is None: the poller then calls a
  read at the tip when it returns fewer records than asked) and no ``AT_TIMESTAMP``: live
  apply starts at ``TRIM_HORIZON`` or after its checkpoint, never at the latest record (it
  would skip the changes made during the bootstrap copy), so ``latest`` and
  ``at_timestamp_ms`` raise :class:`ReplicatorUsageError`;
- ``GetRecords`` returns at most 1,000 records;
- an iterator expires after 15 minutes (:class:`IteratorExpired`) and records are trimmed
  after 24 hours (:class:`TrimmedData`). Both are raised for the poller: an expired iterator
  is positioned again from the checkpoint; a trimmed position cannot be read past (changes
  were lost to the retention and the target must be bootstrapped again), so the poller stops
  working that shard and reports it (:class:`~replicator.errors.StreamDataLost`).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from replicator.adapters.kinesis import ReadResult
from replicator.core.changes import ChangeRecord
from replicator.core.watermark import ShardInfo
from replicator.errors import ReplicatorError, ReplicatorUsageError, StreamDataLost

#: GetRecords' limit on records per call.
MAX_READ = 1000


class StreamPositionError(ReplicatorError):
    """The shard cannot be read from this position: position it again from the checkpoint."""


class IteratorExpired(StreamPositionError):
    """The shard iterator expired (15 minutes unused): get a new one from the checkpoint."""


class TrimmedData(StreamPositionError, StreamDataLost):
    """The position is older than the stream's 24-hour retention: changes after it are gone."""


class DynamoStreamReader:
    """Reads the stream of ``table`` (region A) with a ``dynamodbstreams`` client; the
    ``dynamodb`` client of the same region finds the stream's ARN (once)."""

    def __init__(self, streams_client: Any, dynamodb_client: Any, table: str) -> None:
        self.client = streams_client
        self.dynamodb = dynamodb_client
        self.table = table
        self.stream = table
        self.calls = 0
        self._arn: str | None = None

    @property
    def stream_arn(self) -> str:
        if self._arn is None:
            self.calls += 1
            described = self.dynamodb.describe_table(TableName=self.table)["Table"]
            arn = described.get("LatestStreamArn")
            spec = described.get("StreamSpecification") or {}
            if not arn or spec.get("StreamEnabled") is False:
                raise ReplicatorUsageError(f"table {self.table} has no stream enabled")
            self._arn = arn
        return self._arn

    def list_shards(self) -> list[ShardInfo]:
        shards: list[ShardInfo] = []
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
        for _ in range(100_000):  # bounded: a stream has far fewer pages
            self.calls += 1
            page = self.client.describe_stream(**kwargs)["StreamDescription"]
            for s in page.get("Shards", []):
                parent = s.get("ParentShardId")
                closed = "EndingSequenceNumber" in s.get("SequenceNumberRange", {})
                shards.append(ShardInfo(s["ShardId"], (parent,) if parent else (), closed))
            last = page.get("LastEvaluatedShardId")
            if not last:
                break
            kwargs["ExclusiveStartShardId"] = last
        return shards

    def iterator(
        self,
        shard_id: str,
        after_sequence: str | None,
        latest: bool = False,
        at_timestamp_ms: int | None = None,
    ) -> str:
        """After a sequence number (the checkpoint), else at the shard's trim horizon."""
        if latest or at_timestamp_ms is not None:
            raise ReplicatorUsageError(
                f"{self.table}: live apply of a DynamoDB stream starts at TRIM_HORIZON or after "
                "its checkpoint; starting at the latest record or at a time "
                "(--start-at-latest) would skip the changes made during the bootstrap copy"
            )
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
        if after_sequence is not None:
            kwargs.update(
                ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=str(after_sequence)
            )
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        self.calls += 1
        try:
            return self.client.get_shard_iterator(**kwargs)["ShardIterator"]
        except ClientError as exc:
            raise _position_error(exc, shard_id, after_sequence) from exc

    def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult:
        self.calls += 1
        try:
            response = self.client.get_records(
                ShardIterator=iterator, Limit=max(1, min(limit, MAX_READ))
            )
        except ClientError as exc:
            raise _position_error(exc, shard_id, None) from exc
        records = [ChangeRecord.from_stream_record(shard_id, r) for r in response["Records"]]
        return ReadResult(records, response.get("NextShardIterator"), None)  # type: ignore[arg-type]


def _position_error(exc: ClientError, shard_id: str, after: str | None) -> Exception:
    code = exc.response.get("Error", {}).get("Code")
    where = f"shard {shard_id}" + (f" after {after}" if after else "")
    if code == "ExpiredIteratorException":
        return IteratorExpired(f"{where}: iterator expired; positioning again from the checkpoint")
    if code == "TrimmedDataAccessException":
        return TrimmedData(
            f"{where}: position is past the stream's 24 h retention; the changes after it are "
            "gone from the stream: bootstrap the target again"
        )
    return exc
