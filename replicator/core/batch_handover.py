"""The kinesis replicator's part in a failover handover (pure): the steps of
:class:`replicator.core.batch.ShardReplicator` that only a switch of the active region uses.

As the new region it holds the records that arrived after a switch until the previous region is
done, then stands down for the copies that region recorded (:func:`replicator.core.handover.
gate_batch`); a batch that straddles a switch is copied in part and stood down for in part; and
it tells the handover how far each shard is processed. The host class provides ``handover``,
``active``, ``stream``, ``source_region``, ``metrics``, ``log`` and the ``_copy`` /
``_stand_down`` / ``_dispatch`` steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from replicator.core.active import Assignment
from replicator.core.batch_result import BatchResult, BatchStatus
from replicator.core.fence import LeaseFence
from replicator.core.handover import Gate, HandoverKey, copy_id, gate_batch
from replicator.core.records import SourceRecord
from replicator.core.watermark import ShardInfo
from replicator.errors import ReplicatorError


@dataclass(frozen=True, slots=True)
class _Shard:
    """What a batch's writes need to know about its shard beyond the records."""

    fence: LeaseFence | None = None
    skipped_history: bool = False
    late: HandoverKey | None = None  # this region hands over: record the copies it makes


def _runs(flags: Sequence[bool]) -> list[tuple[bool, int, int]]:
    """Maximal runs of equal flags as (flag, start, end); arrival order makes a handover two."""
    runs: list[tuple[bool, int, int]] = []
    start = 0
    for index in range(1, len(flags) + 1):
        if index == len(flags) or flags[index] != flags[start]:
            runs.append((flags[start], start, index))
            start = index
    return runs


class HandoverSteps:
    """Mixed into ShardReplicator: its handover steps (module doc)."""

    handover: Any
    active: Any
    stream: str
    source_region: str
    metrics: Any
    log: Any

    def _gate(
        self,
        shard_id: str,
        records: Sequence[SourceRecord],
        flags: list[bool],
        assignment: Assignment,
        ctx: _Shard,
    ) -> list[bool] | BatchResult:
        """Records this region copies as the new region of the switch they arrived under: held
        until that switch's previous region is done, then its recorded copies stood down for."""
        handover, m = self.handover, self.metrics
        assert handover is not None

        def gate(key: HandoverKey) -> Gate:
            try:
                return handover.gate(key)
            except ReplicatorError as exc:  # never forward blind: hold and ask again
                return Gate(True, reason=f"handover state unreadable: {exc}")

        gated = gate_batch(
            gate, self.stream, self.source_region, assignment,
            [r.arrival_ms for r in records],
            lambda i: copy_id(records[i].shard_id, records[i].sequence_number), flags,
        )  # fmt: skip
        if gated.skipped:
            m.add("handover_skipped_copies", gated.skipped)
            self.log("handover_skipped_copies", shard_id=shard_id, records=gated.skipped)
        first = gated.held_from
        if first is None:
            return gated.flags
        m.add("handover_held_batches")
        self.log("handover_held", shard_id=shard_id, records=len(records) - first,
                 reason=gated.reason)  # fmt: skip
        if first == 0:
            return BatchResult(
                BatchStatus.FAILED, 0, records[0].sequence_number, error=gated.reason
            )
        done = self._dispatch(
            shard_id, records[:first], gated.flags, assignment.region, None, False, ctx
        )
        if done.status not in (BatchStatus.REPLICATED, BatchStatus.STOOD_DOWN):
            return done
        return BatchResult(
            BatchStatus.PARTIAL, first, records[first].sequence_number, done.checkpoint,
            done.checkpoint_written, error=gated.reason,
        )  # fmt: skip

    def _note_passed(
        self, shard_id: str, records: Sequence[SourceRecord], result: BatchResult
    ) -> None:
        """Tell the handover how far this shard is processed and checkpointed."""
        if self.handover is None or not result.checkpoint_written:
            return
        if result.status not in (BatchStatus.REPLICATED, BatchStatus.STOOD_DOWN):
            return
        arrivals = [r.arrival_ms for r in records if r.arrival_ms is not None]
        if arrivals:
            self.handover.passed(shard_id, max(arrivals))

    def handover_pending(self) -> bool:
        """This region still owes the new region its handover (a drain must wait for it)."""
        return self.handover is not None and self.handover.pending()

    def handover_tick(
        self, shards: Sequence[ShardInfo], owned: Sequence[str], finished: Sequence[str]
    ) -> None:
        """Periodic handover bookkeeping (the poller calls it once per claim interval)."""
        if self.handover is None:
            return
        try:
            assignment = self.active.assignment(self.stream)  # cached: at most once per TTL
            self.handover.tick(assignment, self.stream, shards, owned, finished)
        except ReplicatorError as exc:
            self.log("handover_tick_failed", error=f"{type(exc).__name__}: {exc}")

    def _handover(
        self,
        shard_id: str,
        records: Sequence[SourceRecord],
        runs: list[tuple[bool, int, int]],
        active: str,
        tip_read_at_ms: int | None,
        shard_end: bool,
        ctx: _Shard,
    ) -> BatchResult:
        """A batch that straddles an active-region switch: copy the records this region owns,
        stand down for the others, in stream order. A stand-down run writes its checkpoint
        only when it ends the batch (a later copy run's checkpoint covers it), so such a batch
        writes at most one checkpoint per copy run plus one."""
        self.log("handover", shard_id=shard_id, records=len(records), runs=len(runs))
        acked = 0
        last: BatchResult | None = None
        for index, (copy, start, end) in enumerate(runs):
            final = index == len(runs) - 1
            part = records[start:end]
            if copy:
                result = self._copy(
                    shard_id, part, tip_read_at_ms if final else None, shard_end and final, ctx
                )
            else:
                result = self._stand_down(
                    shard_id, part, active, shard_end and final, ctx, write=final
                )
            if result.status in (BatchStatus.FAILED, BatchStatus.PARTIAL, BatchStatus.LEASE_LOST):
                if acked == 0:
                    return result
                return BatchResult(
                    result.status
                    if result.status is BatchStatus.LEASE_LOST
                    else BatchStatus.PARTIAL,
                    acked + result.acked,
                    result.failed_from,
                    result.checkpoint or (last.checkpoint if last else None),
                    result.checkpoint_written,
                    error=result.error,
                )
            acked += result.acked
            last = result
        assert last is not None
        return BatchResult(
            BatchStatus.REPLICATED, acked, None, last.checkpoint, last.checkpoint_written
        )
