"""The active-active forwarder of region S: S's table stream to the other region's staging stream.

Applications write S's table with plain PutItem, UpdateItem and DeleteItem; the applier writes
versions from the other region into it (conditionally). The forwarder reads S's stream in order
and decides per change:

- **forward**: an INSERT or MODIFY whose NewImage is stamped S (a local write) and is not a
  tombstone: its NewImage goes to the other region's staging stream, partition key = pk, so a
  key's versions stay in order there;
- **loop prevention**: a NewImage stamped by the other region was written by our applier (or is
  a repair restoring such a version): never forwarded. Neither are tombstones stamped S (the
  forwarder wrote them itself, below, and forwarded them then) nor the echoes of its repairs
  (remembered, bounded), nor a MODIFY that changed nothing;
- **repair**: a local plain write is unconditional, so it can land *older* than what the table
  held (a writer with a slow clock; a version from the other region applied just before): the
  OldImage's stamp is then larger than the NewImage's and the table went back in time. The
  forwarder writes the OldImage back under the last-writer-wins condition
  (:mod:`replicator.core.lww_writes`), so the table ends on the winner (or on anything newer
  that landed since: then the condition fails and nothing is written), and does not forward the
  loser (it can never win anywhere). Chosen over repairing in the applier because only this
  stream shows that a plain write regressed the table; the applier never sees local writes;
- **tombstone**: a REMOVE (an application's DeleteItem; the reference applier never deletes)
  becomes the tombstone ``{pk, stamp, xrh_deleted: true}`` stamped
  :func:`~xrh.active_active.delete_stamp` (OldImage's stamp, S): written to S's table under the
  condition (so S keeps the delete instead of a missing key that a late older write could bring
  back) and forwarded. If a newer version landed meanwhile, the condition keeps it;
- an item without a stamp cannot be ordered: dead-lettered with the reason, never forwarded.

Acknowledgement is all or nothing per batch: the poller's checkpoint moves past a batch only
once PutRecords acknowledged every staging record of it (through
:class:`~replicator.core.putrecords.PutRecordsSender`: per-key order kept under partial failure,
only failed entries resent) and every repair and tombstone was written or superseded. Anything
else fails the batch, which is read and decided again from its first change: every decision is
a function of the change alone (plus the restore memory, which only suppresses echoes), and
every write is conditional, so a replay writes nothing new and forwards duplicates at worst
(the applier's condition makes them no-ops). Every write is preceded by the lease fence's check.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

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
from replicator.core.changes import ChangeRecord
from replicator.core.checkpoint import CheckpointStore, ShardCheckpoint
from replicator.core.fence import LeaseFence
from replicator.core.lww_records import encode, pk_of, tombstone
from replicator.core.lww_writes import ConditionalWriter, StampedWrite, squash
from replicator.core.metrics import Metrics
from replicator.core.putrecords import PutEntry, PutRecordsSender
from replicator.errors import DeadLetterError, LeaseLost
from xrh.active_active import ZERO, delete_stamp, is_tombstone, source_seq_of, stamp_of

COUNTERS = (
    "batches", "changes_in", "forwarded", "repairs", "repairs_written", "repairs_superseded",
    "tombstones", "tombstones_written", "tombstones_superseded", "skipped_not_local",
    "skipped_own_tombstones", "skipped_restore_echoes", "skipped_unchanged", "unstamped",
    "dead_lettered", "put_records_calls", "retried_entries", "local_write_calls",
    "failed_batches", "lease_lost_batches", "checkpoint_writes", "checkpoint_conflicts",
    "checkpoint_errors", "get_records_calls",
)  # fmt: skip
#: Repairs remembered to recognise their echoes in the stream (oldest forgotten first).
RESTORE_MEMORY = 10_000


@dataclass(frozen=True, slots=True)
class Decision:
    """What one change becomes: a staging record to send and / or a local conditional write."""

    forward: PutEntry | None = None
    local: StampedWrite | None = None
    skipped: str | None = None  # the counter of a change left alone
    dead: str | None = None  # why it can never be forwarded


class Forwarder(ClosedShardIdle):
    """Forwards batches of S's table stream (any shard, one batch at a time per shard)."""

    def __init__(
        self,
        *,
        table: str,
        region: str,
        other_region: str,
        sender: PutRecordsSender,
        writer: ConditionalWriter,
        checkpoints: CheckpointStore,
        dead_letters: DeadLetterSink,
        metrics: Metrics | None = None,
        log: Log = _no_log,
        restore_memory: int = RESTORE_MEMORY,
    ) -> None:
        self.table = table
        self.stream = table  # the poller names the source by it
        self.region = region
        self.other_region = other_region
        self.sender = sender
        self.writer = writer
        self.checkpoints = checkpoints
        self.dead_letters = dead_letters
        self.metrics = metrics or Metrics(counters=dict.fromkeys(COUNTERS, 0))
        self.log = log
        self.restore_memory = restore_memory
        self._restored: OrderedDict[tuple[str, tuple], None] = OrderedDict()

    # ------------------------------------------------------------------ decisions

    def decide(self, c: ChangeRecord) -> Decision:
        """The module doc's rules for one change (pure but for the restore memory)."""
        S = self.region
        if c.is_remove:
            if c.old_image is None:
                return Decision(dead="no OldImage: the stream must be NEW_AND_OLD_IMAGES")
            stamp = delete_stamp(stamp_of(c.old_image) or ZERO, S)
            item = tombstone({"pk": c.keys["pk"]}, stamp)
            local = StampedWrite(pk_of(item), item, stamp, c, strict=True)
            return Decision(self._entry(item, stamp, c), local)
        new, old = c.new_image, c.old_image
        if new is None:
            return Decision(dead="no NewImage: the stream must be NEW_AND_OLD_IMAGES")
        ns, os_ = stamp_of(new), stamp_of(old)
        assert ns is not None
        if os_ is not None and os_ > ns:  # a plain write landed older: restore the winner
            assert old is not None
            self._remember(old)
            # strict: a later write of the same stamp from the same region (the applier's, in
            # the other region's order) may have replaced the loser since: it must stay. But a
            # version the applier wrote carries its origin position, and goes back over an
            # equal-stamped one from earlier in the origin's order (a repair read late may
            # have put that one back first).
            order = source_seq_of(old) if os_.region != S else None
            return Decision(local=StampedWrite(pk_of(old), old, os_, c, strict=True,
                                               order=order), skipped="repairs")  # fmt: skip
        if old is not None and old == new:
            return Decision(skipped="skipped_unchanged")
        if ns == ZERO:
            return Decision(dead="unstamped: the item has no last_update_timestamp and "
                            "last_updater_region, so it cannot be ordered")  # fmt: skip
        if ns.region != S:
            return Decision(skipped="skipped_not_local")
        if is_tombstone(new):
            return Decision(skipped="skipped_own_tombstones")
        if self._echo(new):
            return Decision(skipped="skipped_restore_echoes")
        return Decision(self._entry(new, ns, c))

    def _entry(self, item: dict, stamp, c: ChangeRecord) -> PutEntry:
        return PutEntry(pk_of(item), encode(item, self.region, stamp, c), ref=c)

    def _fingerprint(self, item: dict) -> tuple[str, tuple]:
        return pk_of(item), tuple(sorted((k, repr(v)) for k, v in item.items()))

    def _remember(self, item: dict) -> None:
        key = self._fingerprint(item)
        self._restored[key] = None
        self._restored.move_to_end(key)
        while len(self._restored) > self.restore_memory:
            self._restored.popitem(last=False)

    def _echo(self, item: dict) -> bool:
        """True if ``item`` is exactly a version this forwarder restored (kept, not consumed: a
        replayed repair echoes again)."""
        return self._fingerprint(item) in self._restored

    # ------------------------------------------------------------------ batches

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
        """Decide, write the repairs and tombstones, send the staging records, dead-letter,
        checkpoint: all or nothing (module doc)."""
        m = self.metrics
        m.add("batches")
        m.add("changes_in", len(records))
        if not records:
            return BatchResult(BatchStatus.REPLICATED, 0, None)
        first = records[0].sequence_number
        decisions = [self.decide(c) for c in records]
        entries = [d.forward for d in decisions if d.forward is not None]
        local = squash([d.local for d in decisions if d.local is not None])
        guard = fence.check if fence is not None else None
        report = self.writer.write(local, guard=guard)
        m.add("local_write_calls", report.calls)
        if not report.complete:
            return self._failed(shard_id, first, report.fenced, report.error or
                                f"{len(report.unwritten)} repairs / tombstones unwritten")  # fmt: skip
        sent = self.sender.send(entries, before_request=guard)
        m.add("put_records_calls", sent.requests)
        m.add("retried_entries", sent.retried_entries)
        if not sent.complete:
            unresolved = len(sent.outcomes) - sent.resolved_prefix
            return self._failed(shard_id, first, sent.fenced, sent.error or
                                f"{unresolved} staging records not acknowledged")  # fmt: skip
        letters = [
            DeadLetterRecord(c, self.table, self.region, self.other_region, "unforwardable", why)
            for c, d in zip(records, decisions, strict=True)
            if (why := d.dead) is not None
        ]
        letters += [
            DeadLetterRecord(dl.entry.ref, self.table, self.region, self.other_region,
                             dl.reason.value, dl.detail)  # type: ignore[arg-type]
            for dl in sent.dead_letters
        ]  # fmt: skip
        letters += [
            DeadLetterRecord.of_write(w.ref, self.table, self.region, self.region, why)
            for w, why in report.dead
        ]
        if letters:
            try:
                self.dead_letters.put(letters)
            except DeadLetterError as exc:
                return self._failed(shard_id, first, None, f"dead letters: {exc}")
            m.add("dead_lettered", len(letters))
            self.log("dead_lettered", shard_id=shard_id, changes=len(letters))
        self._count(decisions, report)
        checkpoint = ShardCheckpoint(shard_id, records[-1].sequence_number, closed=shard_end)
        written = write_checkpoint(self.checkpoints, checkpoint, fence, m, self.log)
        return BatchResult(BatchStatus.REPLICATED, len(records), None, checkpoint, written)

    def _count(self, decisions: Sequence[Decision], report) -> None:
        m = self.metrics
        for d in decisions:
            if d.skipped is not None:
                m.add(d.skipped)
            elif d.forward is not None and d.local is not None:
                m.add("tombstones")
            elif d.forward is not None:
                m.add("forwarded")
            elif d.dead is not None and d.dead.startswith("unstamped"):
                m.add("unstamped")
        for bucket, suffix in ((report.written, "written"), (report.superseded, "superseded")):
            for w in bucket:
                kind = "tombstones" if is_tombstone(w.item) and w.ref.is_remove else "repairs"
                m.add(f"{kind}_{suffix}")

    def _failed(self, shard_id: str, first: str, fenced, error) -> BatchResult:
        if isinstance(fenced, LeaseLost):
            self.metrics.add("lease_lost_batches")
            self.log("lease_lost", shard_id=shard_id, error=str(fenced))
            return BatchResult(BatchStatus.LEASE_LOST, 0, first, error=str(fenced))
        self.metrics.add("failed_batches")
        message = str(fenced or error)
        self.log("batch_failed", shard_id=shard_id, error=message)
        return BatchResult(BatchStatus.FAILED, 0, first, error=message)

    def close(self) -> None:
        self.writer.close()
