"""The PutRecords engine shared by the replicator and the load generator's producers (pure).

PutRecords answers per entry and one failed entry does not stop the others, so a request can
write entry 7 of a partition key while entry 2 of the same key failed (REFERENCE.md, "Kinesis
Data Streams"). :class:`PutRecordsSender` sends a sequence of entries in order and keeps
per-key order anyway: when an entry fails, every later entry of the same partition key in that
request is sent again after it, even if it was written (duplicates are allowed, reordering is
not). Only failed entries are retried, with exponential backoff and full jitter, for a bounded
number of attempts. Records that can never be written (over the size limits, an invalid key,
rejected by validation) come back as dead-letter decisions and the rest moves on.

The sink (:class:`PutRecordsSink`) is the one seam to Kinesis: the boto3 adapter lives in
``replicator.adapters``, a scriptable in-memory one in :mod:`replicator.core.fakes`. Sleep, random
and clock are passed in so tests are exact.

Typical use::

    sender = PutRecordsSender(sink, "orders", observer=ledger.record_attempt)
    report = sender.send([PutEntry("42", b"{...}", ref=trace), ...])
    if not report.complete: ...   # report.unresolved / report.unsent: fail the batch
    for dl in report.dead_letters: ...  # store with its full data and dl.reason
"""

from __future__ import annotations

import enum
import random as _random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from replicator.core.entries import (
    INVALID_ENTRY_CODES,
    MIB,
    RETRYABLE_ENTRY_CODES,
    DeadLetterReason,
    EntryResult,
    Limits,
    PutEntry,
    PutRecordsSink,
    plan_batches,
)
from replicator.errors import (
    InvalidRequestError,
    ReplicatorError,
    RetryableRequestError,
    SinkError,
    TerminalRequestError,
    UnknownOutcomeError,
)

__all__ = [
    "AttemptEvent",
    "AttemptOutcome",
    "Backoff",
    "DeadLetter",
    "DeadLetterReason",
    "EntryOutcome",
    "EntryResult",
    "EntryStatus",
    "INVALID_ENTRY_CODES",
    "InvalidRequestError",
    "Limits",
    "PutEntry",
    "PutRecordsSender",
    "PutRecordsSink",
    "MIB",
    "RETRYABLE_ENTRY_CODES",
    "RetryableRequestError",
    "SendReport",
    "SinkError",
    "TerminalRequestError",
    "UnknownOutcomeError",
    "plan_batches",
]


class AttemptOutcome(enum.Enum):
    OK = "ok"  # written (shard and sequence number known)
    FAIL = "fail"  # definitely not written
    UNKNOWN = "unknown"  # may or may not be written


@dataclass(frozen=True, slots=True)
class AttemptEvent:
    """One entry in one request: what the observer sees, once per entry per attempt."""

    entry: PutEntry
    index: int  # position in the sequence given to send()
    attempt: int  # 1 for the first send of this entry
    outcome: AttemptOutcome
    invoked_at: float  # clock() before the request
    completed_at: float  # clock() after it
    shard_id: str | None = None
    sequence_number: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    #: True if the entry was written but goes again because an earlier entry of its key failed.
    resent_for_order: bool = False


class EntryStatus(enum.Enum):
    WRITTEN = "written"
    DEAD_LETTER = "dead_letter"
    UNRESOLVED = "unresolved"  # still failing after the attempt bound (or a terminal error)
    UNSENT = "unsent"  # never sent: the send stopped at an unresolved entry before it
    UNKNOWN = "unknown"  # outcome unknown and retry_unknown=False


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    """Final state of one input entry (aligned with the input of send())."""

    entry: PutEntry
    status: EntryStatus
    attempts: int = 0
    shard_id: str | None = None
    sequence_number: str | None = None
    error_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that can never be written, with why: store it with its full data."""

    entry: PutEntry
    reason: DeadLetterReason
    detail: str


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: before attempt n+1 (n >= 1 failures so far) sleep
    ``random() * min(cap, base * 2**(n-1))``; at most ``max_attempts`` sends per entry."""

    base: float = 0.05
    cap: float = 5.0
    max_attempts: int = 10

    def delay(self, failures: int, rand: float) -> float:
        if failures <= 0:
            return 0.0
        return rand * min(self.cap, self.base * (2 ** (failures - 1)))


@dataclass(slots=True)
class SendReport:
    outcomes: list[EntryOutcome]
    requests: int = 0
    retried_entries: int = 0  # entry sends beyond the first, including resends for order
    throttled_requests: int = 0
    slept: float = 0.0
    error: SinkError | None = None  # the terminal error that stopped the send, if any
    #: what ``before_request`` raised to stop the send before a request (lease fencing)
    fenced: ReplicatorError | None = None
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every entry is written or dead-lettered."""
        return self.resolved_prefix == len(self.outcomes)

    @property
    def resolved_prefix(self) -> int:
        """Number of leading entries written or dead-lettered: the caller may checkpoint there."""
        for i, outcome in enumerate(self.outcomes):
            if outcome.status not in (EntryStatus.WRITTEN, EntryStatus.DEAD_LETTER):
                return i
        return len(self.outcomes)

    def with_status(self, status: EntryStatus) -> list[EntryOutcome]:
        return [o for o in self.outcomes if o.status is status]

    @property
    def unresolved(self) -> list[EntryOutcome]:
        return self.with_status(EntryStatus.UNRESOLVED)


Observer = Callable[[AttemptEvent], None]


@dataclass(slots=True)
class _Pending:
    index: int
    entry: PutEntry
    attempts: int = 0  # sends so far
    failures: int = 0  # failed sends so far (drives backoff)
    last_code: str | None = None
    last_error: str | None = None  # "code: message"


class PutRecordsSender:
    """Sends entries in order with retries of only the failed entries (see the module doc).

    ``retry_unknown``: an entry whose request had an unknown outcome is sent again (the
    replicator: duplicates are fine, loss is not). With False it is reported as UNKNOWN and
    not resent (a producer that records "unknown" in its ledger).
    """

    def __init__(
        self,
        sink: PutRecordsSink,
        stream: str,
        *,
        limits: Limits | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.time,
        observer: Observer | None = None,
        retry_unknown: bool = True,
    ) -> None:
        self.sink = sink
        self.stream = stream
        self.limits = limits or Limits()
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.random = random
        self.clock = clock
        self.observer = observer
        self.retry_unknown = retry_unknown

    def send(
        self,
        entries: Sequence[PutEntry],
        *,
        before_request: Callable[[], object] | None = None,
    ) -> SendReport:
        """``before_request`` runs right before each request is sent (after any backoff), and is
        passed to the sink as ``guard`` to run once more at the last moment; if it raises a
        ReplicatorError the send stops there (``report.fenced``) and that request and the rest
        stay unsent: the replicator's lease fence (:mod:`replicator.core.fence`). A sink given
        a guard must accept ``put_records(stream, entries, guard=...)``."""
        outcomes: list[EntryOutcome | None] = [None] * len(entries)
        report = SendReport(outcomes=[])
        queue = [_Pending(i, e) for i, e in enumerate(entries)]
        cap = self.limits.max_entries  # shrinks while bisecting an invalid request
        queue = self._dead_letter_rejected(queue, outcomes, report)
        while queue:
            request = self._take(queue, cap)
            wait = self.backoff.delay(max(p.failures for p in request), self.random())
            if wait > 0:
                self.sleep(wait)
                report.slept += wait
            if before_request is not None:
                try:
                    before_request()
                except ReplicatorError as exc:
                    report.fenced = exc
                    break
            for p in request:
                p.attempts += 1
                if p.attempts > 1:
                    report.retried_entries += 1
            report.requests += 1
            try:
                again, stop = self._attempt(request, outcomes, report, before_request)
            except SinkError:
                raise  # pragma: no cover - _attempt handles every SinkError
            except ReplicatorError as exc:  # the sink's last-moment guard refused: not sent
                report.fenced = exc
                break
            if stop is not None:
                report.error = stop  # the request and the rest stay unresolved / unsent
                break
            if again is None:  # invalid request: bisect by shrinking the next request
                if len(request) == 1:
                    p = request[0]
                    self._dead_letter(
                        p, DeadLetterReason.INVALID, p.last_error or "", outcomes, report
                    )
                    cap = self.limits.max_entries
                    queue = queue[1:]
                else:
                    cap = max(1, len(request) // 2)
                continue
            queue = again + queue[len(request) :]
            exhausted = next((p for p in again if p.failures >= self.backoff.max_attempts), None)
            if exhausted is not None:
                break
        # Whatever is left: the first exhausted entry and everything after it in the queue.
        for p in queue:
            if outcomes[p.index] is None:
                status = EntryStatus.UNRESOLVED if p.attempts else EntryStatus.UNSENT
                outcomes[p.index] = EntryOutcome(
                    p.entry, status, p.attempts, error_code=p.last_code, reason=p.last_error
                )
        for i, outcome in enumerate(outcomes):
            if outcome is None:  # pragma: no cover - every path above assigns
                raise AssertionError(f"entry {i} has no outcome")
        report.outcomes = outcomes  # type: ignore[assignment]
        return report

    # ------------------------------------------------------------------ steps

    def _dead_letter_rejected(
        self, queue: list[_Pending], outcomes: list, report: SendReport
    ) -> list[_Pending]:
        """Dead-letter entries the limits reject before anything is sent (they never go out)."""
        kept = []
        for p in queue:
            rejection = self.limits.rejection(p.entry)
            if rejection is None:
                kept.append(p)
            else:
                self._dead_letter(p, rejection[0], rejection[1], outcomes, report)
        return kept

    def _take(self, queue: list[_Pending], cap: int) -> list[_Pending]:
        limits = Limits(min(cap, self.limits.max_entries), self.limits.max_record_bytes,
                        self.limits.max_request_bytes)  # fmt: skip
        first = plan_batches([p.entry for p in queue[: limits.max_entries]], limits)[0]
        return queue[: len(first)]

    def _dead_letter(
        self, p: _Pending, reason: DeadLetterReason, detail: str, outcomes: list, report: SendReport
    ) -> None:
        outcomes[p.index] = EntryOutcome(
            p.entry, EntryStatus.DEAD_LETTER, p.attempts, reason=detail
        )
        report.dead_letters.append(DeadLetter(p.entry, reason, detail))

    def _attempt(
        self,
        request: list[_Pending],
        outcomes: list,
        report: SendReport,
        guard: Callable[[], object] | None = None,
    ) -> tuple[list[_Pending] | None, SinkError | None]:
        """Send one request. Returns (entries to send again in order, None), (None, None) for
        an invalid request to bisect, or ([], error) for a terminal error that stops the send.
        With ``guard`` the sink checks it again at the last moment before sending."""
        invoked = self.clock()
        try:
            if guard is None:
                results = self.sink.put_records(self.stream, [p.entry for p in request])
            else:
                results = self.sink.put_records(  # type: ignore[call-arg]
                    self.stream, [p.entry for p in request], guard=guard
                )
        except RetryableRequestError as exc:
            report.throttled_requests += 1
            self._all(request, AttemptOutcome.FAIL, invoked, exc)
            return request, None
        except UnknownOutcomeError as exc:
            self._all(request, AttemptOutcome.UNKNOWN, invoked, exc)
            if self.retry_unknown:
                return request, None
            for p in request:
                outcomes[p.index] = EntryOutcome(
                    p.entry,
                    EntryStatus.UNKNOWN,
                    p.attempts,
                    error_code=p.last_code,
                    reason=p.last_error,
                )
            return [], None
        except InvalidRequestError as exc:
            # Not a failure of each entry: bisecting must not grow the backoff.
            self._all(request, AttemptOutcome.FAIL, invoked, exc, count_failure=False)
            return None, None
        except TerminalRequestError as exc:
            self._all(request, AttemptOutcome.FAIL, invoked, exc)
            return [], exc
        completed = self.clock()
        if len(results) != len(request):
            exc = UnknownOutcomeError(
                f"sink answered {len(results)} results for {len(request)} entries", "Misaligned"
            )
            self._all(request, AttemptOutcome.UNKNOWN, invoked, exc, completed)
            return request, None

        again: list[_Pending] = []
        failed_keys: set[str] = set()
        for p, result in zip(request, results, strict=True):
            key = p.entry.partition_key
            if result.ok:
                resend = key in failed_keys
                self._emit(p, AttemptOutcome.OK, invoked, completed, result, resend)
                if resend:
                    again.append(p)
                else:
                    outcomes[p.index] = EntryOutcome(
                        p.entry, EntryStatus.WRITTEN, p.attempts,
                        shard_id=result.shard_id, sequence_number=result.sequence_number,
                    )  # fmt: skip
                continue
            self._emit(p, AttemptOutcome.FAIL, invoked, completed, result, False)
            p.last_code = result.error_code
            p.last_error = f"{result.error_code}: {result.error_message or ''}".strip()
            if result.error_code in INVALID_ENTRY_CODES:
                self._dead_letter(p, DeadLetterReason.INVALID, p.last_error, outcomes, report)
                continue
            p.failures += 1
            failed_keys.add(key)
            again.append(p)
        return again, None

    def _all(
        self,
        request: list[_Pending],
        outcome: AttemptOutcome,
        invoked: float,
        exc: SinkError,
        completed: float | None = None,
        *,
        count_failure: bool = True,
    ) -> None:
        done = self.clock() if completed is None else completed
        failure = EntryResult(error_code=exc.code or type(exc).__name__, error_message=exc.message)
        for p in request:
            p.last_code = failure.error_code
            p.last_error = f"{failure.error_code}: {exc.message}"
            p.failures += int(count_failure)
            self._emit(p, outcome, invoked, done, failure, False)

    def _emit(
        self,
        p: _Pending,
        outcome: AttemptOutcome,
        invoked: float,
        completed: float,
        result: EntryResult,
        resent_for_order: bool,
    ) -> None:
        if self.observer is None:
            return
        self.observer(
            AttemptEvent(
                entry=p.entry,
                index=p.index,
                attempt=p.attempts,
                outcome=outcome,
                invoked_at=invoked,
                completed_at=completed,
                shard_id=result.shard_id,
                sequence_number=result.sequence_number,
                error_code=result.error_code,
                error_message=result.error_message,
                resent_for_order=resent_for_order,
            )
        )
