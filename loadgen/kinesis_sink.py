"""The producers' PutRecords sink: the replicator's boto3 adapter, timed for Locust.

It turns botocore's answers into the engine's terms (REFERENCE.md, "Kinesis Data Streams"):
per-entry results stay results; a whole failed request becomes a
:class:`~replicator.errors.SinkError` subclass. What matters for the ledger is the line between
"definitely not written" and "may have been written": a connection that could not be opened
wrote nothing (``RetryableRequestError``), a read timeout or a dropped connection after the
request left may have written everything (``UnknownOutcomeError``).

:class:`TimedSink` wraps any sink to time each request with ``perf_counter`` and report it
(Locust's request event, benchmarks). A request cut off before its answer (``GreenletExit``
when a run's stop timeout ends, ``KeyboardInterrupt``) is reported as :class:`RequestCutOff`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

# The boto3 sink and its error classification are the replicator's adapter: one place decides
# what "unknown outcome" means for the producers and the replicator alike.
from replicator.adapters.kinesis import KinesisSink
from replicator.adapters.kinesis import translate as classify
from replicator.core.putrecords import EntryResult, PutEntry, PutRecordsSink

__all__ = ["KinesisSink", "RequestCutOff", "RequestReport", "TimedSink", "classify"]


RequestReport = Callable[[float, int, Sequence[EntryResult] | None, BaseException | None], None]


class RequestCutOff(Exception):
    """A request given up before its answer came: the run stopped and its stop timeout ended
    while the request was still in flight (a hanging endpoint). Its records are ``unknown``."""

    def __init__(self, ms: float) -> None:
        # One message for all of them, so Locust's failures table keeps them on one line.
        super().__init__(
            "no answer before the stop timeout: cut off as the run stopped; "
            "its records are 'unknown' in the ledger"
        )
        self.ms = ms


class TimedSink:
    """Times each request (``perf_counter``, ms) and calls ``report(ms, entries, results, exc)``;
    a report with a ``sized`` method gets ``sized(ms, entries, size, results, exc)`` instead,
    ``size`` the bytes of the request's records (partition keys and data, as Kinesis counts
    them against its limits): Locust's request event takes it as the response length."""

    def __init__(self, inner: PutRecordsSink, report: RequestReport) -> None:
        self.inner = inner
        self.report = report

    def put_records(self, stream: str, entries: Sequence[PutEntry]) -> Sequence[EntryResult]:
        start = time.perf_counter()
        try:
            results = self.inner.put_records(stream, entries)
        except BaseException as exc:
            ms = (time.perf_counter() - start) * 1000
            # An Exception is the request's own error; anything else (GreenletExit,
            # KeyboardInterrupt) stopped it from outside: say that, not the signal's name.
            reported = exc if isinstance(exc, Exception) else RequestCutOff(ms)
            self._report(ms, entries, None, reported)
            raise
        self._report((time.perf_counter() - start) * 1000, entries, results, None)
        return results

    def _report(self, ms: float, entries: Sequence[PutEntry], results: Sequence[EntryResult] | None,
                exc: BaseException | None) -> None:  # fmt: skip
        sized = getattr(self.report, "sized", None)
        if sized is None:
            self.report(ms, len(entries), results, exc)
        else:
            sized(ms, len(entries), sum(e.size for e in entries), results, exc)
