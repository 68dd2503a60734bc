"""The published sample's copy logic, reproduced faithfully: ``xrh replicate --behaviour sample``.

**This is not the reference replicator.** It is the behaviour of the published sample
(aws-samples/aws-kinesis-data-streams-replicator: seed ``000_e503a49de2e2ec50``, its README, and
its Lambda handler ``KinesisReplicatorFunction/src/main/java/consumer/Handler.java``), kept so
that users can run it under the harness and see what verify catches. Every log line and the
metrics file of a run with this behaviour say "sample behaviour".

Per batch (one shard's records in order), exactly as the sample's handler:

1. One lookup of the active-region table (``{"streamName", "activeRegion"}``), uncached and
   eventually consistent (the sample queries it on every invocation). If the lookup *fails*,
   or finds no item, or names another region, the stream is "not active in the current region"
   and the batch is acknowledged without copying anything. A failed lookup therefore
   acknowledges records that were never copied: they are lost.
2. Otherwise, for each record in order: decode the data as UTF-8 (strict), one ``PutRecord`` to
   the same-named stream in the other region (same partition key, same data), then an
   UNCONDITIONAL write of that record's ``commitTimestamp`` (the JSON value as text: ``""`` when
   missing) to the checkpoint table's watermark row, the same row the reference publishes its
   stream watermark in (``#watermark`` of ``checkpoint_scope(...)``: ``watermarkMs`` N when the
   text parses, ``watermark`` S), so verify observes the sample's claims the same way. Data that
   is not JSON raises after the put. On the first exception the loop stops and that record's
   sequence number is the batch item failure (the poller, like Lambda, resumes from it; the
   record is put again, a duplicate whenever the put itself had succeeded).

What the sample does not have: a handover time (``activeSinceMs`` is ignored, so a switch takes
effect at once and acknowledges uncopied everything still in flight), dead letters (a poison
record is retried forever and blocks its shard), a stream-level minimum (the watermark row
holds the commit time of whichever record of whichever shard was copied last: it jumps ahead
of shards that lag and moves backwards), and batching (two AWS calls per record).

Not reproduced: the sample's per-batch CloudWatch ``PutMetricData`` call (it changes nothing in
what is copied or claimed). Its SDK clients retry as the AWS SDK for Java 2.x does by default
(the wiring in ``replicator.runners.cli`` gives its clients a few attempts), so a lost answer is
resent behind its back, as in production.

The position that Lambda's event source mapping keeps for the sample (where to resume a shard)
is kept here in the shard's checkpoint row, position only (no shard watermark, so it claims
nothing), written once per batch: that is the poller's emulation of the mapping, not the sample.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from replicator.core.active import ActiveRegionLookup
from replicator.core.batch import BatchResult, BatchStatus, Log
from replicator.core.checkpoint import CheckpointStore, ShardCheckpoint
from replicator.core.fence import LeaseFence
from replicator.core.metrics import Metrics
from replicator.core.records import SourceRecord, parse_iso_ms
from replicator.errors import ReplicatorError

SAMPLE_LABEL = "sample behaviour"
SAMPLE_NOTE = (
    "sample behaviour: the published sample's copy logic (aws-samples/"
    "aws-kinesis-data-streams-replicator), reproduced to show what the harness catches; "
    "not the reference replicator"
)


class RecordSink(Protocol):
    """One single-record ``PutRecord`` to the target stream; raises on any failure."""

    def put_record(self, stream: str, partition_key: str, data: bytes) -> tuple[str, str]: ...


class WatermarkRow(Protocol):
    """The unconditional per-record write of the sample's checkpoint (PutItem, whole row)."""

    def overwrite(self, commit_text: str, commit_ms: int | None, written_at_ms: int) -> None: ...


def _no_log(event: str, **fields: object) -> None:
    return None


def commit_text_of(text: str) -> str:
    """``objectMapper.readTree(text).at("/commitTimestamp").asText()``: raises ValueError when
    ``text`` is not JSON; ``""`` for a missing field or a non-object document; numbers and
    booleans as their JSON text."""
    document = json.loads(text)
    value = document.get("commitTimestamp") if isinstance(document, dict) else None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return ""


def _commit_ms(commit_text: str) -> int | None:
    try:
        return parse_iso_ms(commit_text) if commit_text else None
    except ValueError:
        return None


class SampleReplicator:
    """The sample's per-batch logic over seams (same ``process``/``idle`` shape as
    :class:`replicator.core.batch.ShardReplicator`, so the same poller drives it)."""

    label = SAMPLE_LABEL

    def __init__(
        self,
        *,
        stream: str,
        source_region: str,
        target_region: str,
        sink: RecordSink,
        active: ActiveRegionLookup,
        watermark_row: WatermarkRow,
        positions: CheckpointStore | None,
        clock_ms: Callable[[], int],
        metrics: Metrics | None = None,
        log: Log = _no_log,
    ) -> None:
        self.stream = stream
        self.source_region = source_region
        self.target_region = target_region
        self.sink = sink
        self.active = active
        self.watermark_row = watermark_row
        self.positions = positions
        self.clock_ms = clock_ms
        self.metrics = metrics or Metrics()
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
        """``fence``: the poller's lease on the shard (standing in for Lambda's one invocation
        per shard at a time), checked before each write; not part of the sample.
        ``skipped_history`` is ignored: the sample claims what it copies whatever it skipped."""
        m = self.metrics
        m.add("batches")
        m.add("records_in", len(records))
        if not records:
            return BatchResult(BatchStatus.REPLICATED, 0, None)
        if not self._is_active(shard_id, len(records)):
            m.add("stood_down_batches")
            m.add("stood_down_records", len(records))
            self.log("stream_not_active", shard_id=shard_id, records=len(records))
            return self._position(shard_id, records, len(records), BatchStatus.STOOD_DOWN, fence)
        for index, record in enumerate(records):
            try:
                self._copy_one(record, fence)
            except Exception as exc:  # noqa: BLE001 - the sample catches every exception here
                m.add("failed_batches")
                error = f"{type(exc).__name__}: {exc}"
                self.log(
                    "batch_failed", shard_id=shard_id, sequence_number=record.sequence_number,
                    successful=index, batch_size=len(records), error=error,
                )  # fmt: skip
                status = BatchStatus.PARTIAL if index else BatchStatus.FAILED
                if fence is not None and fence.lost:
                    status = BatchStatus.LEASE_LOST
                return self._position(shard_id, records, index, status, fence, error)
        self.log("batch_done", shard_id=shard_id, batch_size=len(records), successful=len(records))
        return self._position(shard_id, records, len(records), BatchStatus.REPLICATED, fence)

    def idle(
        self,
        shard_id: str,
        sequence_number: str | None,
        tip_read_at_ms: int,
        closed: bool = False,
        fence: LeaseFence | None = None,
        skipped_history: bool = False,
    ) -> bool:
        """Lambda is not invoked for an empty shard: the sample writes nothing."""
        return False

    # ------------------------------------------------------------------ steps

    def _is_active(self, shard_id: str, records: int) -> bool:
        """The sample's isStreamActiveInCurrentRegion: any failure means 'not active'."""
        m = self.metrics
        m.add("active_region_lookups")
        try:
            region = self.active.assignment(self.stream).region
        except Exception as exc:  # noqa: BLE001 - the sample swallows every lookup error
            m.add("lookup_failures")
            m.add("acknowledged_after_lookup_failure", records)
            self.log("lookup_failed_treated_as_not_active", shard_id=shard_id,
                     records=records, error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            return False
        return region.lower() == self.source_region.lower()

    def _copy_one(self, record: SourceRecord, fence: LeaseFence | None) -> None:
        m = self.metrics
        text = record.data.decode("utf-8")  # strict, like the sample's CharsetDecoder
        if fence is not None:
            fence.check()
        m.add("requests")
        self.sink.put_record(self.stream, record.partition_key, text.encode("utf-8"))
        m.add("records_copied")
        m.add("bytes_copied", len(record.data))
        commit_text = commit_text_of(text)  # raises after the put when the data is not JSON
        commit_ms = _commit_ms(commit_text)
        if commit_ms is None:
            m.add("no_commit_timestamp")
        if fence is not None:
            fence.check()
        m.add("checkpoint_writes")
        self.watermark_row.overwrite(commit_text, commit_ms, self.clock_ms())
        if commit_ms is not None:
            self.metrics.watermark_ms = commit_ms
            lag = m.lag(record.shard_id)
            lag.last_sequence_number = record.sequence_number
            lag.updated_ms = self.clock_ms()
            lag.commit_lag_ms = lag.updated_ms - commit_ms

    def _position(
        self,
        shard_id: str,
        records: Sequence[SourceRecord],
        acked: int,
        status: BatchStatus,
        fence: LeaseFence | None,
        error: str | None = None,
    ) -> BatchResult:
        """The acknowledged prefix, and the event source mapping's position after it."""
        failed_from = None if acked == len(records) else records[acked].sequence_number
        checkpoint = None
        written = False
        if acked and self.positions is not None:
            checkpoint = ShardCheckpoint(shard_id, records[acked - 1].sequence_number)
            try:
                if fence is not None:
                    checkpoint = replace(checkpoint, lease_counter=fence.check())
                self.metrics.add("position_writes")
                written = self.positions.advance(checkpoint)
            except ReplicatorError as exc:
                self.log("position_write_failed", shard_id=shard_id, error=str(exc))
        return BatchResult(status, acked, failed_from, checkpoint, written, error)
