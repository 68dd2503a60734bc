"""Per-shard checkpoints and the stream watermark row (pure model, store seam, in-memory store).

Rows live in the TARGET region's checkpoint table (xrh.contracts), ``scope`` =
``kinesis:<stream>:<source region>``. A shard row holds:

- ``sequenceNumber`` S: last source sequence number the target acknowledged (decimal, as AWS);
- ``sequenceKey`` S: the same number zero-padded to 80 digits, so that DynamoDB's string
  comparison in the condition ``sequenceKey < :new`` is integer comparison (sequence numbers
  are ~56 digits on AWS, beyond the 38 digits of a DynamoDB number);
- ``commitTimestampMs`` N: commitTimestamp of the last replicated record that had one;
- ``shardWatermarkMs`` N: this shard's watermark (see :mod:`replicator.core.watermark`);
- ``closed`` BOOL: the shard is closed (resharded) and every record of it is replicated;
- ``leaseCounter`` N: the fencing token of the lease holder that wrote the row (poller only,
  :mod:`replicator.core.fence`);
- ``startedAtLatest`` BOOL: the shard was started without a checkpoint at the replicator's
  start time (``--start-at-latest``), so its older records were never read. Set once, never
  cleared; such a row holds no shard watermark and blocks the stream watermark.

Writes are conditional and never move a row backwards: a new position must be greater, or equal
with a greater shard watermark (idle shards); and a write carrying a lease counter is refused
once a higher counter has written the row (a stale lease holder never overwrites a newer one's
checkpoint). The watermark row (``shardId`` = ``#watermark``) holds ``watermarkMs`` N,
``watermark`` S and ``claimedAtMs`` N, and only ever rises.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

WATERMARK_SHARD_ID = "#watermark"  # equal to xrh.contracts.WATERMARK_SHARD_ID
SEQUENCE_KEY_DIGITS = 80


def sequence_key(sequence_number: str) -> str:
    """Zero-padded form whose string order is the integer order."""
    return str(int(sequence_number)).zfill(SEQUENCE_KEY_DIGITS)


@dataclass(frozen=True, slots=True)
class ShardCheckpoint:
    shard_id: str
    sequence_number: str | None  # None: nothing read yet (an idle shard's first row)
    commit_ms: int | None = None
    shard_watermark_ms: int | None = None
    closed: bool = False
    lease_counter: int | None = None  # fencing token of the writer's lease (None: no lease)
    skipped_history: bool = False  # started at the replicator's start time, history unread

    def fenced_by(self, other: ShardCheckpoint | None) -> bool:
        """True if ``other`` was written under a newer lease than this write carries."""
        return (
            other is not None
            and other.lease_counter is not None
            and self.lease_counter is not None
            and other.lease_counter > self.lease_counter
        )

    def is_after(self, other: ShardCheckpoint | None) -> bool:
        """True if writing self over ``other`` moves the row forward (the store's condition)."""
        if other is None:
            return True
        mine, theirs = _seq(self.sequence_number), _seq(other.sequence_number)
        if mine != theirs:
            return mine > theirs
        if self.closed != other.closed:
            return self.closed
        return (self.shard_watermark_ms or -1) > (other.shard_watermark_ms or -1)


def _seq(sequence_number: str | None) -> int:
    return -1 if sequence_number is None else int(sequence_number)


class CheckpointStore(Protocol):
    """Conditional checkpoint rows of one scope. ``advance`` returns False if the stored row is
    already at or past ``checkpoint`` (lost the condition); raises CheckpointError on failure."""

    def load(self) -> dict[str, ShardCheckpoint]: ...

    def advance(self, checkpoint: ShardCheckpoint) -> bool: ...

    def publish_watermark(self, watermark_ms: int, claimed_at_ms: int) -> bool: ...

    def watermark(self) -> int | None: ...


@dataclass
class MemoryCheckpointStore:
    """In-memory store with the same conditions; ``fail_next`` makes the next call raise."""

    rows: dict[str, ShardCheckpoint] = field(default_factory=dict)
    watermark_ms: int | None = None
    writes: int = 0
    fail_next: Exception | None = None

    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def load(self) -> dict[str, ShardCheckpoint]:
        self._maybe_fail()
        return dict(self.rows)

    def advance(self, checkpoint: ShardCheckpoint) -> bool:
        self._maybe_fail()
        self.writes += 1
        stored = self.rows.get(checkpoint.shard_id)
        if not checkpoint.is_after(stored) or checkpoint.fenced_by(stored):
            return False
        if checkpoint.lease_counter is None and stored is not None:
            checkpoint = replace(checkpoint, lease_counter=stored.lease_counter)
        if stored is not None and stored.skipped_history:
            checkpoint = replace(checkpoint, skipped_history=True)  # never cleared
        self.rows[checkpoint.shard_id] = checkpoint
        return True

    def publish_watermark(self, watermark_ms: int, claimed_at_ms: int) -> bool:
        self._maybe_fail()
        self.writes += 1
        if self.watermark_ms is not None and watermark_ms <= self.watermark_ms:
            return False
        self.watermark_ms = watermark_ms
        return True

    def watermark(self) -> int | None:
        return self.watermark_ms
