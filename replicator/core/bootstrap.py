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
successor took over. Rows, store seam and lease: :mod:`replicator.core.bootstrap_ownership`.

One thread per segment copies pages and records each segment's progress only after the page is
acknowledged (:mod:`replicator.core.bootstrap_segments`). A crashed copy resumes each segment
after its last recorded page with the segment count it started with, and completes the row:
``copying`` -> ``complete`` with the items copied and the copy seconds.

This module decides what to do (copy, wait, skip), runs one tenure as owner and reports
progress. Scanner, writer, stores, dead-letter sink, clock and sleep are passed in; the boto3
adapters are in :mod:`replicator.adapters.dynamodb_bootstrap`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

from replicator.core.batch import DeadLetterSink
from replicator.core.bootstrap_ownership import (
    BOOTSTRAP_SEGMENT_PREFIX,
    BOOTSTRAP_SHARD_ID,
    BootstrapRow,
    BootstrapState,
    BootstrapStore,
    CopyLease,
    MemoryBootstrapStore,
    SegmentProgress,
    Taken,
    segment_row_id,
)
from replicator.core.bootstrap_report import (
    BootstrapProgress,
    BootstrapResult,
    Outcome,
    retention_warning,
)
from replicator.core.bootstrap_segments import ScanPage, SegmentCopier, TableInfo, TableScanner
from replicator.core.putrecords import Backoff
from replicator.core.table_writes import BatchWriter
from replicator.errors import LeaseLost, ReplicatorError, ReplicatorUsageError

#: Importable from here as before the copy's ownership and engine had modules of their own.
__all__ = [
    "BOOTSTRAP_SEGMENT_PREFIX", "BOOTSTRAP_SHARD_ID", "NEW_IMAGE_VIEWS", "STREAM_RETENTION_MS",
    "Bootstrap", "BootstrapError", "BootstrapPreconditionError", "BootstrapProgress",
    "BootstrapResult", "BootstrapRow", "BootstrapSettings", "BootstrapState", "BootstrapStore",
    "MemoryBootstrapStore", "Outcome", "ScanPage", "SegmentProgress", "TableInfo",
    "TableScanner", "Taken", "segment_row_id",
]  # fmt: skip

#: DynamoDB Streams keeps records this long (REFERENCE.md).
STREAM_RETENTION_MS = 24 * 3600 * 1000
NEW_IMAGE_VIEWS = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")


class BootstrapError(ReplicatorError):
    """The bootstrap copy could not go on (its state rows could not be read or written)."""


class BootstrapPreconditionError(BootstrapError, ReplicatorUsageError):
    """The source table cannot be bootstrapped as configured (no stream with new images)."""


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
        self.copier = SegmentCopier(
            scanner=scanner, writer=writer, store=store, dead_letters=dead_letters,
            source_region=source_region, target_region=target_region, halt=self._halt,
            pause=self._pause, log=log,
        )  # fmt: skip
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
        return self.copier.copied

    @property
    def dead_here(self) -> int:
        return self.copier.dead

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
            copied_here=self.copied_here,
            dead=self.dead_here,
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
        self.copier.resume(segments, stored)
        resumed = {i: p.items for i, p in self.copier.progress.items() if p.items or p.done}
        self.log("bootstrap_taken", owner=self.owner, counter=taken.counter, segments=segments,
                 resumed_segments=resumed, previous_owner=previous,
                 estimated_items=info.item_count)  # fmt: skip
        lease = CopyLease(
            self.store, self.owner, taken.counter, lease_ms=s.lease_ms, guard_ms=s.guard_ms,
            renew_interval_s=s.renew_interval_s, clock_ms=self.clock_ms, halt=self._halt,
            log=self.log,
        )  # fmt: skip
        started = self.clock_ms()
        copied_at_start = self.copied_here
        todo = [i for i, p in sorted(self.copier.progress.items()) if not p.done]
        pool = ThreadPoolExecutor(max(1, len(todo)), thread_name_prefix="bootstrap-segment")
        futures: list[Future[None]] = [pool.submit(self.copier.copy, i, info, lease) for i in todo]
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
                lease.heartbeat(self.copier.items_total())
                now = time.monotonic()
                if now >= next_progress or not pending:
                    elapsed = max(1e-9, (self.clock_ms() - started) / 1000)
                    self._emit(info, row, (self.copied_here - copied_at_start) / elapsed)
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
        if not self.copier.all_done():
            if self._stop.is_set():
                try:
                    self.store.release(self.owner, lease.counter)
                except ReplicatorError as exc:
                    self.log("bootstrap_release_failed", error=str(exc))
                self.log("bootstrap_stopped", items_copied=self.copier.items_total())
                return self._done(Outcome.STOPPED, None)
            return None  # pragma: no cover - a segment ends only when done, halted or failed
        return self._complete(info, row, lease)

    def _complete(
        self, info: TableInfo, row: BootstrapRow, lease: CopyLease
    ) -> BootstrapResult | None:
        items = self.copier.items_total()
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
        message = retention_warning(
            info.name, seconds, self.settings.retention_ms, self.settings.retention_margin_ms
        )
        if message is not None:
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
        self.log("bootstrap_complete", items_copied=items, copied_here=self.copied_here,
                 dead_lettered=self.dead_here, copy_seconds=seconds,
                 items_per_s=round(items / seconds, 1) if seconds else None)  # fmt: skip
        return self._done(Outcome.COPIED, complete, warnings)

    def _emit(self, info: TableInfo, row: BootstrapRow, rate: float) -> None:
        self._publish(
            BootstrapProgress(
                self.copier.items_total(), info.item_count, rate,
                self.copier.segments_done(), row.segments,
                max(0.0, (self.clock_ms() - row.started_at_ms) / 1000), owner=self.owner,
            )
        )  # fmt: skip

    def _pause(self, failures: int) -> None:
        self.sleep(self.settings.retry.delay(failures, self.random()))
