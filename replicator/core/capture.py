"""Change capture from a logical replication slot into Kinesis (pure: the slot, the sender, the
dead-letter sink, clock and sleep are passed in).

Each step peeks the slot (``upto_nchanges`` = ``batch_changes``; peek does not consume), decodes
whole transactions (:mod:`replicator.core.capture_batch`), sends their records in commit order
with the ordered PutRecords engine (per-key order kept under partial failure), stores what can
never be written in the dead-letter sink, and only then advances the slot to the end of the last
transaction all of whose records were acknowledged (or dead-lettered). A crash anywhere re-reads
at most the unconfirmed transactions: duplicates, never loss or reordering.

Failures: an unreachable database (restart) or Kinesis is retried with capped exponential
backoff and logged; the slot is never advanced past what Kinesis acknowledged. A slot held by
another capture (:class:`SlotBusy`) is waited for at most ``slot_wait_s``, then the run ends
with code 2. Drain (:meth:`Capture.request_drain`): exit 0 once a peek begun after the request
returns nothing to send and everything read is confirmed; 2 after ``drain_timeout_s``. Stop
(:meth:`Capture.request_stop`): the current step ends (nothing unacknowledged is confirmed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from replicator.core.batch_result import DeadLetterRecord, DeadLetterSink
from replicator.core.capture_batch import BatchDecoder, Row, Transaction, confirmable
from replicator.core.pgoutput import format_lsn
from replicator.core.putrecords import EntryStatus, PutRecordsSender
from replicator.core.records import SourceRecord
from replicator.errors import DeadLetterError, ReplicatorError


class SourceUnavailable(ReplicatorError):
    """The database could not be reached or answered with an error (retry later)."""


class SlotBusy(SourceUnavailable):
    """Another session reads the slot ("replication slot ... is active for PID n")."""


class Slot(Protocol):
    def peek(self, upto_changes: int) -> Sequence[Row]: ...
    def advance(self, lsn: int) -> None: ...
    def pending_bytes(self) -> int | None: ...


@dataclass
class CaptureSettings:
    batch_changes: int = 5000
    poll_interval_s: float = 0.2
    drain_timeout_s: float = 60.0
    slot_wait_s: float = 60.0
    retry_base_s: float = 0.2
    retry_cap_s: float = 5.0
    progress_interval_s: float = 1.0


@dataclass
class StepResult:
    transactions: int = 0
    entries: int = 0
    confirmed: int = 0  # transactions confirmed
    complete: bool = True  # every transaction read was confirmed
    requests: int = 0


@dataclass
class CaptureStats:
    records_put: int = 0
    dead_lettered: int = 0
    transactions: int = 0
    put_requests: int = 0
    entries_sent: int = 0
    peeks: int = 0
    retried_entries: int = 0
    confirmed_lsn: int | None = None
    last_commit_ms: int | None = None
    counters: dict[str, int] = field(default_factory=dict)


class Requests:
    """Stop and drain requests (signal handlers call these). ``wake`` (set by the runner) also
    runs on a stop: it interrupts a sleep, so a stop is acted on at once."""

    clock: Callable[[], float]
    wake: Callable[[], object] | None = None
    _stop = False
    _drain_at: float | None = None
    _last_progress: float | None = None
    exit_reason = ""

    def request_stop(self) -> None:
        self._stop = True
        if self.wake is not None:
            self.wake()

    def request_drain(self) -> None:
        if self._drain_at is None:
            self._drain_at = self.clock()

    def _progress_due(self, force: bool, interval_s: float = 1.0) -> bool:
        now, last = self.clock(), self._last_progress
        if not force and last is not None and now - last < interval_s:
            return False
        self._last_progress = now
        return True


class Capture(Requests):
    def __init__(
        self,
        slot: Slot,
        decoder: BatchDecoder,
        sender: PutRecordsSender,
        dead_letters: DeadLetterSink,
        *,
        slot_name: str,
        region: str,
        settings: CaptureSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[..., None] | None = None,
        progress: Callable[[CaptureStats, int | None], None] | None = None,
    ) -> None:
        self.slot, self.decoder, self.sender, self.dead_letters = slot, decoder, sender, dead_letters
        self.slot_name, self.region = slot_name, region
        self.settings = settings or CaptureSettings()
        self.clock, self.sleep = clock, sleep
        self.log = log or (lambda event, **fields: None)
        self.progress = progress
        self.stats = CaptureStats()

    # ------------------------------------------------------------------ one step

    def step(self) -> StepResult:
        rows = self.slot.peek(self.settings.batch_changes)
        self.stats.peeks += 1
        txns = self.decoder.decode(rows)
        result = StepResult(transactions=len(txns))
        if not txns:
            return result
        entries = [e for t in txns for e in t.entries]
        result.entries = len(entries)
        report = self.sender.send(entries)
        result.requests = report.requests
        self.stats.put_requests += report.requests
        self.stats.entries_sent += len(entries) + report.retried_entries
        resolved = report.resolved_prefix
        position, covered = confirmable(txns, resolved)
        covered_entries = sum(len(t.entries) for t in txns[:covered])
        done = report.outcomes[:covered_entries]
        dead_ids = {id(o.entry) for o in done if o.status is EntryStatus.DEAD_LETTER}
        sent_dead = [d for d in report.dead_letters if id(d.entry) in dead_ids]
        letters = self._letters(txns[:covered], sent_dead)
        if letters:
            try:
                self.dead_letters.put(letters)
            except DeadLetterError as exc:
                self.log("dead_letter_failed", error=str(exc), records=len(letters))
                result.complete = False
                return result
            self.stats.dead_lettered += len(letters)
        if position is not None:
            self.slot.advance(position)  # SourceUnavailable: nothing confirmed, re-read later
            self.stats.confirmed_lsn = position
            self.stats.last_commit_ms = txns[covered - 1].commit_ms
        self.stats.records_put += sum(1 for o in done if o.status is EntryStatus.WRITTEN)
        self.stats.retried_entries += report.retried_entries
        self.stats.transactions += covered
        result.confirmed, result.complete = covered, covered == len(txns)
        if not result.complete:
            error = report.error or (report.unresolved[0].reason if report.unresolved else None)
            self.log("send_incomplete", confirmed_transactions=covered, transactions=len(txns),
                     acknowledged=resolved, entries=len(entries), error=str(error))  # fmt: skip
        return result

    def _letters(self, txns: Sequence[Transaction], sent: Sequence[Any]) -> list[DeadLetterRecord]:
        stream = self.sender.stream
        letters = [
            DeadLetterRecord(
                SourceRecord(self.slot_name, f"{format_lsn(u.lsn)}-{t.xid}", u.partition_key,
                             u.message, t.commit_ms),
                self.slot_name, self.region, self.region, u.reason, u.detail,
            )  # fmt: skip
            for t in txns
            for u in t.unwritable
        ]
        for dead in sent:
            lsn = dead.entry.ref if isinstance(dead.entry.ref, int) else 0
            letters.append(DeadLetterRecord(
                SourceRecord(stream, format_lsn(lsn), dead.entry.partition_key, dead.entry.data),
                self.slot_name, self.region, self.region, dead.reason.value, dead.detail,
            ))  # fmt: skip
        return letters

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        """Steps until stopped (0), drained (0), or unable to drain or get the slot (2)."""
        s = self.settings
        failures, busy_since = 0, None
        while True:
            if self._stop:
                self.exit_reason = "stopped"
                return 0
            now = self.clock()
            if self._drain_at is not None and now - self._drain_at > s.drain_timeout_s:
                self.exit_reason = f"could not drain within {s.drain_timeout_s:g} s"
                self.log("drain_timeout", seconds=s.drain_timeout_s)
                return 2
            began = now
            try:
                result = self.step()
            except SlotBusy as exc:
                busy_since = now if busy_since is None else busy_since
                if now - busy_since > s.slot_wait_s:
                    self.exit_reason = f"slot {self.slot_name} stayed busy for {s.slot_wait_s:g} s"
                    self.log("slot_busy_gave_up", error=str(exc), seconds=s.slot_wait_s)
                    return 2
                self.log("slot_busy", error=str(exc), note="another capture reads the slot; "
                         "waiting for it to let go")  # fmt: skip
                self._pause(min(s.retry_cap_s, 1.0))
                continue
            except SourceUnavailable as exc:
                failures += 1
                self.log("source_unavailable", error=str(exc), attempt=failures)
                self._pause(min(s.retry_cap_s, s.retry_base_s * 2 ** min(failures - 1, 10)))
                continue
            busy_since = None
            if result.complete:
                failures = 0
            self._report(False)
            if self._drain_at is not None and began >= self._drain_at and result.entries == 0 \
                    and result.complete:  # fmt: skip
                self.exit_reason = "drained"
                self._report(True)
                self.log("drained", confirmed_lsn=_lsn(self.stats.confirmed_lsn))
                return 0
            if not result.complete:
                failures += 1
                self._pause(min(s.retry_cap_s, s.retry_base_s * 2 ** min(failures - 1, 10)))
            elif result.transactions == 0:
                self._pause(s.poll_interval_s)

    def _pause(self, seconds: float) -> None:
        if not self._stop:
            self.sleep(seconds)

    def _report(self, force: bool) -> None:
        if self.progress is None or not self._progress_due(force, self.settings.progress_interval_s):
            return
        try:
            pending = self.slot.pending_bytes()
        except SourceUnavailable:
            pending = None
        self.progress(self.stats, pending)


def _lsn(value: int | None) -> str | None:
    return None if value is None else format_lsn(value)
