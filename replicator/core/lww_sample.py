"""The published active-active sample, reproduced faithfully and labelled (``--behaviour sample``).

The sample (DynamoDB bi-directional replication between China and commercial regions) runs a
Lambda ``send_to_kinesis`` on each table's stream and a Lambda ``replicator`` on each staging
stream. What it does, and what goes wrong with it, so that verify can show it:

- the forwarder skips a change whose NewImage's ``last_updater_region`` is not the local region
  and forwards the rest with ``put_records``; a REMOVE has no NewImage, so it is always
  forwarded, as a delete. If any entry of a PutRecords fails, the function raises and Lambda
  retries the WHOLE batch (already written entries go again; nothing is lost, but a deleted
  key's delete bounces back from the other region, whose replicator deleted it for real);
- the replicator writes a version only if the target's ``last_update_timestamp`` is strictly
  smaller than the record's (bare timestamp, no region): two regions writing one key in the
  same millisecond (or second) each keep their own version, so the tables diverge for good;
- deletes are real DeleteItem calls with no tombstone: a late, older write of a deleted key from
  the other region finds no item, passes ``attribute_not_exists`` and brings the key back;
- no dead letters: a record it cannot parse fails the batch again and again (as the Lambda's
  exception would), so it is logged and the batch fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from replicator.core.batch_result import (
    BatchResult,
    BatchStatus,
    ClosedShardIdle,
    Log,
    _no_log,
    write_checkpoint,
)
from replicator.core.changes import ChangeRecord
from replicator.core.checkpoint import CheckpointStore, ShardCheckpoint
from replicator.core.entries import PutEntry, PutRecordsSink
from replicator.core.fence import LeaseFence
from replicator.core.lww_apply import lag_line
from replicator.core.lww_records import MalformedStagingRecord, encode, parse, pk_of
from replicator.core.metrics import Metrics
from replicator.core.records import SourceRecord
from replicator.errors import ReplicatorError
from xrh.active_active import ZERO, stamp_of

SAMPLE_LABEL = "sample behaviour"
SAMPLE_NOTE = (
    "sample behaviour: the published active-active sample reproduced (bare-timestamp condition, "
    "real deletes, whole-batch PutRecords retry); verify is expected to find divergence"
)
COUNTERS = (
    "batches", "changes_in", "records_in", "forwarded", "skipped_not_local", "deletes_forwarded",
    "applied", "superseded", "deleted", "failed_batches", "checkpoint_writes",
    "checkpoint_conflicts", "checkpoint_errors", "get_records_calls",
)  # fmt: skip


class SampleTableSink(Protocol):
    calls: int

    def put_if_ts_newer(self, table: str, item: dict[str, Any], ts: int) -> bool: ...

    def delete(self, table: str, key: dict[str, Any]) -> None: ...


class _Shards(ClosedShardIdle):
    """What both sample halves share: the poller's interface around ``_batch``."""

    def _done(self, shard_id: str, records: Sequence[Any], shard_end: bool, fence) -> BatchResult:
        checkpoint = ShardCheckpoint(shard_id, records[-1].sequence_number, closed=shard_end)
        written = write_checkpoint(self.checkpoints, checkpoint, fence, self.metrics, self.log)
        return BatchResult(BatchStatus.REPLICATED, len(records), None, checkpoint, written)

    def _fail(self, shard_id: str, first: str, error: str) -> BatchResult:
        self.metrics.add("failed_batches")
        self.log("batch_failed", shard_id=shard_id, error=error)
        return BatchResult(BatchStatus.FAILED, 0, first, error=error)

    def close(self) -> None:
        return None


class SampleForwarder(_Shards):
    def __init__(
        self,
        *,
        table: str,
        region: str,
        staging_stream: str,
        sink: PutRecordsSink,
        checkpoints: CheckpointStore,
        log: Log = _no_log,
    ) -> None:
        self.table = self.stream = table
        self.region = region
        self.staging_stream = staging_stream
        self.sink = sink
        self.checkpoints = checkpoints
        self.metrics = Metrics(counters=dict.fromkeys(COUNTERS, 0))
        self.log = log

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
        m = self.metrics
        m.add("batches")
        m.add("changes_in", len(records))
        if not records:
            return BatchResult(BatchStatus.REPLICATED, 0, None)
        entries = []
        for c in records:
            if c.is_remove:
                keys = {"pk": c.keys["pk"]}
                stamp = stamp_of(c.old_image) or ZERO
                data = encode(keys, self.region, stamp, c, delete=True)
                entries.append(PutEntry(pk_of(keys), data))
                m.add("deletes_forwarded")
                continue
            new = c.new_image or {}
            stamp = stamp_of(new) or ZERO
            if stamp.region != self.region:
                m.add("skipped_not_local")
                continue
            entries.append(PutEntry(pk_of(new), encode(new, self.region, stamp, c)))
            m.add("forwarded")
        for start in range(0, len(entries), 500):
            try:
                if fence is not None:
                    fence.check()
                results = self.sink.put_records(self.staging_stream, entries[start : start + 500])
            except ReplicatorError as exc:
                return self._fail(shard_id, records[0].sequence_number, str(exc))
            failed = sum(1 for r in results if not r.ok)
            if failed:  # the Lambda raises: the whole batch is retried
                error = f"{failed} PutRecords entries failed: the whole batch is retried"
                return self._fail(shard_id, records[0].sequence_number, error)
        return self._done(shard_id, records, shard_end, fence)


class SampleApplier(_Shards):
    def __init__(
        self,
        *,
        stream: str,
        table: str,
        direction: str,
        sink: SampleTableSink,
        checkpoints: CheckpointStore,
        clock_ms: Callable[[], int],
        lag_sink: Callable[[str], None] = lambda line: None,
        log: Log = _no_log,
    ) -> None:
        self.stream = stream
        self.table = table
        self.direction = direction
        self.sink = sink
        self.checkpoints = checkpoints
        self.clock_ms = clock_ms
        self.lag_sink = lag_sink
        self.metrics = Metrics(counters=dict.fromkeys(COUNTERS, 0))
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
        m = self.metrics
        m.add("batches")
        m.add("records_in", len(records))
        if not records:
            return BatchResult(BatchStatus.REPLICATED, 0, None)
        created = None
        for r in records:  # one by one, in order, as the Lambda's loop
            try:
                s = parse(r.data)
                if fence is not None:
                    fence.check()
                if s.delete:
                    self.sink.delete(self.table, {"pk": s.image["pk"]})
                    m.add("deleted")
                elif self.sink.put_if_ts_newer(self.table, s.image, s.stamp.ts):
                    m.add("applied")
                else:
                    m.add("superseded")
            except (MalformedStagingRecord, ReplicatorError) as exc:
                return self._fail(shard_id, records[0].sequence_number, str(exc))
            created = s.created_ms if s.created_ms is not None else created
        if created is not None:
            now = self.clock_ms()
            try:
                self.lag_sink(lag_line(now, self.direction, now - created))
            except OSError as exc:
                self.log("lag_file_failed", error=str(exc))
        return self._done(shard_id, records, shard_end, fence)
