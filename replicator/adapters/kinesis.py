"""boto3 Kinesis: the PutRecords sink of the target and the shard reader of the source.

botocore errors become the replicator's exceptions here (``raise ... from exc``) so the core
never sees botocore: throttling and 5xx are retryable, validation is invalid (the sender
bisects), a missing stream or no permission is terminal, a timeout or dropped connection is an
unknown outcome (it may have been written). Clients should be built with botocore retries off
(``max_attempts=1``) so that a timeout surfaces instead of being resent blindly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ParamValidationError,
    ReadTimeoutError,
)

from replicator.adapters.send_guard import SendGuard
from replicator.core.putrecords import EntryResult, PutEntry
from replicator.core.records import SourceRecord
from replicator.core.watermark import ShardInfo
from replicator.errors import (
    InvalidRequestError,
    RetryableRequestError,
    SinkError,
    TerminalRequestError,
    UnknownOutcomeError,
)

RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "LimitExceededException",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "KMSThrottlingException",
    }
)
INVALID_CODES = frozenset(
    {"ValidationException", "InvalidArgumentException", "SerializationException"}
)


def translate(exc: BaseException) -> SinkError:
    """A botocore exception as a SinkError of the right kind (shared by the producers).

    The line that matters is "definitely not written" against "may have been written": a
    connection that could not be opened, or a request botocore refused to build, wrote nothing;
    a read timeout or a connection dropped after the request left may have written everything.
    """
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "ClientError")
        message = str(error.get("Message") or exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in INVALID_CODES:
            return InvalidRequestError(message, code)
        if code in RETRYABLE_CODES or status >= 500 or status == 429:
            return RetryableRequestError(message, code)
        return TerminalRequestError(message, code)
    if isinstance(exc, ConnectTimeoutError | EndpointConnectionError):
        return RetryableRequestError(str(exc), type(exc).__name__)  # never reached the service
    if isinstance(exc, ParamValidationError):
        return InvalidRequestError(str(exc), "ParamValidationError")  # never sent
    if isinstance(exc, ReadTimeoutError | ConnectionClosedError | HTTPClientError):
        return UnknownOutcomeError(str(exc), type(exc).__name__)
    return UnknownOutcomeError(str(exc), type(exc).__name__)


class KinesisSink:
    """PutRecordsSink over a boto3 Kinesis client (the target region).

    ``put_records(..., guard=check)`` calls ``check`` once more at the last moment, in botocore's
    ``before-send`` event, after the request was built and signed (about 16 ms of CPU for 500
    records) and before any byte leaves: the replicator's lease fence
    (:mod:`replicator.core.fence`), so a process paused while building a request cannot send it
    after its lease was taken. If ``check`` raises, nothing is sent and its error propagates.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0
        self._guard = SendGuard(client, "before-send.kinesis.PutRecords")

    def put_record(self, stream: str, partition_key: str, data: bytes) -> tuple[str, str]:
        """One single-record PutRecord (only the sample behaviour uses it): (shard, sequence)."""
        self.calls += 1
        try:
            response = self.client.put_record(
                StreamName=stream, PartitionKey=partition_key, Data=data
            )
        except Exception as exc:
            raise translate(exc) from exc
        return response["ShardId"], response["SequenceNumber"]

    def put_records(
        self,
        stream: str,
        entries: Sequence[PutEntry],
        guard: Callable[[], object] | None = None,
    ) -> Sequence[EntryResult]:
        wire = []
        for e in entries:
            item: dict[str, Any] = {"Data": e.data, "PartitionKey": e.partition_key}
            if e.explicit_hash_key is not None:
                item["ExplicitHashKey"] = e.explicit_hash_key
            wire.append(item)
        self.calls += 1
        response = self._guard.call(
            guard, lambda: self.client.put_records(StreamName=stream, Records=wire), translate
        )
        return [
            EntryResult(
                shard_id=r.get("ShardId"),
                sequence_number=r.get("SequenceNumber"),
                error_code=r.get("ErrorCode"),
                error_message=r.get("ErrorMessage"),
            )
            for r in response["Records"]
        ]


@dataclass(frozen=True, slots=True)
class ReadResult:
    records: list[SourceRecord]
    next_iterator: str | None  # None: the shard is closed and fully read
    millis_behind_latest: int | None


class KinesisReader:
    """GetRecords / ListShards on the source region."""

    def __init__(self, client: Any, stream: str) -> None:
        self.client = client
        self.stream = stream
        self.calls = 0

    def list_shards(self) -> list[ShardInfo]:
        shards: list[ShardInfo] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream}
        while True:
            self.calls += 1
            page = self.client.list_shards(**kwargs)
            for s in page["Shards"]:
                parents = tuple(
                    p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p
                )
                closed = "EndingSequenceNumber" in s.get("SequenceNumberRange", {})
                shards.append(ShardInfo(s["ShardId"], parents, closed))
            token = page.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    def iterator(
        self,
        shard_id: str,
        after_sequence: str | None,
        latest: bool = False,
        at_timestamp_ms: int | None = None,
    ) -> str:
        """After a sequence number; else at a time (AT_TIMESTAMP: the first record that arrived
        at or after it); else LATEST or TRIM_HORIZON."""
        kwargs: dict[str, Any] = {"StreamName": self.stream, "ShardId": shard_id}
        if after_sequence is not None:
            kwargs.update(
                ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after_sequence
            )
        elif at_timestamp_ms is not None:
            kwargs.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=at_timestamp_ms / 1000)
        else:
            kwargs["ShardIteratorType"] = "LATEST" if latest else "TRIM_HORIZON"
        self.calls += 1
        return self.client.get_shard_iterator(**kwargs)["ShardIterator"]

    def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult:
        self.calls += 1
        response = self.client.get_records(ShardIterator=iterator, Limit=limit)
        records = [
            SourceRecord(
                shard_id,
                r["SequenceNumber"],
                r["PartitionKey"],
                r["Data"],
                _epoch_ms(r.get("ApproximateArrivalTimestamp")),
            )
            for r in response["Records"]
        ]
        return ReadResult(
            records, response.get("NextShardIterator"), response.get("MillisBehindLatest")
        )


def _epoch_ms(value: Any) -> int | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    return int(float(value) * 1000)
