"""One batch of one source shard: check the active region, copy, dead-letter, checkpoint (pure).

The seed's Lambda acknowledged a batch uncopied when the active-region lookup threw, wrote an
unconditional checkpoint per record and made two AWS calls per record. Here:

- lookup failure: the batch FAILS from its first record (retried, never acknowledged uncopied);
- not active here: the batch is acknowledged without copying (logged once per batch), and the
  checkpoint position moves so that taking over later starts where this stream stands;
- a switch with a handover time (:mod:`replicator.core.active`): records that arrived before
  it belong to the previous region, later ones to the new one, so a switch mid-run neither
  drops the records still in flight nor sends them round in a loop;
- active: one PutRecords per up to 500 records through :class:`PutRecordsSender`; records that
  can never be written go to the dead-letter sink with their full data and the reason; the
  checkpoint advances (one conditional write) over the acknowledged prefix only, and anything
  after the first unresolved record is reported as failed (``failed_from``) to be sent again;
- with a lease fence (the poller; :mod:`replicator.core.fence`): every PutRecords request and
  every checkpoint write is preceded by the fence's check and the checkpoint carries the lease
  counter; once the lease is lost nothing more is written (``LEASE_LOST``);
- with a handover (the poller; :mod:`replicator.core.handover`): as the previous region it
  records the copies it makes after a switch; as the new region it holds records that arrived
  after the switch until the previous region is done, then never forwards its recorded copies,
  so no record goes back to the region it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from replicator.core.active import ActiveRegionLookup, Assignment
from replicator.core.batch_handover import HandoverSteps, _runs, _Shard
from replicator.core.batch_result import (  # re-exported: the pipelines import them from here
    BatchResult,
    BatchStatus,
    DeadLetterRecord,
    DeadLetterSink,
    Log,
    _no_log,
    write_checkpoint,
)
from replicator.core.checkpoint import CheckpointStore, ShardCheckpoint
from replicator.core.fence import LeaseFence
from replicator.core.handover import Handover, HandoverKey, copy_id
from replicator.core.metrics import Metrics
from replicator.core.putrecords import EntryStatus, PutEntry, PutRecordsSender, SendReport
from replicator.core.records import SourceRecord, commit_ms_of
from replicator.core.watermark import WatermarkSettings, shard_watermark
from replicator.errors import (
    ActiveRegionLookupError,
    DeadLetterError,
    LeaseLost,
    ReplicatorError,
)

__all__ = [
    "BatchResult", "BatchStatus", "DeadLetterRecord", "DeadLetterSink", "Log", "ShardReplicator",
    "write_checkpoint",
]  # fmt: skip


class ShardReplicator(HandoverSteps):
    """Replicates batches of source records to the target stream (any shard, one at a time)."""

    def __init__(
        self,
        *,
        stream: str,
        source_region: str,
        target_region: str,
        sender: PutRecordsSender,
        active: ActiveRegionLookup,
        checkpoints: CheckpointStore,
        dead_letters: DeadLetterSink,
        clock_ms: Callable[[], int],
        watermark: WatermarkSettings | None = None,
        metrics: Metrics | None = None,
        log: Log = _no_log,
        handover: Handover | None = None,
    ) -> None:
        self.stream = stream
        self.handover = handover
        self.source_region = source_region
        self.target_region = target_region
        self.sender = sender
        self.active = active
        self.checkpoints = checkpoints
        self.dead_letters = dead_letters
        self.clock_ms = clock_ms
        self.watermark = watermark or WatermarkSettings()
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
        """``tip_read_at_ms``: send time of the read that returned these records if it reached
        the tip of the shard; ``shard_end``: the shard is closed and these are its last records;
        ``fence``: the shard's lease, checked before every write (None: no lease, Lambda);
        ``skipped_history``: the shard's older records were never read (``--start-at-latest``),
        so its checkpoints carry no shard watermark (:mod:`replicator.core.watermark`)."""
        m = self.metrics
        m.add("batches")
        m.add("records_in", len(records))
        if not records:
            return BatchResult(BatchStatus.REPLICATED, 0, None)
        assignment = self._lookup(shard_id, records, None)
        if isinstance(assignment, BatchResult):
            return assignment
        flags = [assignment.copies(self.source_region, r.arrival_ms) for r in records]
        newest = max((r.arrival_ms for r in records if r.arrival_ms is not None), default=None)
        if (
            not all(flags)
            and assignment.read_at_ms is not None
            and newest is not None
            and newest > assignment.read_at_ms
        ):
            # Never stand down on an answer older than the records: a switch may be unseen.
            assignment = self._lookup(shard_id, records, newest)
            if isinstance(assignment, BatchResult):
                return assignment
            flags = [assignment.copies(self.source_region, r.arrival_ms) for r in records]
        key = HandoverKey.of(self.stream, assignment) if self.handover is not None else None
        late = key if key is not None and key.previous == self.source_region else None
        if late is not None:  # also what this region's producers wrote just after the switch
            assert self.handover is not None
            close = self.handover.closes_at(late)
            flags = [
                flag or (r.arrival_ms is not None and late.since_ms <= r.arrival_ms < close)
                for flag, r in zip(flags, records, strict=True)
            ]
        ctx = _Shard(fence, skipped_history, late)
        if self.handover is not None and assignment.since_ms is not None and any(flags):
            gated = self._gate(shard_id, records, flags, assignment, ctx)
            if isinstance(gated, BatchResult):
                return gated
            flags = gated
        result = self._dispatch(
            shard_id, records, flags, assignment.region, tip_read_at_ms, shard_end, ctx
        )
        self._note_passed(shard_id, records, result)
        return result

    def _dispatch(
        self,
        shard_id: str,
        records: Sequence[SourceRecord],
        flags: list[bool],
        active: str,
        tip_read_at_ms: int | None,
        shard_end: bool,
        ctx: _Shard,
    ) -> BatchResult:
        """Copy the flagged records and stand down for the others."""
        runs = _runs(flags)
        if len(runs) > 1:
            return self._handover(shard_id, records, runs, active, tip_read_at_ms, shard_end, ctx)
        if runs[0][0]:
            return self._copy(shard_id, records, tip_read_at_ms, shard_end, ctx)
        return self._stand_down(shard_id, records, active, shard_end, ctx)

    def _lookup(
        self, shard_id: str, records: Sequence[SourceRecord], not_before_ms: int | None
    ) -> Assignment | BatchResult:
        """The assignment, or the FAILED result when it cannot be read (never acknowledged)."""
        m = self.metrics
        try:
            m.add("active_region_lookups")
            return self.active.assignment(self.stream, not_before_ms=not_before_ms)
        except ActiveRegionLookupError as exc:
            m.add("lookup_failures")
            m.add("failed_batches")
            self.log("lookup_failed", shard_id=shard_id, error=str(exc), records=len(records))
            return BatchResult(BatchStatus.FAILED, 0, records[0].sequence_number, error=str(exc))

    def _copy(
        self,
        shard_id: str,
        records: Sequence[SourceRecord],
        tip_read_at_ms: int | None,
        shard_end: bool,
        ctx: _Shard,
    ) -> BatchResult:
        m = self.metrics
        fence = ctx.fence
        commits = [commit_ms_of(r.data) for r in records]
        m.add("no_commit_timestamp", sum(c is None for c in commits))
        entries = [PutEntry(r.partition_key, r.data, ref=i) for i, r in enumerate(records)]
        sent_at = self.clock_ms()
        report = self.sender.send(entries, before_request=fence.check if fence else None)
        if self.handover is not None:
            recorded = self._remember(shard_id, records, report, sent_at, ctx)
            if recorded is not None:
                return recorded
        m.add("requests", report.requests)
        m.add("retried_entries", report.retried_entries)
        m.add("throttled_requests", report.throttled_requests)
        acked = report.resolved_prefix
        if report.dead_letters:
            letters = [
                DeadLetterRecord(
                    records[d.entry.ref],  # type: ignore[index]
                    self.stream,
                    self.source_region,
                    self.target_region,
                    d.reason.value,
                    d.detail,
                )
                for d in report.dead_letters
            ]
            try:
                self.dead_letters.put(letters)
                m.add("dead_lettered", len(letters))
                self.log("dead_lettered", shard_id=shard_id, records=len(letters))
            except DeadLetterError as exc:
                first = min(d.entry.ref for d in report.dead_letters)  # type: ignore[type-var]
                acked = min(acked, first)  # type: ignore[type-var,assignment]
                self.log("dead_letter_failed", shard_id=shard_id, error=str(exc))
        written = [o for o in report.outcomes[:acked] if o.status is EntryStatus.WRITTEN]
        m.add("records_copied", len(written))
        m.add("bytes_copied", sum(len(o.entry.data) for o in written))
        if isinstance(report.fenced, LeaseLost):
            # Not ours any more: no checkpoint, no resend; the new owner starts from its own.
            m.add("lease_lost_batches")
            self.log("lease_lost", shard_id=shard_id, acked=acked, error=str(report.fenced))
            failed_from = records[acked].sequence_number if acked < len(records) else None
            return BatchResult(BatchStatus.LEASE_LOST, acked, failed_from, error=str(report.fenced))
        if acked == 0:
            m.add("failed_batches")
            error = str(report.error or report.fenced or "no record acknowledged")
            self.log("batch_failed", shard_id=shard_id, error=error)
            return BatchResult(BatchStatus.FAILED, 0, records[0].sequence_number, error=error)

        complete = acked == len(records)
        arrival = tip_read_at_ms if complete and tip_read_at_ms is not None else None
        if arrival is None:
            arrival = records[-1].arrival_ms
        shard_wm = (
            None
            if arrival is None or ctx.skipped_history
            else shard_watermark(self.watermark, arrival, commits[acked:])
        )
        last_commit = next((c for c in reversed(commits[:acked]) if c is not None), None)
        checkpoint = ShardCheckpoint(
            shard_id,
            records[acked - 1].sequence_number,
            commit_ms=last_commit,
            shard_watermark_ms=shard_wm,
            closed=shard_end and complete,
            skipped_history=ctx.skipped_history,
        )
        written_ok = self._write(checkpoint, fence)
        lag = m.lag(shard_id)
        lag.last_sequence_number = checkpoint.sequence_number
        lag.updated_ms = self.clock_ms()
        if last_commit is not None:
            lag.commit_lag_ms = lag.updated_ms - last_commit
        if complete:
            return BatchResult(BatchStatus.REPLICATED, acked, None, checkpoint, written_ok)
        m.add("failed_batches")
        return BatchResult(
            BatchStatus.PARTIAL,
            acked,
            records[acked].sequence_number,
            checkpoint,
            written_ok,
            error=str(report.error or report.fenced or "attempts exhausted"),
        )

    def _remember(
        self,
        shard_id: str,
        records: Sequence[SourceRecord],
        report: SendReport,
        sent_at: int,
        ctx: _Shard,
    ) -> BatchResult | None:
        """Hand the written copies to the handover; as the previous region of a switch, record
        them (None: go on; a result: the recording failed and the batch must be sent again)."""
        assert self.handover is not None
        copies = [
            copy_id(o.shard_id, o.sequence_number)
            for o in report.outcomes
            if o.status is EntryStatus.WRITTEN and o.shard_id and o.sequence_number
        ]
        self.handover.wrote(sent_at, copies)
        if ctx.late is None or not copies:
            return None
        try:
            self.handover.record_late(ctx.late, f"{shard_id}#{records[0].sequence_number}", copies)
        except ReplicatorError as exc:
            self.metrics.add("failed_batches")
            self.log("handover_record_failed", shard_id=shard_id, error=str(exc))
            return BatchResult(
                BatchStatus.FAILED, 0, records[0].sequence_number, error=f"recording copies: {exc}"
            )
        self.metrics.add("handover_copies_recorded", len(copies))
        return None

    def idle(
        self,
        shard_id: str,
        sequence_number: str | None,
        tip_read_at_ms: int,
        closed: bool = False,
        fence: LeaseFence | None = None,
        skipped_history: bool = False,
    ) -> bool:
        """An empty read at the tip: raise this shard's watermark (one conditional write); a
        shard that skipped its history only records its position."""
        wm = None if skipped_history else shard_watermark(self.watermark, tip_read_at_ms, ())
        checkpoint = ShardCheckpoint(
            shard_id, sequence_number, None, wm, closed, skipped_history=skipped_history
        )
        written = self._write(checkpoint, fence)
        if written and self.handover is not None:
            self.handover.passed(shard_id, tip_read_at_ms - self.handover.settings.margin_ms)
        return written

    def _stand_down(
        self,
        shard_id: str,
        records: Sequence[SourceRecord],
        active: str,
        shard_end: bool,
        ctx: _Shard,
        *,
        write: bool = True,
    ) -> BatchResult:
        self.metrics.add("stood_down_batches")
        self.metrics.add("stood_down_records", len(records))
        self.log(
            "stood_down",
            shard_id=shard_id,
            records=len(records),
            active_region=active,
            this_region=self.source_region,
        )
        # Position only: nothing was copied, so no shard watermark is claimed.
        checkpoint = ShardCheckpoint(
            shard_id,
            records[-1].sequence_number,
            closed=shard_end,
            skipped_history=ctx.skipped_history,
        )
        ok = self._write(checkpoint, ctx.fence) if write else False
        return BatchResult(BatchStatus.STOOD_DOWN, len(records), None, checkpoint, ok)

    def _write(self, checkpoint: ShardCheckpoint, fence: LeaseFence | None = None) -> bool:
        return write_checkpoint(self.checkpoints, checkpoint, fence, self.metrics, self.log)
