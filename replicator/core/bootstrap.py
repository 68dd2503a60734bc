"""The ``dynamodb`` pipeline's bootstrap copy: a parallel scan of A's table into B (pure).

Why the copy runs first and live apply replays the stream from its start
-----------------------------------------------------------------------
A table has history older than its stream's 24 hours, so live apply alone cannot build B: the
existing items must be copied. A copy racing live writes must not lose a write made during
the copy, and must not let a copied value overwrite a newer change (REFERENCE.md, "DynamoDB
and DynamoDB Streams"). The handover chosen here:

1. the copy runs FIRST while live apply waits (its gate, "bootstrap complete?", stays shut);
2. live apply then starts every stream shard at TRIM_HORIZON (no live checkpoint exists yet),
   replaying A's stream from before the copy began, in order per key.

Every change made during the copy (or after it) is in the stream, after the copy began, and
carries the item's full new image (or is a delete). Replayed in order per key after the copy,
the last change of each key is applied last: a write made during the copy ends in its final
state whatever the copy read, and no copied value survives a newer change. A key that did not
change since the copy began holds the copied value, which was current. Replaying changes older
than the copy is harmless (a later change of the same key follows them). So the scan needs no
consistent reads, no snapshot and no per-key watermarks: the stream fixes what the copy saw.

Preconditions, checked before copying:

- A's table has a stream that carries new images (``NEW_IMAGE`` or ``NEW_AND_OLD_IMAGES``):
  otherwise nothing could repair what changes during the copy, and the copy refuses with a
  clear error (:class:`BootstrapPreconditionError`);
- no live-apply checkpoint row exists yet in the scope: if one does, the stream was already
  applied without a bootstrap, and copying now would write scanned values over live data.
  The bootstrap is skipped with a logged warning (:attr:`Outcome.SKIPPED_LIVE`).

The stream keeps records 24 hours. If the copy (from its first start, take-overs included)
took longer than that retention minus a margin, records written early in the copy may be
trimmed before the replay reads them: the result says so loudly (``warnings``, and the
``bootstrap_retention_exceeded`` log event), because changes may then be missing from B.

Crash safety and take-over
--------------------------
The state row (:class:`~xrh.contracts.BootstrapRow`'s attributes, in B's checkpoint table) is
taken with a conditional write: created if absent, or taken over only while ``copying`` and
its heartbeat is older than the lease duration (its owner is dead or cut off). The owner renews
the heartbeat (conditional on owner and the counter it last saw, like a shard lease) and every
write it makes, to B's table or to a segment row, is fenced by time
(:class:`~replicator.core.fence.LeaseFence`): it writes only while its last confirmed heartbeat
leaves more than the write timeout plus the clock skew, so a paused owner cannot write after a
successor took over.

One thread per segment (``Scan`` with ``Segment``/``TotalSegments``): each page is written
through :class:`~replicator.core.table_writes.BatchWriter`, then, only once every item of the
page is acknowledged (written, or dead-lettered with its data), the segment row records the
page's ``LastEvaluatedKey`` and the running count. A crashed copy resumes each segment after
its last recorded page (the page in flight is copied again, harmlessly) with the segment count
it started with, and completes the row: ``copying`` -> ``complete`` with the items copied and
the copy seconds. Items that can never be written go to the dead-letter sink with the item and
the reason (as a table change, :class:`~replicator.core.batch.DeadLetterRecord`) and are
counted, never dropped.

Scanner, writer, stores, dead-letter sink, clock and sleep are passed in; the boto3 adapters are
:class:`replicator.adapters.dynamodb.DynamoTableScanner` and ``DynamoBootstrapStore``.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from replicator.core.batch import DeadLetterRecord, DeadLetterSink
from replicator.core.changes import ChangeEvent, ChangeRecord
from replicator.core.fence import LeaseFence
from replicator.core.putrecords import Backoff
from replicator.core.table_writes import BatchWriter, WriteRequest
from replicator.errors import (
    DeadLetterError,
    LeaseLost,
    ReplicatorError,
    ReplicatorUsageError,
)

#: DynamoDB Streams keeps records this long (REFERENCE.md).
STREAM_RETENTION_MS = 24 * 3600 * 1000
NEW_IMAGE_VIEWS = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")


#: Row ids in the checkpoint table, equal to ``xrh.contracts.BOOTSTRAP_SHARD_ID`` and
#: ``BOOTSTRAP_SEGMENT_PREFIX`` (the replicator package does not import ``xrh``; a test holds
#: them equal, and this module's rows to :class:`xrh.contracts.BootstrapRow`).
BOOTSTRAP_SHARD_ID = "#bootstrap"
BOOTSTRAP_SEGMENT_PREFIX = "#bootstrap/segment-"


def segment_row_id(segment: int) -> str:
    return f"{BOOTSTRAP_SEGMENT_PREFIX}{segment:04d}"


class BootstrapState(enum.Enum):
    COPYING = "copying"  # a parallel scan copy is under way: live apply waits
    COMPLETE = "complete"  # every segment copied: live apply replays the stream from its start


@dataclass(frozen=True, slots=True)
class BootstrapRow:
    """The state row as :class:`xrh.contracts.BootstrapRow` reads it (same attributes:
    ``state`` S, ``owner`` S, ``heartbeatMs`` N, ``startedAtMs`` N, ``completedAtMs`` N,
    ``segments`` N, ``itemsCopied`` N, ``copySeconds`` N; and ``leaseCounter`` N, the fencing
    token, which verify does not read)."""

    state: BootstrapState
    owner: str
    heartbeat_ms: int
    started_at_ms: int
    segments: int
    items_copied: int = 0
    completed_at_ms: int | None = None
    copy_seconds: float | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> BootstrapRow:
        """From a plain (deserialised) item."""

        def num(name: str) -> float | None:
            value = item.get(name)
            return None if value is None else float(value)

        completed = num("completedAtMs")
        return cls(
            state=BootstrapState(str(item["state"])),
            owner=str(item.get("owner", "")),
            heartbeat_ms=int(num("heartbeatMs") or 0),
            started_at_ms=int(num("startedAtMs") or 0),
            segments=int(num("segments") or 0),
            items_copied=int(num("itemsCopied") or 0),
            completed_at_ms=None if completed is None else int(completed),
            copy_seconds=num("copySeconds"),
        )


class BootstrapError(ReplicatorError):
    """The bootstrap copy could not go on (its state rows could not be read or written)."""


class BootstrapPreconditionError(BootstrapError, ReplicatorUsageError):
    """The source table cannot be bootstrapped as configured (no stream with new images)."""


# --------------------------------------------------------------------------- seams


@dataclass(frozen=True, slots=True)
class TableInfo:
    """What DescribeTable says of the source table."""

    name: str
    key_names: tuple[str, ...]  # hash key, then range key if any
    item_count: int | None = None  # DescribeTable ItemCount: an estimate (updated ~6 hourly)
    stream_view_type: str | None = None  # None: no stream enabled


@dataclass(frozen=True, slots=True)
class ScanPage:
    items: list[dict[str, Any]]  # wire form
    last_key: dict[str, Any] | None  # LastEvaluatedKey; None at the end of the segment


class TableScanner(Protocol):
    """Parallel Scan of the source table. ``scan`` retries throttling itself and raises a
    ReplicatorError when it gives up. Must be safe to call from several threads at once."""

    calls: int

    def describe(self) -> TableInfo: ...

    def scan(
        self, segment: int, total_segments: int, start_key: dict[str, Any] | None
    ) -> ScanPage: ...


@dataclass(frozen=True, slots=True)
class SegmentProgress:
    """A segment row: ``lastKey`` (after the last acknowledged page), ``done``, ``items``."""

    segment: int
    last_key: dict[str, Any] | None = None
    done: bool = False
    items: int = 0  # items written to B from this segment (acknowledged pages only)
    dead: int = 0  # items of this segment dead-lettered


@dataclass(frozen=True, slots=True)
class Taken:
    """The state row as this owner took it, with the lease counter (fencing token)."""

    row: BootstrapRow
    counter: int


class BootstrapStore(Protocol):
    """The state row and segment rows in the target's checkpoint table (conditional writes).

    - ``take``: create the row (``copying``, this owner, ``segments``) if absent, or take it
      over while ``copying`` if its owner is this one or its heartbeat is older than
      ``now_ms - lease_ms``; keeps ``startedAtMs`` and ``segments``; bumps the counter. None
      when the condition failed (complete, or another live owner).
    - ``renew``: heartbeat and ``itemsCopied``, conditional on owner, counter and ``copying``;
      the new counter, or None if the row is not ours any more.
    - ``save_segment``: a segment row; never moves backwards (``items`` grows, ``done`` stays).
      False when the condition failed.
    - ``complete``: ``copying`` -> ``complete`` conditional on owner and counter.
    - ``release``: heartbeat 0 (a successor need not wait for the lease), conditional on owner.

    Read or write failures raise ReplicatorError."""

    calls: int

    def read(self) -> BootstrapRow | None: ...

    def segments(self) -> dict[int, SegmentProgress]: ...

    def take(self, owner: str, now_ms: int, lease_ms: int, segments: int) -> Taken | None: ...

    def renew(self, owner: str, now_ms: int, counter: int, items_copied: int) -> int | None: ...

    def save_segment(self, progress: SegmentProgress) -> bool: ...

    def complete(
        self, owner: str, counter: int, now_ms: int, items_copied: int, copy_seconds: float
    ) -> bool: ...

    def release(self, owner: str, counter: int) -> bool: ...


# --------------------------------------------------------------------------- results


class Outcome(enum.Enum):
    COPIED = "copied"  # this process completed the copy (or the last part of it)
    ALREADY_COMPLETE = "already complete"  # the state row said complete
    SKIPPED_LIVE = "skipped: live apply already ran"  # checkpoints without a bootstrap
    STOPPED = "stopped"  # request_stop() before the copy completed


@dataclass(frozen=True, slots=True)
class BootstrapProgress:
    items_copied: int  # every segment's acknowledged items (other owners' included)
    estimated_total: int | None
    rate: float  # items/s copied by this process since it took the copy
    segments_done: int
    segments: int
    elapsed_s: float
    owner: str | None = None  # who copies (another process while this one waits)
    waiting: bool = False


@dataclass(slots=True)
class BootstrapResult:
    outcome: Outcome
    row: BootstrapRow | None = None
    items_copied: int = 0  # total in the state row (all owners)
    copied_here: int = 0  # by this process
    dead: int = 0  # dead-lettered by this process
    copy_seconds: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def open_gate(self) -> bool:
        """Live apply may start."""
        return self.outcome is not Outcome.STOPPED

    @property
    def items_per_s(self) -> float | None:
        if not self.copy_seconds:
            return None
        return self.items_copied / self.copy_seconds


@dataclass(frozen=True, slots=True)
class BootstrapSettings:
    segments: int = 4
    lease_ms: int = 6_000
    renew_interval_s: float = 1.5
    #: a write starts only with this much lease left: the write timeout plus the clock skew
    guard_ms: int = 2_500
    wait_interval_s: float = 1.0  # re-read the state row while another owner copies
    progress_interval_s: float = 1.0
    retention_ms: int = STREAM_RETENTION_MS
    retention_margin_ms: int = 3600 * 1000
    #: pause between attempts at a page that failed (scan error, items left unwritten)
    retry: Backoff = field(default_factory=lambda: Backoff(base=0.2, cap=5.0, max_attempts=0))

    def __post_init__(self) -> None:
        if self.segments < 1:
            raise ValueError(f"segments must be at least 1, not {self.segments}")
        if self.guard_ms >= self.lease_ms:
            raise ValueError(f"guard {self.guard_ms} ms must be below the lease {self.lease_ms}")


def _no_log(event: str, **fields: object) -> None:
    return None


# --------------------------------------------------------------------------- the copy


class Bootstrap:
    """Runs the bootstrap copy to completion, waits for another owner's, or skips it."""

    def __init__(
        self,
        *,
        scanner: TableScanner,
        writer: BatchWriter,
        store: BootstrapStore,
        live_checkpoints: Callable[[], bool],
        dead_letters: DeadLetterSink,
        owner: str,
        source_region: str,
        target_region: str,
        settings: BootstrapSettings | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        sleep: Callable[[float], object] | None = None,
        random: Callable[[], float] | None = None,
        on_progress: Callable[[BootstrapProgress], None] = lambda p: None,
        log: Callable[..., None] = _no_log,
    ) -> None:
        import random as _random

        self.scanner = scanner
        self.writer = writer
        self.store = store
        self.live_checkpoints = live_checkpoints
        self.dead_letters = dead_letters
        self.owner = owner
        self.source_region = source_region
        self.target_region = target_region
        self.settings = settings or BootstrapSettings()
        self.clock_ms = clock_ms
        self._halt = threading.Event()  # stop copying (stop requested, or the lease was lost)
        self._stop = threading.Event()
        self.sleep = sleep if sleep is not None else self._stop.wait
        self.random = random or _random.random
        self.on_progress = on_progress
        self.log = log
        self._lock = threading.Lock()
        self._progress: dict[int, SegmentProgress] = {}
        self._copied_here = 0
        self._dead_here = 0
        self.info: TableInfo | None = None
        self.result: BootstrapResult | None = None
        self.last_progress: BootstrapProgress | None = None
        self.state = "starting"  # starting | waiting | copying | done: for status displays

    # ------------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Stop after the pages in flight (their progress recorded) and release the row."""
        self._stop.set()
        self._halt.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def copied_here(self) -> int:
        """Items this process wrote (acknowledged pages)."""
        return self._copied_here

    @property
    def dead_here(self) -> int:
        return self._dead_here

    def _publish(self, progress: BootstrapProgress) -> None:
        self.last_progress = progress
        self.on_progress(progress)

    # ------------------------------------------------------------------ top level

    def check(self) -> TableInfo:
        """The source table's description; refuses a table without a stream of new images."""
        info = self.scanner.describe()
        if info.stream_view_type not in NEW_IMAGE_VIEWS:
            have = (
                "has no stream"
                if info.stream_view_type is None
                else f"has a stream of {info.stream_view_type}"
            )
            raise BootstrapPreconditionError(
                f"table {info.name} in {self.source_region} {have}: the bootstrap copy needs a "
                f"stream with new images ({' or '.join(NEW_IMAGE_VIEWS)}) so that live apply can "
                "replay every change made during the copy; enable it (xrh provision "
                "--pipeline dynamodb creates it so) and run again"
            )
        self.info = info
        return info

    def run(self) -> BootstrapResult:
        """Copy, wait for another owner's copy, or skip; returns once live apply may start
        (or once stopped). Raises BootstrapPreconditionError for a table without a stream."""
        announced_wait = False
        failures = 0
        info = self.info
        while not self._stop.is_set():
            try:
                info = info or self.check()
                result = self._attempt(info, announced_wait)
            except BootstrapPreconditionError:
                raise
            except ReplicatorError as exc:  # the endpoint or the state rows: try again
                failures += 1
                self.log("bootstrap_error", error=f"{type(exc).__name__}: {exc}")
                self._pause(failures)
                continue
            failures = 0
            if isinstance(result, BootstrapResult):
                return result
            announced_wait = result
        return self._done(Outcome.STOPPED, None)

    def _attempt(self, info: TableInfo, announced_wait: bool) -> BootstrapResult | bool:
        """One look at the state row: a result, or whether waiting was announced."""
        row = self.store.read()
        if row is not None and row.state is BootstrapState.COMPLETE:
            return self._done(Outcome.ALREADY_COMPLETE, row)
        if self.live_checkpoints():
            again = self.store.read()
            if again is not None and again.state is BootstrapState.COMPLETE:
                return self._done(Outcome.ALREADY_COMPLETE, again)
            message = (
                f"live-apply checkpoints already exist for {info.name}: its stream was "
                "applied without a bootstrap copy; the copy is skipped so that no scanned "
                "value is written over live data (items older than what the stream held "
                "then may be missing from the target)"
            )
            self.log("bootstrap_skipped", reason="live checkpoints exist", warning=message)
            return self._done(Outcome.SKIPPED_LIVE, row, warnings=[message])
        taken = self.store.take(
            self.owner, self.clock_ms(), self.settings.lease_ms, self.settings.segments
        )
        if taken is None:
            self.state = "waiting"
            if not announced_wait and row is not None:
                self.log("bootstrap_waiting", owner=row.owner, heartbeat_ms=row.heartbeat_ms)
                announced_wait = True
            if row is not None:
                self._report_wait(row)
            self.sleep(self.settings.wait_interval_s)
            return announced_wait
        result = self._copy(info, taken, previous=row.owner if row is not None else None)
        if result is not None:
            return result
        self.sleep(self.settings.wait_interval_s)  # lost the row: wait, maybe take it again
        return False

    def _done(
        self, outcome: Outcome, row: BootstrapRow | None, warnings: list[str] | None = None
    ) -> BootstrapResult:
        self.state = "done"
        self.result = BootstrapResult(
            outcome,
            row,
            items_copied=row.items_copied if row else 0,
            copied_here=self._copied_here,
            dead=self._dead_here,
            copy_seconds=row.copy_seconds if row else None,
            warnings=list(warnings or []),
        )
        return self.result

    def _report_wait(self, row: BootstrapRow) -> None:
        self._publish(
            BootstrapProgress(
                row.items_copied,
                self.info.item_count if self.info else None,
                0.0,
                0,
                row.segments,
                max(0.0, (self.clock_ms() - row.started_at_ms) / 1000),
                owner=row.owner,
                waiting=True,
            )
        )

    # ------------------------------------------------------------------ one tenure

    def _copy(
        self, info: TableInfo, taken: Taken, previous: str | None = None
    ) -> BootstrapResult | None:
        """Copy as owner until complete (a result), stopped (a result) or lost (None)."""
        s = self.settings
        row = taken.row
        self.state = "copying"
        self._halt.clear()
        if self._stop.is_set():
            self._halt.set()
        segments = row.segments
        if segments != s.segments:
            self.log("bootstrap_segments_kept", segments=segments, requested=s.segments,
                     note="a copy resumes with the segment count it started with")  # fmt: skip
        stored = self.store.segments()
        with self._lock:
            self._progress = {i: stored.get(i, SegmentProgress(i)) for i in range(segments)}
        resumed = {i: p.items for i, p in self._progress.items() if p.items or p.done}
        self.log("bootstrap_taken", owner=self.owner, counter=taken.counter, segments=segments,
                 resumed_segments=resumed, previous_owner=previous,
                 estimated_items=info.item_count)  # fmt: skip
        lease = _Lease(self, taken.counter)
        started = self.clock_ms()
        copied_at_start = self._copied_here
        todo = [i for i, p in sorted(self._progress.items()) if not p.done]
        pool = ThreadPoolExecutor(max(1, len(todo)), thread_name_prefix="bootstrap-segment")
        futures: list[Future[None]] = [pool.submit(self._segment, i, info, lease) for i in todo]
        next_progress = 0.0
        try:
            while True:
                finished, pending = wait(
                    futures, timeout=min(s.renew_interval_s, s.progress_interval_s),
                    return_when=FIRST_EXCEPTION,
                )  # fmt: skip
                for future in finished:
                    if future.exception() is not None:
                        self._halt.set()
                        for other in futures:
                            other.cancel()
                        raise future.exception()  # type: ignore[misc]
                lease.heartbeat(self._items_total())
                now = time.monotonic()
                if now >= next_progress or not pending:
                    elapsed = max(1e-9, (self.clock_ms() - started) / 1000)
                    self._emit(info, row, (self._copied_here - copied_at_start) / elapsed)
                    next_progress = now + s.progress_interval_s
                if not pending:
                    break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if lease.lost:
            self.log("bootstrap_lost", owner=self.owner,
                     note="another process took the copy over; waiting for it")  # fmt: skip
            self.state = "waiting"
            return None
        if not all(p.done for p in self._progress.values()):
            if self._stop.is_set():
                try:
                    self.store.release(self.owner, lease.counter)
                except ReplicatorError as exc:
                    self.log("bootstrap_release_failed", error=str(exc))
                self.log("bootstrap_stopped", items_copied=self._items_total())
                return self._done(Outcome.STOPPED, None)
            return None  # pragma: no cover - a segment ends only when done, halted or failed
        return self._complete(info, row, lease)

    def _complete(
        self, info: TableInfo, row: BootstrapRow, lease: _Lease
    ) -> BootstrapResult | None:
        items = self._items_total()
        failures = 0
        while True:
            now = self.clock_ms()
            seconds = round(max(0, now - row.started_at_ms) / 1000, 3)
            try:
                lease.check()
                done = self.store.complete(self.owner, lease.counter, now, items, seconds)
                break
            except LeaseLost:
                done = False
                break
            except ReplicatorError as exc:
                failures += 1
                self.log("bootstrap_complete_failed", error=str(exc))
                if self._stop.is_set():
                    return self._done(Outcome.STOPPED, None)  # a successor completes it
                self._pause(failures)
        if not done:
            self.log("bootstrap_lost", owner=self.owner, note="lost the row before completing")
            return None
        warnings: list[str] = []
        limit = self.settings.retention_ms - self.settings.retention_margin_ms
        if seconds * 1000 > limit:
            message = (
                f"the bootstrap copy of {info.name} took {seconds:.0f} s, longer than the "
                f"stream's retention ({self.settings.retention_ms / 3_600_000:g} h) minus a "
                f"margin of {self.settings.retention_margin_ms / 3_600_000:g} h: changes made "
                "early in the copy may have been trimmed from the stream before live apply "
                "reads them, so the target MAY MISS CHANGES; compare the tables (xrh verify "
                "--table) or copy again into an empty target"
            )
            warnings.append(message)
            self.log("bootstrap_retention_exceeded", copy_seconds=seconds, warning=message)
        complete = replace(
            row,
            state=BootstrapState.COMPLETE,
            owner=self.owner,
            heartbeat_ms=now,
            items_copied=items,
            completed_at_ms=now,
            copy_seconds=seconds,
        )
        self.log("bootstrap_complete", items_copied=items, copied_here=self._copied_here,
                 dead_lettered=self._dead_here, copy_seconds=seconds,
                 items_per_s=round(items / seconds, 1) if seconds else None)  # fmt: skip
        return self._done(Outcome.COPIED, complete, warnings)

    def _items_total(self) -> int:
        with self._lock:
            return sum(p.items for p in self._progress.values())

    def _emit(self, info: TableInfo, row: BootstrapRow, rate: float) -> None:
        with self._lock:
            items = sum(p.items for p in self._progress.values())
            done = sum(1 for p in self._progress.values() if p.done)
        self._publish(
            BootstrapProgress(
                items, info.item_count, rate, done, row.segments,
                max(0.0, (self.clock_ms() - row.started_at_ms) / 1000), owner=self.owner,
            )
        )  # fmt: skip

    # ------------------------------------------------------------------ one segment

    def _pause(self, failures: int) -> None:
        self.sleep(self.settings.retry.delay(failures, self.random()))

    def _segment(self, segment: int, info: TableInfo, lease: _Lease) -> None:
        """Copy one segment page by page until done, halted or the lease is lost."""
        with self._lock:
            progress = self._progress[segment]
        total = len(self._progress)
        failures = 0
        while not self._halt.is_set():
            try:
                page = self.scanner.scan(segment, total, progress.last_key)
            except ReplicatorError as exc:
                failures += 1
                self.log("bootstrap_scan_failed", segment=segment, error=str(exc))
                self._pause(failures)
                continue
            position = progress.items + progress.dead
            written, dead = self._write_page(segment, position, info, page, lease)
            if written is None:
                return  # halted with the page unacknowledged: a successor copies it again
            after = SegmentProgress(
                segment, page.last_key, page.last_key is None,
                progress.items + written, progress.dead + dead,
            )  # fmt: skip
            if not self._save(after, lease):
                return
            with self._lock:
                self._progress[segment] = progress = after
                self._copied_here += written
                self._dead_here += dead
            failures = 0
            if after.done:
                return

    def _write_page(
        self, segment: int, position: int, info: TableInfo, page: ScanPage, lease: _Lease
    ) -> tuple[int | None, int]:
        """Write every item of the page: (written, dead), or (None, 0) if halted first."""
        keys = info.key_names
        pending = [WriteRequest({k: item[k] for k in keys}, item) for item in page.items]
        written = dead = failures = 0
        while pending:
            if self._halt.is_set():
                return None, 0
            report = self.writer.write(pending, guard=lease.check)
            written += report.written
            if report.dead:
                letters = [
                    self._letter(info, segment, position, r, reason) for r, reason in report.dead
                ]
                if not self._dead_letter(letters):
                    return None, 0
                dead += len(letters)
            pending = report.unwritten
            if pending:
                if isinstance(report.fenced, LeaseLost):
                    return None, 0
                failures += 1
                self.log("bootstrap_page_retry", segment=segment, unwritten=len(pending),
                         error=str(report.fenced or report.error))  # fmt: skip
                self._pause(failures)
        return written, dead

    def _letter(
        self, info: TableInfo, segment: int, position: int, request: WriteRequest, reason: str
    ) -> DeadLetterRecord:
        """A dead item as the dead-letter sink stores a table change: the scanned item as an
        INSERT's new image, "shard" ``#bootstrap/segment-NNNN`` and, as its sequence number,
        the page's position in the segment (a page copied again overwrites its letters)."""
        change = ChangeRecord(
            segment_row_id(segment), str(position), ChangeEvent.INSERT, request.key,
            request.item, None,
        )  # fmt: skip
        kind, _, detail = reason.partition(": ")
        return DeadLetterRecord(
            change, info.name, self.source_region, self.target_region, kind, detail or reason
        )

    def _dead_letter(self, letters: list[DeadLetterRecord]) -> bool:
        failures = 0
        while not self._halt.is_set():
            try:
                self.dead_letters.put(letters)
            except DeadLetterError as exc:
                failures += 1
                self.log("bootstrap_dead_letter_failed", error=str(exc))
                self._pause(failures)
                continue
            for letter in letters:
                self.log("bootstrap_dead_lettered", key=letter.record.keys,
                         reason=letter.reason, detail=letter.detail)  # fmt: skip
            return True
        return False

    def _save(self, after: SegmentProgress, lease: _Lease) -> bool:
        failures = 0
        while not lease.lost:  # a page written before a stop is still recorded
            try:
                lease.check()
                if self.store.save_segment(after):
                    return True
                self.log("bootstrap_segment_conflict", segment=after.segment,
                         note="the segment row is ahead: another owner copies it")  # fmt: skip
                lease.lose()
                return False
            except LeaseLost:
                return False
            except ReplicatorError as exc:
                failures += 1
                self.log("bootstrap_progress_failed", segment=after.segment, error=str(exc))
                if self._halt.is_set():
                    return False
                self._pause(failures)
        return False


class _Lease:
    """The state row as a lease: renewed by the main thread, checked before every write by
    the segment threads (one lock: two renewals with the same counter would fence us out)."""

    def __init__(self, owner: Bootstrap, counter: int) -> None:
        self.b = owner
        self.lock = threading.Lock()
        self.items = 0
        s = owner.settings
        self.fence = LeaseFence(
            "#bootstrap",
            counter=counter,
            expires_at_ms=owner.clock_ms() + s.lease_ms,
            duration_ms=s.lease_ms,
            guard_ms=s.guard_ms,
            renew=self._renew,
            clock_ms=owner.clock_ms,
        )
        self.last_renew_ms = owner.clock_ms()

    @property
    def counter(self) -> int:
        return self.fence.counter

    @property
    def lost(self) -> bool:
        return self.fence.lost

    def lose(self) -> None:
        self.fence.mark_lost()
        self.b._halt.set()

    def _renew(self, now_ms: int, seen: int) -> int | None:
        return self.b.store.renew(self.b.owner, now_ms, seen, self.items)

    def check(self) -> int:
        """The guard of every write: raises LeaseLost / LeaseUnconfirmed (retry later)."""
        with self.lock:
            try:
                return self.fence.check()
            except LeaseLost:
                self.b._halt.set()
                raise

    def heartbeat(self, items: int) -> None:
        """The regular renewal (every ``renew_interval_s``), carrying the items copied."""
        interval_ms = self.b.settings.renew_interval_s * 1000
        if self.fence.lost or self.b.clock_ms() - self.last_renew_ms < interval_ms:
            return
        with self.lock:
            self.items = items
            now = self.b.clock_ms()
            try:
                counter = self._renew(now, self.fence.counter)
            except ReplicatorError as exc:
                self.b.log("bootstrap_heartbeat_failed", error=str(exc))
                return
            self.last_renew_ms = now
            if counter is None:
                self.fence.mark_lost()
                self.b._halt.set()
            else:
                self.fence.renewed(counter, now + self.b.settings.lease_ms)


# --------------------------------------------------------------------------- in-memory store


class MemoryBootstrapStore:
    """BootstrapStore in memory, with the conditions of the DynamoDB adapter (for tests)."""

    def __init__(self) -> None:
        self.row: dict[str, Any] | None = None
        self.rows: dict[int, SegmentProgress] = {}
        self.calls = 0
        self.saves: list[SegmentProgress] = []
        self._lock = threading.Lock()

    def read(self) -> BootstrapRow | None:
        with self._lock:
            self.calls += 1
            return None if self.row is None else BootstrapRow.from_item(self.row)

    def segments(self) -> dict[int, SegmentProgress]:
        with self._lock:
            self.calls += 1
            return dict(self.rows)

    def take(self, owner: str, now_ms: int, lease_ms: int, segments: int) -> Taken | None:
        with self._lock:
            self.calls += 1
            row = self.row
            if row is not None and not (
                row["state"] == BootstrapState.COPYING.value
                and (row["owner"] == owner or row["heartbeatMs"] < now_ms - lease_ms)
            ):
                return None
            if row is None:
                row = self.row = {"startedAtMs": now_ms, "segments": segments, "leaseCounter": 0,
                                  "itemsCopied": 0}  # fmt: skip
            row.update(state=BootstrapState.COPYING.value, owner=owner, heartbeatMs=now_ms)
            row["leaseCounter"] += 1
            return Taken(BootstrapRow.from_item(row), row["leaseCounter"])

    def _mine(self, owner: str, counter: int) -> bool:
        row = self.row
        return (
            row is not None
            and row["state"] == BootstrapState.COPYING.value
            and row["owner"] == owner
            and row["leaseCounter"] == counter
        )

    def renew(self, owner: str, now_ms: int, counter: int, items_copied: int) -> int | None:
        with self._lock:
            self.calls += 1
            if not self._mine(owner, counter):
                return None
            assert self.row is not None
            self.row.update(heartbeatMs=now_ms, itemsCopied=items_copied)
            self.row["leaseCounter"] += 1
            return self.row["leaseCounter"]

    def save_segment(self, progress: SegmentProgress) -> bool:
        with self._lock:
            self.calls += 1
            old = self.rows.get(progress.segment)
            if old is not None and (old.done or old.items > progress.items):
                return False
            self.rows[progress.segment] = progress
            self.saves.append(progress)
            return True

    def complete(
        self, owner: str, counter: int, now_ms: int, items_copied: int, copy_seconds: float
    ) -> bool:
        with self._lock:
            self.calls += 1
            if not self._mine(owner, counter):
                return False
            assert self.row is not None
            self.row.update(state=BootstrapState.COMPLETE.value, heartbeatMs=now_ms,
                            completedAtMs=now_ms, itemsCopied=items_copied,
                            copySeconds=copy_seconds)  # fmt: skip
            return True

    def release(self, owner: str, counter: int) -> bool:
        with self._lock:
            self.calls += 1
            if not self._mine(owner, counter):
                return False
            assert self.row is not None
            self.row["heartbeatMs"] = 0
            return True
