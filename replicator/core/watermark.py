"""The stream watermark: "region B has every record with commitTimestamp <= W" (pure).

Definition. A claim (t, W) published at wall time t says: every source record with
commitTimestamp <= W that arrived in the source stream before t is in the target at t.
(This is exactly what ``xrh verify`` checks for every line of ``claims.jsonl``.)

Commit timestamps are not monotone within a shard (many producers, whole-second clocks), and a
record not read yet is unknown, so W cannot come from "the last commit timestamp copied". It
rests on one stated assumption, the *commit delay bound* D (``max_commit_delay_ms``): a record
reaches the source stream within D of its commitTimestamp. For each shard s the replicator
keeps a shard watermark W_s, written into the shard's checkpoint row after the target
acknowledged a batch:

    W_s = min( A_s - margin - D ,  min commitTimestamp of records of s read but not yet
               acknowledged by the target, minus 1 ms )

where A_s bounds the arrival of every record of s not yet read: the read time of the last
GetRecords that reached the tip of the shard (nothing newer existed), or else the
ApproximateArrivalTimestamp of the last record read (later records arrive no earlier);
``margin`` absorbs the read-after-write visibility delay and clock skew. Every record of s that
is not in the target either was read and is pending (its commit is above W_s by the min) or
arrives after A_s - margin, hence has commit >= arrival - D > W_s. So W_s holds at any later t.

- An idle shard still moves: each empty read at the tip raises A_s to the read time.
- A lagging shard holds W back by its lag (A_s is the arrival of what it has read).
- A closed shard whose records are all replicated no longer constrains W (row ``closed``).
- A shard without a row (never read) blocks any claim: W is only published when every shard
  the stream lists has a row.
- Records without a parseable commitTimestamp neither constrain nor move W (they are counted).
- A shard started without a checkpoint at the replicator's start time (``--start-at-latest``)
  skipped its older records: they are in the source and never in the target, and their commit
  timestamps are unknown, so no W would be true. Such a shard writes no W_s, and its row
  (``startedAtLatest``) blocks any stream watermark for as long as the stream lists the shard
  (a closed one stops blocking once the stream has trimmed it, with its skipped records).

The stream watermark is W = min over shards of W_s, published only when it rises (conditional
write of the ``#watermark`` row), and each published claim is appended to the claims log.
A record that breaks the assumption (reaches the source more than D after its commit) can make
a claim false; verify reports such a claim as checkpoint-ahead, with the record as evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from replicator.core.checkpoint import CheckpointStore


@dataclass(frozen=True, slots=True)
class WatermarkSettings:
    max_commit_delay_ms: int = 10_000  # D
    margin_ms: int = 1_000  # visibility delay and clock skew


def shard_watermark(
    settings: WatermarkSettings, arrival_bound_ms: int, pending_commits_ms: Iterable[int | None]
) -> int:
    """W_s from the arrival bound A_s and the commit timestamps of read-but-unacked records."""
    bound = arrival_bound_ms - settings.margin_ms - settings.max_commit_delay_ms
    pending = [c for c in pending_commits_ms if c is not None]
    return min([bound, *(c - 1 for c in pending)])


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """What the source stream lists about a shard (ListShards)."""

    shard_id: str
    parent_ids: tuple[str, ...] = ()
    closed: bool = False  # has an ending sequence number


@dataclass(frozen=True, slots=True)
class Claim:
    claimed_at_ms: int
    watermark_ms: int


def stream_watermark(shards: Sequence[ShardInfo], rows: dict) -> int | None:
    """min over shards of W_s; None while a shard has no row or no shard watermark yet, or
    skipped its history (started at the replicator's start time)."""
    values = []
    for shard in shards:
        row = rows.get(shard.shard_id)
        if row is not None and row.skipped_history:
            return None  # records never read: nothing can be claimed
        if row is not None and row.closed:
            continue
        if row is None or row.shard_watermark_ms is None:
            return None
        values.append(row.shard_watermark_ms)
    return min(values) if values else None


class WatermarkPublisher:
    """Reads every shard row, computes W and publishes it if it rose; returns the claim."""

    def __init__(
        self,
        store: CheckpointStore,
        list_shards: Callable[[], Sequence[ShardInfo]],
        clock_ms: Callable[[], int],
        on_claim: Callable[[Claim], None],
    ) -> None:
        self.store = store
        self.list_shards = list_shards
        self.clock_ms = clock_ms
        self.on_claim = on_claim

    def publish(self) -> Claim | None:
        shards = self.list_shards()
        rows = self.store.load()
        claimed_at = self.clock_ms()  # after the rows were read: every W_s holds from then on
        watermark = stream_watermark(shards, rows)
        if watermark is None:
            return None
        if not self.store.publish_watermark(watermark, claimed_at):
            return None
        claim = Claim(claimed_at, watermark)
        self.on_claim(claim)
        return claim


class CachedShardList:
    """ListShards at most once per ``ttl_s`` (a warm Lambda container publishes per invocation;
    ListShards is limited to 100 calls/s per stream across all callers)."""

    def __init__(
        self,
        list_shards: Callable[[], Sequence[ShardInfo]],
        ttl_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.list_shards = list_shards
        self.ttl_s = ttl_s
        self.clock = clock
        self._cached: tuple[float, Sequence[ShardInfo]] | None = None

    def __call__(self) -> Sequence[ShardInfo]:
        now = self.clock()
        if self._cached is None or now - self._cached[0] >= self.ttl_s:
            self._cached = (now, self.list_shards())
        return self._cached[1]


class PeriodicPublisher:
    """Publishes through ``publisher`` at most once per ``interval_s``; never raises (a claim
    that cannot be made now is made by a later call)."""

    def __init__(
        self,
        publisher: WatermarkPublisher,
        interval_s: float,
        clock: Callable[[], float],
        on_error: Callable[[Exception], None] = lambda exc: None,
    ) -> None:
        self.publisher = publisher
        self.interval_s = interval_s
        self.clock = clock
        self.on_error = on_error
        self._last: float | None = None

    def maybe_publish(self) -> Claim | None:
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_s:
            return None
        self._last = now
        try:
            return self.publisher.publish()
        except Exception as exc:  # noqa: BLE001 - a claim never fails the batch it follows
            self.on_error(exc)
            return None
