"""The producers' PutRecords sink: the replicator's boto3 adapter, timed for Locust.

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

# The boto3 sink and its error classification are the replicator's adapter: one place decides
# what "unknown outcome" means for the producers and the replicator alike.
from replicator.adapters.kinesis import KinesisSink
from replicator.adapters.kinesis import translate as classify
from replicator.core.putrecords import EntryResult, PutEntry, PutRecordsSink

__all__ = ["KinesisSink", "RequestReport", "TimedSink", "classify"]


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
