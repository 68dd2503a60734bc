"""What the shard poller (:mod:`replicator.runners.poller`) reads through and drives: the source
stream's reader, the replicator's per-batch logic, and the stream watermark's publisher."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from replicator.adapters.kinesis import ReadResult
from replicator.core.batch import BatchResult
from replicator.core.fence import LeaseFence
from replicator.core.metrics import Metrics
from replicator.core.records import SourceRecord
from replicator.core.watermark import Claim, ShardInfo


class ShardReader(Protocol):
    """The source stream's shards: :class:`~replicator.adapters.kinesis.KinesisReader` or a
    table's stream, :class:`~replicator.adapters.streams.DynamoStreamReader`."""

    calls: int

    def list_shards(self) -> list[ShardInfo]: ...

    def iterator(
        self,
        shard_id: str,
        after_sequence: str | None,
        latest: bool = False,
        at_timestamp_ms: int | None = None,
    ) -> str: ...

    def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult: ...


class BatchReplicator(Protocol):
    """The copy logic the poller drives: the reference :class:`~replicator.core.batch.
    ShardReplicator`, the sample's :class:`~replicator.core.sample.SampleReplicator` or the
    table pipeline's :class:`~replicator.core.table_apply.TableApplier`. Optional: ``ready()
    -> str | None``, None when it may write, else why it waits (the poller then reads nothing);
    ``handover_tick`` and ``handover_pending`` (the reference replicator's handover)."""

    metrics: Metrics

    def process(
        self,
        shard_id: str,
        records: Sequence[SourceRecord],
        *,
        tip_read_at_ms: int | None = None,
        shard_end: bool = False,
        fence: LeaseFence | None = None,
        skipped_history: bool = False,
    ) -> BatchResult: ...

    def idle(
        self,
        shard_id: str,
        sequence_number: str | None,
        tip_read_at_ms: int,
        closed: bool = False,
        fence: LeaseFence | None = None,
        skipped_history: bool = False,
    ) -> bool: ...


class ClaimPublisher(Protocol):
    def publish(self) -> Claim | None: ...


class NoClaims:
    """No stream watermark (the sample behaviour: its checkpoint writes are its only claims)."""

    def publish(self) -> Claim | None:
        return None
