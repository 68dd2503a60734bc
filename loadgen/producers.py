"""Producers: render records, batch them, send them through the shared PutRecords engine, and
write every attempt to the ledger. Plain Python (no locust), so it is tested directly.

Batching: records collect in a buffer that is sent when it holds ``batch_size`` records or its
oldest record has waited ``linger_s`` (:class:`loadgen.producer_base.BufferedProducer`, shared
with the dynamodb pipeline's item producer). Sending goes through
:class:`replicator.core.putrecords.PutRecordsSender` (the replicator's own engine), so per-key
order under partial failure and retries of only the failed entries follow the same rules.
A producer does not resend a request whose outcome is unknown: it records ``unknown``.

Ledger rows per entry and attempt: ``ok`` (shard, sequence number), ``fail``, ``unknown``. An
entry that was never sent (the batch stopped at an entry that kept failing, a record over the
limits) gets one ``fail`` row saying why; if the producer is interrupted mid-request (a request
that got no answer before the run's stop timeout), every entry of the batch not yet known to be
written gets an ``unknown`` row, and what it still had buffered is not sent: one ``fail`` row each.

Stopping: :class:`ProducerLoop` runs a producer turn by turn and waits between turns on an event
that a stop sets, so a stop wakes a waiting producer at once and never lands inside a request;
the request in flight finishes and :meth:`Producer.close` sends the final batch.
"""

from __future__ import annotations

import random as _random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from loadgen.keyspace import Keyspace
from loadgen.ledger import LedgerSink
from loadgen.producer_base import COMMIT_TS_FIELD, BufferedProducer, LedgerRows
from loadgen.templates import Renderer
from replicator.core.putrecords import (
    AttemptEvent,
    AttemptOutcome,
    Backoff,
    EntryStatus,
    Limits,
    PutEntry,
    PutRecordsSender,
    PutRecordsSink,
)
from xrh.contracts import LedgerStatus

_OK = AttemptOutcome.OK
_OK_STATUS = LedgerStatus.OK.value
_STATUS = {
    AttemptOutcome.OK: LedgerStatus.OK.value,
    AttemptOutcome.FAIL: LedgerStatus.FAIL.value,
    AttemptOutcome.UNKNOWN: LedgerStatus.UNKNOWN.value,
}


@dataclass(frozen=True, slots=True)
class ProducerSettings:
    stream: str
    region: str
    pipeline: str = "kinesis"
    batch_size: int = 500
    linger_s: float = 0.2
    limits: Limits = Limits()
    backoff: Backoff = Backoff(base=0.05, cap=2.0, max_attempts=8)

    def __post_init__(self) -> None:
        from loadgen.errors import LoadgenUsageError

        if not 1 <= self.batch_size <= self.limits.max_entries:
            raise LoadgenUsageError(
                f"--batch-size {self.batch_size}: must be 1..{self.limits.max_entries}"
            )
        if self.linger_s < 0:
            raise LoadgenUsageError(f"--linger {self.linger_s}: must not be negative")


class RecordRef(NamedTuple):
    """What a PutEntry's ``ref`` carries: the record's identity and ledger fields (a named
    tuple rather than a frozen dataclass: built once per record, it is on the hot path).
    ``op`` is the ledger's: ``put`` for a stream record, the action's for the action log."""

    trace: str
    seq: int
    key: str
    commit_ts: int | None
    op: str = "put"


class RecordBuilder(Protocol):
    """Builds one record of a producer: ``build(seq, trace, now_ms)`` renders it and returns
    the entry to send, its ``ref`` a :class:`RecordRef` (the ledger's key, commit_ts and op).

    The seam for pipelines whose records are not the template's payload as it is (the action
    log's commands, :mod:`loadgen.actions`): they get the same buffering, sending and ledger."""

    def __call__(self, seq: int, trace: str, now_ms: int) -> PutEntry: ...


class Producer(BufferedProducer[PutEntry]):
    """One producer (one Locust user, or one benchmark loop): ``<producer id>-<seq>`` traces."""

    def __init__(
        self,
        producer_id: str,
        renderer: Renderer,
        keyspace: Keyspace,
        sink: PutRecordsSink,
        ledger: LedgerSink,
        settings: ProducerSettings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        route: Callable[[], str] | None = None,
        records: RecordBuilder | None = None,
    ) -> None:
        """``route``: called as each request begins, pins it to a region and returns the
        region's name for its ledger rows (:class:`loadgen.routing.RoutedSink.pin`); without
        it every request goes to ``settings.region``. ``records``: builds each record instead
        of the template's payload keyed by the keyspace (then it owns rendering and keys, and
        ``renderer`` and ``keyspace`` are not used); the stream records' own path stays inline,
        it is the load generator's hot path."""
        super().__init__(producer_id, settings, ledger, clock)
        self._route = route
        self._records = records
        self._render = renderer.render
        self._keyspace = keyspace
        self._sender = PutRecordsSender(
            sink, settings.stream, limits=settings.limits, backoff=settings.backoff,
            sleep=sleep, random=random, clock=clock, observer=self._observe,
            retry_unknown=False,
        )  # fmt: skip
        self._rows = LedgerRows(ledger)
        self._where = (settings.pipeline, settings.region, settings.stream)
        self._ms_cache: tuple[float, float, int, int] = (-1.0, -1.0, 0, 0)
        self._last_event: dict[int, AttemptEvent] = {}

    # ----------------------------------------------------------------- records

    def add(self, count: int = 1) -> None:
        """Render ``count`` records into the buffer (sends nothing)."""
        if count <= 0:
            return
        now = self._clock()
        now_ms = int(now * 1000)
        next_key = self._keyspace.next_key
        render = self._render
        commit_ts = self._commit_ts
        append = self._buffer.append
        prefix = self.id
        first = self._seq + 1
        self._seq += count
        if self._records is not None:
            build = self._records
            for seq in range(first, first + count):
                append(build(seq, f"{prefix}-{seq:09d}", now_ms))
            self._buffered_now(now, count)
            return
        for seq in range(first, first + count):
            key = next_key()
            pkey = str(key)
            trace = f"{prefix}-{seq:09d}"
            payload = render(key, trace, now_ms)
            ref = RecordRef(trace, seq, pkey, commit_ts(payload))
            append(PutEntry(pkey, payload.encode(), None, ref))
        self._buffered_now(now, count)

    def _commit_ts(self, payload: str) -> int | None:
        match = COMMIT_TS_FIELD.search(payload)
        return None if match is None else self._parsed_commit_ts(match.group(1))

    # ----------------------------------------------------------------- sending

    def flush(self) -> None:
        """Send everything buffered (in requests of ``batch_size``); ledger every attempt."""
        while self._buffer:
            batch = self._buffer[: self.settings.batch_size]
            del self._buffer[: len(batch)]
            if not self._buffer:
                self._oldest = None
            self._send(batch)

    def _send(self, batch: list[PutEntry]) -> None:
        self._last_event = {}
        if self._route is not None:
            self._where = (self.settings.pipeline, self._route(), self.settings.stream)
        try:
            report = self._sender.send(batch)
        except BaseException:
            self._interrupted(batch)
            raise
        self.stats.requests += report.requests
        for outcome in report.outcomes:
            ref: RecordRef = outcome.entry.ref  # type: ignore[assignment]
            if outcome.status is EntryStatus.WRITTEN:
                self.stats.acknowledged += 1
            elif outcome.status is EntryStatus.UNKNOWN:
                self.stats.unknown += 1
            else:
                self.stats.failed += 1
                if outcome.attempts == 0:  # never sent: one row saying why
                    reason = outcome.reason or outcome.status.value
                    self._row(outcome.entry, ref, 1, LedgerStatus.FAIL.value, None, None,
                              None, None, f"not sent ({outcome.status.value}): {reason}")  # fmt: skip
        self._rows.emit()

    def _interrupted(self, batch: list[PutEntry]) -> None:
        """The request was cut off (GreenletExit, KeyboardInterrupt): unknown unless known.

        Under Locust this happens only to a request still unanswered when the run's stop
        timeout ends (a hanging endpoint): the producer then sends nothing more."""
        self.interrupted = True
        for index, entry in enumerate(batch):
            last = self._last_event.get(index)
            if last is not None and last.outcome is AttemptOutcome.OK and not last.resent_for_order:
                continue
            attempt = (last.attempt + 1) if last is not None else 1
            self._row(entry, entry.ref, attempt, LedgerStatus.UNKNOWN.value, None, None,  # type: ignore[arg-type]
                      None, None, "interrupted: the run stopped during the request")  # fmt: skip
            self.stats.unknown += 1
        self._rows.emit()

    def _observe(self, event: AttemptEvent) -> None:
        self._last_event[event.index] = event
        ref: RecordRef = event.entry.ref  # type: ignore[assignment]
        if event.outcome is _OK and not event.resent_for_order:  # the common case, inline
            invoked, completed = event.invoked_at, event.completed_at
            if invoked != self._ms_cache[0] or completed != self._ms_cache[1]:
                self._ms_cache = (invoked, completed, int(invoked * 1000), int(completed * 1000))
            cache = self._ms_cache
            self._rows.pending.append(
                (ref.trace, self.id, ref.seq, event.attempt, *self._where,
                 event.entry.partition_key, ref.key, ref.commit_ts, ref.op, _OK_STATUS,
                 event.shard_id, event.sequence_number, cache[2], cache[3], None)
            )  # fmt: skip
            return
        error = None
        if event.outcome is not _OK:
            error = f"{event.error_code}: {event.error_message or ''}".strip()
        else:
            error = "written, sent again after an earlier entry of its key failed"
        self._row(
            event.entry, ref, event.attempt, _STATUS[event.outcome], event.shard_id,
            event.sequence_number, event.invoked_at, event.completed_at, error,
        )  # fmt: skip

    def _row(
        self, entry: PutEntry, ref: RecordRef, attempt: int, status: str, shard: str | None,
        sequence: str | None, invoked: float | None, completed: float | None, error: str | None,
    ) -> None:  # fmt: skip
        """One ledger row, a plain tuple in :data:`loadgen.ledger.COLUMNS` order."""
        now = self._clock() if invoked is None or completed is None else 0.0
        self._rows.pending.append(
            (ref.trace, self.id, ref.seq, attempt, *self._where, entry.partition_key, ref.key,
             ref.commit_ts, ref.op, status, shard, sequence,
             int((invoked if invoked is not None else now) * 1000),
             int((completed if completed is not None else now) * 1000), error)
        )  # fmt: skip

    def _not_sent(self, buffered: list[PutEntry], reason: str) -> None:
        for entry in buffered:
            self._row(entry, entry.ref, 1, LedgerStatus.FAIL.value, None, None, None, None,  # type: ignore[arg-type]
                      reason)  # fmt: skip
        self.stats.failed += len(buffered)
        self._rows.emit()


class Pacer:
    """Constant rate in records per second (None: as fast as possible), bounded catch-up.

    ``take(limit)`` is how many records are due now (at most ``limit``); ``wait(n)`` how long
    until ``n`` more are due. Behind by more than ``max_burst_s`` it forgets the debt rather
    than bursting.
    """

    def __init__(
        self, rate: float | None, clock: Callable[[], float] = time.monotonic,
        max_burst_s: float = 1.0,
    ) -> None:  # fmt: skip
        self.rate = rate if rate and rate > 0 else None
        self._clock = clock
        self._start = clock()
        self._issued = 0
        self._max_burst_s = max_burst_s

    def take(self, limit: int) -> int:
        if self.rate is None:
            self._issued += limit
            return limit
        elapsed = self._clock() - self._start
        due = int(elapsed * self.rate) - self._issued
        if due > self.rate * self._max_burst_s:
            self._issued += due - int(self.rate * self._max_burst_s)
            due = int(self.rate * self._max_burst_s)
        n = max(0, min(limit, due))
        self._issued += n
        return n

    def wait(self, n: int = 1) -> float:
        if self.rate is None:
            return 0.0
        target = (self._issued + n) / self.rate
        return max(0.0, target - (self._clock() - self._start))


def step(producer: Producer, pacer: Pacer) -> float:
    """One turn of a producer loop: take what is due, send if due; returns seconds to wait
    (until the batch would be full or the oldest record's linger ends, whichever is first)."""
    batch = producer.settings.batch_size
    n = pacer.take(batch - producer.buffered)
    if n:
        producer.add(n)
    if producer.due():
        producer.flush()
    if pacer.rate is None:
        return 0.0
    room = max(1, batch - producer.buffered)
    if producer.buffered:
        return min(pacer.wait(room), producer.linger_left())
    return min(pacer.wait(room), pacer.wait(1) + producer.settings.linger_s)


class StopEvent(Protocol):
    """What :class:`ProducerLoop` waits on: ``threading.Event`` or ``gevent.event.Event``."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class ProducerLoop:
    """A producer driven turn by turn (one :func:`step` per turn), stoppable between requests.

    :meth:`turn` first waits until the previous step said the next one is due, on ``stop``
    (an event: pass ``gevent.event.Event()`` where users are greenlets); :meth:`request_stop`
    sets it, which wakes a waiting loop at once, and a turn that has begun finishes, request
    included. No turn starts after a stop was requested; :meth:`close` then sends the final
    batch. So a stop never has to cut a request off: the caller stops the loop, not the thread
    or greenlet running it.
    """

    def __init__(self, producer: Producer, pacer: Pacer, stop: StopEvent | None = None) -> None:
        self.producer = producer
        self.pacer = pacer
        self._stop: StopEvent = stop if stop is not None else threading.Event()
        self._wait = 0.0

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Wake the loop if it waits, and start no more turns (the turn under way finishes)."""
        self._stop.set()

    def turn(self) -> bool:
        """Wait until the next step is due (or a stop), then take it; False once stopping."""
        if self._stop.is_set() or (self._wait > 0 and self._stop.wait(self._wait)):
            return False
        self._wait = step(self.producer, self.pacer)
        return True

    def close(self) -> None:
        """Stop and send the final batch (idempotent)."""
        self._stop.set()
        self.producer.close()
