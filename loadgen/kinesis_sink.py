"""boto3 adapter: one PutRecords request as the shared engine's sink (the only boto3 here).

It turns botocore's answers into the engine's terms (REFERENCE.md, "Kinesis Data Streams"):
per-entry results stay results; a whole failed request becomes a
:class:`~replicator.errors.SinkError` subclass. What matters for the ledger is the line between
"definitely not written" and "may have been written": a connection that could not be opened
wrote nothing (``RetryableRequestError``), a read timeout or a dropped connection after the
request left may have written everything (``UnknownOutcomeError``).

:class:`TimedSink` wraps any sink to time each request with ``perf_counter`` and report it
(Locust's request event, benchmarks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from replicator.core.putrecords import EntryResult, PutEntry, PutRecordsSink
from replicator.errors import (
    InvalidRequestError,
    RetryableRequestError,
    SinkError,
    TerminalRequestError,
    UnknownOutcomeError,
)

_RETRYABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "LimitExceededException",
    "InternalFailure",
    "ServiceUnavailable",
    "InternalServerError",
    "KMSThrottlingException",
}
_INVALID_CODES = {"ValidationException", "InvalidArgumentException", "SerializationException"}


class KinesisSink:
    """PutRecords through a boto3 Kinesis client (built with botocore retries off)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def put_records(self, stream: str, entries: Sequence[PutEntry]) -> Sequence[EntryResult]:
        records = []
        for e in entries:
            record: dict[str, Any] = {"Data": e.data, "PartitionKey": e.partition_key}
            if e.explicit_hash_key is not None:
                record["ExplicitHashKey"] = e.explicit_hash_key
            records.append(record)
        try:
            answer = self.client.put_records(StreamName=stream, Records=records)
        except Exception as exc:
            raise classify(exc) from exc
        return [
            EntryResult(
                shard_id=r.get("ShardId"),
                sequence_number=r.get("SequenceNumber"),
                error_code=r.get("ErrorCode"),
                error_message=r.get("ErrorMessage"),
            )
            for r in answer.get("Records", ())
        ]


def classify(exc: Exception) -> SinkError:
    """A botocore exception as the engine's error (unknown outcome when bytes may have landed)."""
    from botocore import exceptions as bce

    message = str(exc)
    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "ClientError")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _INVALID_CODES:
            return InvalidRequestError(message, code)
        if code in _RETRYABLE_CODES or status >= 500 or status == 429:
            return RetryableRequestError(message, code)
        return TerminalRequestError(message, code)
    if isinstance(exc, bce.ConnectTimeoutError | bce.EndpointConnectionError):
        return RetryableRequestError(message, type(exc).__name__)  # never reached the server
    if isinstance(
        exc,
        bce.ReadTimeoutError | bce.ConnectionClosedError | bce.HTTPClientError | ConnectionError,
    ):
        return UnknownOutcomeError(message, type(exc).__name__)
    if isinstance(exc, bce.ParamValidationError):
        return InvalidRequestError(message, "ParamValidationError")
    return UnknownOutcomeError(message, type(exc).__name__)


RequestReport = Callable[[float, int, Sequence[EntryResult] | None, BaseException | None], None]


class TimedSink:
    """Times each request (``perf_counter``, ms) and calls ``report(ms, entries, results, exc)``."""

    def __init__(self, inner: PutRecordsSink, report: RequestReport) -> None:
        self.inner = inner
        self.report = report

    def put_records(self, stream: str, entries: Sequence[PutEntry]) -> Sequence[EntryResult]:
        start = time.perf_counter()
        try:
            results = self.inner.put_records(stream, entries)
        except BaseException as exc:
            self.report((time.perf_counter() - start) * 1000, len(entries), None, exc)
            raise
        self.report((time.perf_counter() - start) * 1000, len(entries), results, None)
        return results
