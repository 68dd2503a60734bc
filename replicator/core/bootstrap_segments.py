"""The bootstrap copy's engine: one parallel-scan segment copied page by page (pure).

One thread per segment (``Scan`` with ``Segment``/``TotalSegments``): each page is written
through :class:`~replicator.core.table_writes.BatchWriter`, then, only once every item of the
page is acknowledged (written, or dead-lettered with its data), the segment row records the
page's ``LastEvaluatedKey`` and the running count. A crashed copy resumes each segment after
its last recorded page (the page in flight is copied again, harmlessly). Items that can never
be written go to the dead-letter sink with the item and the reason (as a table change,
:class:`~replicator.core.batch.DeadLetterRecord`) and are counted, never dropped.

Every write is guarded by the copy's lease (:class:`~replicator.core.bootstrap_ownership.
CopyLease`); who owns the copy and when it completes is :mod:`replicator.core.bootstrap`'s.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from replicator.core.batch import DeadLetterRecord, DeadLetterSink
from replicator.core.bootstrap_ownership import (
    BootstrapStore,
    CopyLease,
    SegmentProgress,
    segment_row_id,
)
from replicator.core.changes import ChangeEvent, ChangeRecord
from replicator.core.table_writes import BatchWriter, WriteRequest
from replicator.errors import DeadLetterError, LeaseLost, ReplicatorError


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


class SegmentCopier:
    """Copies segments of the source table into the target (each :meth:`copy` call in its own
    thread) and keeps their progress: the segment rows as this process knows them, and the
    items it wrote and dead-lettered. Stops at a page boundary once ``halt`` is set."""

    def __init__(
        self,
        *,
        scanner: TableScanner,
        writer: BatchWriter,
        store: BootstrapStore,
        dead_letters: DeadLetterSink,
        source_region: str,
        target_region: str,
        halt: threading.Event,
        pause: Callable[[int], None],
        log: Callable[..., None],
    ) -> None:
        self.scanner = scanner
        self.writer = writer
        self.store = store
        self.dead_letters = dead_letters
        self.source_region = source_region
        self.target_region = target_region
        self.halt = halt
        self.pause = pause  # sleep before the nth retry
        self.log = log
        self.lock = threading.Lock()
        self.progress: dict[int, SegmentProgress] = {}
        self.copied = 0  # items this process wrote (acknowledged pages)
        self.dead = 0  # items this process dead-lettered

    def resume(self, segments: int, stored: dict[int, SegmentProgress]) -> None:
        """Start a tenure: every segment where its row left it (or from the start)."""
        with self.lock:
            self.progress = {i: stored.get(i, SegmentProgress(i)) for i in range(segments)}

    def items_total(self) -> int:
        """Every segment's acknowledged items (other owners' included)."""
        with self.lock:
            return sum(p.items for p in self.progress.values())

    def segments_done(self) -> int:
        with self.lock:
            return sum(1 for p in self.progress.values() if p.done)

    def all_done(self) -> bool:
        with self.lock:
            return all(p.done for p in self.progress.values())

    def copy(self, segment: int, info: TableInfo, lease: CopyLease) -> None:
        """Copy one segment page by page until done, halted or the lease is lost."""
        with self.lock:
            progress = self.progress[segment]
        total = len(self.progress)
        failures = 0
        while not self.halt.is_set():
            try:
                page = self.scanner.scan(segment, total, progress.last_key)
            except ReplicatorError as exc:
                failures += 1
                self.log("bootstrap_scan_failed", segment=segment, error=str(exc))
                self.pause(failures)
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
            with self.lock:
                self.progress[segment] = progress = after
                self.copied += written
                self.dead += dead
            failures = 0
            if after.done:
                return

    def _write_page(
        self, segment: int, position: int, info: TableInfo, page: ScanPage, lease: CopyLease
    ) -> tuple[int | None, int]:
        """Write every item of the page: (written, dead), or (None, 0) if halted first."""
        keys = info.key_names
        pending = [WriteRequest({k: item[k] for k in keys}, item) for item in page.items]
        written = dead = failures = 0
        while pending:
            if self.halt.is_set():
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
                self.pause(failures)
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
        return DeadLetterRecord.of_write(
            change, info.name, self.source_region, self.target_region, reason
        )

    def _dead_letter(self, letters: list[DeadLetterRecord]) -> bool:
        failures = 0
        while not self.halt.is_set():
            try:
                self.dead_letters.put(letters)
            except DeadLetterError as exc:
                failures += 1
                self.log("bootstrap_dead_letter_failed", error=str(exc))
                self.pause(failures)
                continue
            for letter in letters:
                self.log("bootstrap_dead_lettered", key=letter.record.keys,
                         reason=letter.reason, detail=letter.detail)  # fmt: skip
            return True
        return False

    def _save(self, after: SegmentProgress, lease: CopyLease) -> bool:
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
                if self.halt.is_set():
                    return False
                self.pause(failures)
        return False
