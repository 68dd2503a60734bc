"""Live apply of a DynamoDB table's stream to the same table in another region (pure).

:class:`TableApplier` is the ``dynamodb`` pipeline's :class:`~replicator.runners.poller.
BatchReplicator`: the poller (or the Lambda handler) hands it one GetRecords batch of one
stream shard at a time, in order, and it

1. asks the ``gate`` (the bootstrap copy's state, :class:`BootstrapGate`) whether it may write:
   while the copy runs nothing is written and the batch is not acknowledged (the poller reads
   it again later; Lambda retries it), so live apply never races the copy;
2. squashes the batch to the last change per key: BatchWriteItem cannot hold one key twice,
   and only the final state of a key matters (each change carries its full new image). A put
   of the last change's NewImage, or a delete for a REMOVE;
3. writes them through :class:`~replicator.core.table_writes.BatchWriter` (chunks of 25,
   concurrent, unprocessed items retried, invalid items bisected to dead letters), each call
   preceded by the lease fence's check (the poller; :mod:`replicator.core.fence`);
4. stores the changes that can never be written in the dead-letter sink with their full data
   (keys, both images) and the reason, and counts them;
5. checkpoints (one conditional write, carrying the lease counter) only once every write of
   the batch was acknowledged.

Acknowledgement is all or nothing per batch. After squashing, one write stands for several
changes of its key spread over the batch, so no prefix of the batch is known to be applied
unless every write is: a batch with any write left unwritten (attempt bound, terminal error,
lease lost) is FAILED with nothing acknowledged, and is read again from its first change.
Writing it again is harmless: full-image puts and deletes are idempotent. A replayed batch
that ends earlier than the attempt before it (Lambda may bisect) can set a key back to an older
state for a moment; the later changes, replayed in order, bring it forward again, so the
target ends in the source's state.

Changes the copy already holds. The replay starts at TRIM_HORIZON, up to 24 hours of history;
most of it is older than the copy, which read every item after its state row's ``startedAtMs``
(strongly consistent scan). A change whose ApproximateCreationDateTime is earlier than that by
more than ``--max-clock-skew-ms`` plus a second (the timestamp is rounded down to the second on
AWS) was in the table before the copy read its key, so the copied value holds it or a later
change: ``covered_before()`` gives that cutoff, and such changes are acknowledged without a
write (``changes_in_copy``; not in the apply lag). A later change of the same key is newer than
the cutoff and is applied as usual, so the target still ends in the source's state.

Order. Changes of one item sit in one shard in order (REFERENCE.md); the poller finishes a
parent shard before its children and gives this class one batch at a time per shard, so a
key's writes land in stream order. Live apply starts every shard at TRIM_HORIZON after the
bootstrap copy: every change made during the copy is replayed over the copied value.

Metrics (``metrics.counters``): ``changes_in``, ``changes_applied`` (acknowledged and written,
squashed ones included), ``squashed``, ``write_calls``, ``unprocessed_retries``,
``throttled_requests``, ``dead_lettered``, ``gated_batches``, ``failed_batches``,
``checkpoint_writes``; per shard lag (``metrics.shards``); and ``apply_lag_ms`` in the snapshot:
count and percentiles of (apply time - commit time) over applied changes, the commit time being
the item's ``commitTimestamp`` when it has one, else the stream's ApproximateCreationDateTime.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from replicator.core.batch import (
    BatchResult,
    BatchStatus,
    DeadLetterRecord,
    DeadLetterSink,
    Log,
    write_checkpoint,
)
from replicator.core.bootstrap_ownership import BootstrapState
from replicator.core.changes import ChangeRecord
from replicator.core.checkpoint import CheckpointStore, ShardCheckpoint
from replicator.core.fence import LeaseFence
from replicator.core.metrics import Metrics
from replicator.core.table_writes import BatchWriter, WriteRequest, key_id
from replicator.core.watermark import WatermarkSettings, shard_watermark
from replicator.errors import DeadLetterError, LeaseLost

#: A gate answers None when live apply may write, else why it must wait.
Gate = Callable[[], "str | None"]
APPLY_LAG = "apply_lag_ms"
#: Counters of live apply, present (as 0) from the start.
COUNTERS = (
    "batches", "changes_in", "changes_applied", "squashed", "write_calls",
    "unprocessed_retries", "throttled_requests", "dead_lettered", "gated_batches",
    "failed_batches", "lease_lost_batches", "checkpoint_writes", "checkpoint_conflicts",
    "checkpoint_errors", "get_records_calls", "shards_data_lost", "changes_in_copy",
)  # fmt: skip

COPYING, COMPLETE = BootstrapState.COPYING.value, BootstrapState.COMPLETE.value


def _no_log(event: str, **fields: object) -> None:
    return None


def nothing_covered() -> int | None:
    """No bootstrap copy to rely on: every change is applied."""
    return None


def copy_cutoff_ms(started_at_ms: int, max_clock_skew_ms: int) -> int:
    """Changes created before this were in the table before the copy read it (module doc):
    a second for the rounding of ApproximateCreationDateTime, plus the clock skew allowed."""
    return started_at_ms - 1000 - max_clock_skew_ms


def always_open() -> str | None:
    """The gate of a target that needs no bootstrap copy (the source table started empty)."""
    return None


class BootstrapGate:
    """Live apply waits while the bootstrap copy runs (see the module doc).

    ``read_state()`` returns the bootstrap row's ``state`` (``"copying"``, ``"complete"``) or
    None when there is no row. Only ``complete`` opens the gate. No row keeps it shut too
    (``require_row``): a copy that starts after live apply wrote would race it; pass
    ``require_row=False`` (or use :func:`always_open`) when no copy is needed. A read that fails
    keeps the gate shut (never write blind). The answer is cached for ``ttl_s``.
    """

    def __init__(
        self,
        read_state: Callable[[], str | None],
        clock: Callable[[], float] = time.monotonic,
        *,
        ttl_s: float = 1.0,
        require_row: bool = True,
    ) -> None:
        self.read_state = read_state
        self.clock = clock
        self.ttl_s = ttl_s
        self.require_row = require_row
        self.reads = 0
        self._answer: str | None = None
        self._read_at: float | None = None

    def __call__(self) -> str | None:
        now = self.clock()
        if self._read_at is not None and now - self._read_at < self.ttl_s:
            return self._answer
        self.reads += 1
        try:
            state = self.read_state()
        except Exception as exc:  # noqa: BLE001 - whatever the store raised: wait, ask again
            self._answer, self._read_at = f"bootstrap state unreadable: {exc}", None
            return self._answer
        if state == COMPLETE or (state is None and not self.require_row):
            self._answer = None
        elif state is None:
            self._answer = "no bootstrap row yet: waiting for the bootstrap copy to start"
        elif state == COPYING:
            self._answer = "bootstrap copy in progress"
        else:
            self._answer = f"unknown bootstrap state {state!r}"
        self._read_at = now
        return self._answer


def squash(records: Sequence[ChangeRecord]) -> list[ChangeRecord]:
    """The last change of each key, in the order of those last changes."""
    last: dict[str, ChangeRecord] = {}
    for r in records:
        k = key_id(r.keys)
        last.pop(k, None)
        last[k] = r
    return list(last.values())


def request_of(change: ChangeRecord) -> WriteRequest:
    """The write that leaves the target's item as ``change`` left the source's."""
    if change.is_remove:
        return WriteRequest(change.keys, None, ref=change)
    return WriteRequest(change.keys, change.new_image, ref=change)


class TableApplier:
    """Applies batches of stream changes to the target table (any shard, one batch at a time).

    ``checkpoints`` None: no checkpoint rows (Lambda, which keeps the position itself and is
    not told which shard a DynamoDB stream event came from).
    """

    def __init__(
        self,
        *,
        table: str,
        source_region: str,
        target_region: str,
        writer: BatchWriter,
        checkpoints: CheckpointStore | None,
        dead_letters: DeadLetterSink,
        clock_ms: Callable[[], int],
        gate: Gate = always_open,
        covered_before: Callable[[], int | None] = nothing_covered,
        watermark: WatermarkSettings | None = None,
        metrics: Metrics | None = None,
        log: Log = _no_log,
    ) -> None:
        self.table = table
        self.source_region = source_region
        self.target_region = target_region
        self.writer = writer
        self.checkpoints = checkpoints
        self.dead_letters = dead_letters
        self.clock_ms = clock_ms
        self.gate = gate
        self.covered_before = covered_before
        self.watermark = watermark or WatermarkSettings()
        self.metrics = metrics or Metrics(counters=dict.fromkeys(COUNTERS, 0))
        self.log = log
        self.stream = table  # the poller and logs name the source by it

    def process(
        self,
        shard_id: str,
        records: Sequence[ChangeRecord],
        *,
        tip_read_at_ms: int | None = None,
        shard_end: bool = False,
        fence: LeaseFence | None = None,
        skipped_history: bool = False,
    ) -> BatchResult:
        """Apply one batch of one shard (see the module doc); the arguments are the poller's
        (:class:`~replicator.core.batch.ShardReplicator.process`)."""
        m = self.metrics
        m.add("batches")
        m.add("changes_in", len(records))
        if not records:
            return BatchResult(BatchStatus.REPLICATED, 0, None)
        first = records[0].sequence_number
        waiting = self._gate()
        if waiting is not None:
            m.add("gated_batches")
            self.log("apply_gated", shard_id=shard_id, changes=len(records), reason=waiting)
            return BatchResult(BatchStatus.FAILED, 0, first, error=waiting)
        pending = self._not_in_copy(records)
        if not pending:
            return self._acknowledge(shard_id, records, [], tip_read_at_ms, shard_end, fence,
                                     skipped_history)  # fmt: skip
        last = squash(pending)
        blind = [c for c in last if not c.is_remove and c.new_image is None]
        if blind:
            m.add("failed_batches")
            error = (
                f"change {blind[0].sequence_number} of {self.table} carries no NewImage: the "
                "stream must be NEW_IMAGE or NEW_AND_OLD_IMAGES"
            )
            self.log("batch_failed", shard_id=shard_id, error=error)
            return BatchResult(BatchStatus.FAILED, 0, first, error=error)
        m.add("squashed", len(records) - len(last))
        report = self.writer.write(
            [request_of(c) for c in last], guard=fence.check if fence is not None else None
        )
        m.add("write_calls", report.calls)
        m.add("unprocessed_retries", report.unprocessed_retries)
        m.add("throttled_requests", report.throttles)
        if isinstance(report.fenced, LeaseLost):
            m.add("lease_lost_batches")
            self.log("lease_lost", shard_id=shard_id, error=str(report.fenced))
            return BatchResult(BatchStatus.LEASE_LOST, 0, first, error=str(report.fenced))
        if not report.complete:
            m.add("failed_batches")
            error = str(report.fenced or report.error or "writes left unwritten")
            self.log("batch_failed", shard_id=shard_id, error=error,
                     unwritten=len(report.unwritten), changes=len(records))  # fmt: skip
            return BatchResult(BatchStatus.FAILED, 0, first, error=error)
        dead_keys: set[str] = set()
        if report.dead:
            letters = [
                DeadLetterRecord.of_write(
                    r.ref, self.table, self.source_region, self.target_region, reason
                )
                for r, reason in report.dead
            ]
            try:
                self.dead_letters.put(letters)
            except DeadLetterError as exc:
                m.add("failed_batches")
                self.log("dead_letter_failed", shard_id=shard_id, error=str(exc))
                return BatchResult(BatchStatus.FAILED, 0, first, error=f"dead letters: {exc}")
            m.add("dead_lettered", len(letters))
            self.log("dead_lettered", shard_id=shard_id, changes=len(letters))
            dead_keys = {key_id(r.key) for r, _ in report.dead}
        applied = [c for c in pending if not dead_keys or key_id(c.keys) not in dead_keys]
        return self._acknowledge(shard_id, records, applied, tip_read_at_ms, shard_end, fence,
                                 skipped_history)  # fmt: skip

    def _not_in_copy(self, records: Sequence[ChangeRecord]) -> Sequence[ChangeRecord]:
        """The changes to write: those the bootstrap copy may not hold (module doc)."""
        cutoff = self.covered_before()
        if cutoff is None:
            return records
        pending = [c for c in records if c.approximate_ms is None or c.approximate_ms >= cutoff]
        if len(pending) < len(records):
            self.metrics.add("changes_in_copy", len(records) - len(pending))
        return pending

    def _acknowledge(
        self,
        shard_id: str,
        records: Sequence[ChangeRecord],
        applied: Sequence[ChangeRecord],
        tip_read_at_ms: int | None,
        shard_end: bool,
        fence: LeaseFence | None,
        skipped_history: bool,
    ) -> BatchResult:
        """Metrics and the checkpoint of a batch whose every change is in the target."""
        m = self.metrics
        now = self.clock_ms()
        m.add("changes_applied", len(applied))
        lag = m.histogram(APPLY_LAG)
        newest_commit: int | None = None
        for c in applied:
            at = c.commit_ms if c.commit_ms is not None else c.approximate_ms
            if at is not None:
                lag.add(now - at)
            if c.commit_ms is not None and (newest_commit is None or c.commit_ms > newest_commit):
                newest_commit = c.commit_ms
        shard_lag = m.lag(shard_id)
        shard_lag.last_sequence_number = records[-1].sequence_number
        shard_lag.updated_ms = now
        if newest_commit is not None:
            shard_lag.commit_lag_ms = now - newest_commit
        arrival = tip_read_at_ms if tip_read_at_ms is not None else records[-1].approximate_ms
        checkpoint = ShardCheckpoint(
            shard_id,
            records[-1].sequence_number,
            commit_ms=newest_commit,
            shard_watermark_ms=(
                None
                if arrival is None or skipped_history
                else shard_watermark(self.watermark, arrival, ())
            ),
            closed=shard_end,
            skipped_history=skipped_history,
        )
        written = self._write(checkpoint, fence)
        return BatchResult(BatchStatus.REPLICATED, len(records), None, checkpoint, written)

    def idle(
        self,
        shard_id: str,
        sequence_number: str | None,
        tip_read_at_ms: int,
        closed: bool = False,
        fence: LeaseFence | None = None,
        skipped_history: bool = False,
    ) -> bool:
        """An empty read at the tip: raise this shard's watermark (one conditional write). Not
        while the gate is shut: the target does not hold the copied items yet."""
        if self._gate() is not None:
            return False
        wm = None if skipped_history else shard_watermark(self.watermark, tip_read_at_ms, ())
        checkpoint = ShardCheckpoint(
            shard_id, sequence_number, None, wm, closed, skipped_history=skipped_history
        )
        return self._write(checkpoint, fence)

    def ready(self) -> str | None:
        """None when live apply may write, else why it waits: the poller reads no shard while
        the gate is shut (each read would be refused and read again)."""
        return self._gate()

    def close(self) -> None:
        self.writer.close()

    def _gate(self) -> str | None:
        try:
            return self.gate()
        except Exception as exc:  # noqa: BLE001 - never write blind: wait and ask again
            return f"gate failed: {type(exc).__name__}: {exc}"

    def _write(self, checkpoint: ShardCheckpoint, fence: LeaseFence | None) -> bool:
        """Checkpoint unless there are no checkpoint rows (Lambda)."""
        if self.checkpoints is None:
            return False
        return write_checkpoint(self.checkpoints, checkpoint, fence, self.metrics, self.log)
