"""The active-active applier of region S: S's staging stream to S's items table (pure).

The other region's forwarder sends each local version (and each tombstone) of its table to S's
``{prefix}-staging`` stream, partition key = pk, so a key's records are in order in one shard.
Per batch of one shard the applier

1. parses each record (:mod:`replicator.core.lww_records`); one that is not the contract's JSON
   can never be applied: dead-lettered with its data and the reason;
2. squashes each key to the version with the largest stamp (equal stamps: the later record),
   which is what applying them one by one under the condition would leave;
3. writes them concurrently across keys with the last-writer-wins condition
   (:class:`~replicator.core.lww_writes.ConditionalWriter`): a failed condition means S's table
   already holds a newer version (``superseded``, not an error). Tombstones are written like any
   version, so a late older write from either region never brings a deleted key back;
4. checkpoints (one conditional write carrying the lease counter) only after every write of the
   batch landed or was superseded, and appends the batch's replication lag to the run's
   ``replication-lag.jsonl`` (``now - source.created_ms`` of its last record).

A batch with any write left unwritten fails whole and is read again; writing it again is
harmless (the condition accepts the same version again and refuses older ones). A record whose
``origin`` is S came back round a loop (the other forwarder should never send it): counted as
``came_back`` and logged; applying it is still safe under the condition.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from replicator.core.batch_result import (
    BatchResult,
    BatchStatus,
    ClosedShardIdle,
    DeadLetterRecord,
    DeadLetterSink,
    Log,
    _no_log,
    write_checkpoint,
)
from replicator.core.checkpoint import CheckpointStore, ShardCheckpoint
from replicator.core.fence import LeaseFence
from replicator.core.lww_records import MalformedStagingRecord, StagingRecord, parse
from replicator.core.lww_writes import ConditionalWriter, StampedWrite, squash
from replicator.core.metrics import Metrics
from replicator.core.records import SourceRecord
from replicator.errors import DeadLetterError, LeaseLost
from xrh.active_active import SOURCE_SEQ

COUNTERS = (
    "batches", "records_in", "applied", "superseded", "squashed", "came_back", "malformed",
    "dead_lettered", "write_calls", "write_retries", "failed_batches", "lease_lost_batches",
    "checkpoint_writes", "checkpoint_conflicts", "checkpoint_errors", "get_records_calls",
)  # fmt: skip
REPLICATION_LAG = "replication_lag_ms"


def lag_line(ts_ms: int, direction: str, lag_ms: int) -> str:
    """One line of the contract's LAG_FILE."""
    return json.dumps({"ts_ms": ts_ms, "direction": direction, "lag_ms": lag_ms}) + "\n"


def parse_batch(
    records: Sequence[SourceRecord],
) -> tuple[list[tuple[SourceRecord, StagingRecord]], list[tuple[SourceRecord, str]]]:
    """(parsed records in order, malformed records with why)."""
    good, bad = [], []
    for r in records:
        try:
            good.append((r, parse(r.data)))
        except MalformedStagingRecord as exc:
            bad.append((r, str(exc)))
    return good, bad


class Applier(ClosedShardIdle):
    """Applies batches of S's staging stream to S's table (any shard, one batch at a time)."""

    def __init__(
        self,
        *,
        stream: str,
        table: str,
        region: str,
        other_region: str,
        direction: str,
        writer: ConditionalWriter,
        checkpoints: CheckpointStore,
        dead_letters: DeadLetterSink,
        clock_ms: Callable[[], int],
        lag_sink: Callable[[str], None] = lambda line: None,
        metrics: Metrics | None = None,
        log: Log = _no_log,
    ) -> None:
        self.stream = stream
        self.table = table
        self.region = region
        self.other_region = other_region
        self.direction = direction
        self.writer = writer
        self.checkpoints = checkpoints
        self.dead_letters = dead_letters
        self.clock_ms = clock_ms
        self.lag_sink = lag_sink
        self.metrics = metrics or Metrics(counters=dict.fromkeys(COUNTERS, 0))
        self.log = log

    def process(
        self,
        shard_id: str,
        records: Sequence[SourceRecord],
        *,
        tip_read_at_ms: int | None = None,
        shard_end: bool = False,
        fence: LeaseFence | None = None,
        skipped_history: bool = False,
    ) -> BatchResult:
        """Parse, squash, write, dead-letter, checkpoint (module doc); the poller's arguments."""
        m = self.metrics
        m.add("batches")
        m.add("records_in", len(records))
        if not records:
            return BatchResult(BatchStatus.REPLICATED, 0, None)
        first = records[0].sequence_number
        good, bad = parse_batch(records)
        came_back = [s for _, s in good if s.origin == self.region]
        if came_back:
            m.add("came_back", len(came_back))
            self.log("came_back", shard_id=shard_id, records=len(came_back),
                     example={"pk": came_back[0].pk, "stamp": came_back[0].stamp.to_json(),
                              "source": came_back[0].source})  # fmt: skip
        writes = [StampedWrite(s.pk, with_source_seq(s.image, s.source), s.stamp, r)
                  for r, s in good]  # fmt: skip
        last = squash(writes)
        report = self.writer.write(last, guard=fence.check if fence is not None else None)
        m.add("write_calls", report.calls)
        m.add("write_retries", report.retries)
        if not report.complete:
            if isinstance(report.fenced, LeaseLost):
                m.add("lease_lost_batches")
                self.log("lease_lost", shard_id=shard_id, error=str(report.fenced))
                return BatchResult(BatchStatus.LEASE_LOST, 0, first, error=str(report.fenced))
            m.add("failed_batches")
            error = str(report.fenced or report.error or f"{len(report.unwritten)} unwritten")
            self.log("batch_failed", shard_id=shard_id, error=error, records=len(records))
            return BatchResult(BatchStatus.FAILED, 0, first, error=error)
        letters = [
            DeadLetterRecord(r, self.stream, self.other_region, self.region, "malformed", why)
            for r, why in bad
        ] + [
            DeadLetterRecord.of_write(w.ref, self.stream, self.other_region, self.region, why)
            for w, why in report.dead
        ]
        if letters:
            try:
                self.dead_letters.put(letters)
            except DeadLetterError as exc:
                m.add("failed_batches")
                self.log("dead_letter_failed", shard_id=shard_id, error=str(exc))
                return BatchResult(BatchStatus.FAILED, 0, first, error=f"dead letters: {exc}")
            m.add("malformed", len(bad))
            m.add("dead_lettered", len(letters))
            self.log("dead_lettered", shard_id=shard_id, records=len(letters))
        m.add("applied", len(report.written))
        m.add("superseded", len(report.superseded))
        m.add("squashed", len(writes) - len(last))
        self._lag(shard_id, records, good)
        checkpoint = ShardCheckpoint(shard_id, records[-1].sequence_number, closed=shard_end)
        written = write_checkpoint(self.checkpoints, checkpoint, fence, m, self.log)
        return BatchResult(BatchStatus.REPLICATED, len(records), None, checkpoint, written)

    def _lag(
        self,
        shard_id: str,
        records: Sequence[SourceRecord],
        good: Sequence[tuple[SourceRecord, StagingRecord]],
    ) -> None:
        now = self.clock_ms()
        lag = self.metrics.lag(shard_id)
        lag.last_sequence_number = records[-1].sequence_number
        lag.updated_ms = now
        created = next((s.created_ms for _, s in reversed(good) if s.created_ms is not None), None)
        if created is None:
            return
        lag.commit_lag_ms = now - created
        self.metrics.histogram(REPLICATION_LAG).add(max(0, now - created))
        try:
            self.lag_sink(lag_line(now, self.direction, now - created))
        except OSError as exc:  # the lag file is a report, never a reason to fail a batch
            self.log("lag_file_failed", error=str(exc))

    def close(self) -> None:
        self.writer.close()


def with_source_seq(image: dict, source: dict) -> dict:
    """The image to write, carrying the change's origin stream position
    (:data:`~xrh.active_active.SOURCE_SEQ`; replaced if the origin's item had one)."""
    seq = source.get("seq") if isinstance(source, dict) else None
    out = {k: v for k, v in image.items() if k != SOURCE_SEQ}
    if isinstance(seq, str) and seq.isdigit():
        out[SOURCE_SEQ] = {"N": seq}
    return out
