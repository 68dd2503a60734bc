"""What every batch replicator of every pipeline returns and shares (pure): a batch's status and
result, dead-letter records and their sink, the one conditional checkpoint write.

The kinesis replicator (:mod:`replicator.core.batch`), the table applier, the action-log
consumer and the active-active forwarder and applier all answer the shard poller with a
:class:`BatchResult`, so they live here, apart from any one of them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from replicator.core.changes import ChangeRecord
from replicator.core.checkpoint import CheckpointStore, ShardCheckpoint
from replicator.core.fence import LeaseFence
from replicator.core.metrics import Metrics
from replicator.core.records import SourceRecord
from replicator.errors import CheckpointError, ReplicatorError


class BatchStatus(enum.Enum):
    REPLICATED = "replicated"  # every record written or dead-lettered
    PARTIAL = "partial"  # a prefix is acknowledged; the rest must be sent again
    STOOD_DOWN = "stood_down"  # this region is not active: acknowledged without copying
    FAILED = "failed"  # nothing acknowledged
    LEASE_LOST = "lease_lost"  # the shard's lease was taken: nothing more written; drop it


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A source record that can never be written, with its full data and why.

    ``record`` is a Kinesis record (:class:`SourceRecord`) or a table change
    (:class:`~replicator.core.changes.ChangeRecord`, keys and both images); ``source_stream``
    names where it came from: the stream, or the table whose stream it is."""

    record: SourceRecord | ChangeRecord
    source_stream: str
    source_region: str
    target_region: str
    reason: str
    detail: str

    @classmethod
    def of_write(
        cls,
        record: SourceRecord | ChangeRecord,
        source_stream: str,
        source_region: str,
        target_region: str,
        reason: str,
    ) -> DeadLetterRecord:
        """From a batch writer's dead reason, ``"kind: detail"`` (or a bare kind)."""
        kind, _, detail = reason.partition(": ")
        return cls(record, source_stream, source_region, target_region, kind, detail or reason)


def write_checkpoint(
    store: CheckpointStore,
    checkpoint: ShardCheckpoint,
    fence: LeaseFence | None,
    metrics: Metrics,
    log: Log,
) -> bool:
    """One conditional checkpoint write; a lost condition or an error never fails the batch (the
    data is in the target; the row only lags, which never over-claims). With a fence, only while
    the lease is ours, and carrying its counter."""
    if fence is not None:
        try:
            checkpoint = replace(checkpoint, lease_counter=fence.check())
        except ReplicatorError as exc:
            metrics.add("checkpoint_fenced")
            log("checkpoint_fenced", shard_id=checkpoint.shard_id, error=str(exc))
            return False
    try:
        metrics.add("checkpoint_writes")
        if store.advance(checkpoint):
            return True
        metrics.add("checkpoint_conflicts")
    except CheckpointError as exc:
        metrics.add("checkpoint_errors")
        log("checkpoint_failed", shard_id=checkpoint.shard_id, error=str(exc))
    return False


class DeadLetterSink(Protocol):
    """Stores dead letters durably; raises DeadLetterError if it cannot."""

    def put(self, letters: Sequence[DeadLetterRecord]) -> None: ...


@dataclass(frozen=True, slots=True)
class BatchResult:
    status: BatchStatus
    acked: int  # leading records acknowledged (written, dead-lettered, or stood down)
    failed_from: str | None  # sequence number of the first record to send again
    checkpoint: ShardCheckpoint | None = None
    checkpoint_written: bool = False
    error: str | None = None


class Log(Protocol):
    def __call__(self, event: str, **fields: object) -> None: ...


def _no_log(event: str, **fields: object) -> None:
    return None


class ClosedShardIdle:
    """``idle`` of a batch replicator that claims no watermark (the table pipelines' appliers and
    forwarders): an empty read of an open shard costs no write; a closed shard's end is
    checkpointed, so its children may start. The host has ``checkpoints``, ``metrics``, ``log``."""

    checkpoints: CheckpointStore
    metrics: Metrics
    log: Log

    def idle(
        self,
        shard_id: str,
        sequence_number: str | None,
        tip_read_at_ms: int,
        closed: bool = False,
        fence: LeaseFence | None = None,
        skipped_history: bool = False,
    ) -> bool:
        if not closed:
            return False
        checkpoint = ShardCheckpoint(
            shard_id, sequence_number, closed=True, skipped_history=skipped_history
        )
        return write_checkpoint(self.checkpoints, checkpoint, fence, self.metrics, self.log)
