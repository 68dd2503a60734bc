"""The ``action-log`` pipeline's reference consumer (pure): a Kinesis log of commands applied to
a DynamoDB table, exactly once in effect under replays and crashes.

The proof of concept it replaces checkpointed a batch before its writes finished (a crash lost
them) and only logged a failed write (lost too). :class:`ActionApplier` is the poller's
:class:`~replicator.runners.poller_seams.BatchReplicator`; per GetRecords batch of one shard:

1. every record is parsed (:func:`xrh.action_log.parse_action`); one that is not an action, or
   holds a value DynamoDB cannot store, goes to the dead-letter sink with its data and the
   reason and never blocks the shard;
2. the rate limit (the lazy consumer, :mod:`replicator.core.action_pace`) is paid for the
   batch's actions;
3. each key's ops become at most one write (:mod:`replicator.core.action_plan`): a full state
   (put or delete) through :class:`~replicator.core.table_writes.BatchWriter` (chunks of 25,
   unprocessed items retried with backoff, invalid items bisected to dead letters), or one
   conditional UpdateItem for a chain of updates. Keys are written concurrently (the batch
   writer's threads, and a pool of ``max_in_flight`` threads for the updates), every request
   preceded by the lease fence's check;
4. an UpdateItem whose condition fails (an earlier attempt, whose checkpoint never came, already
   applied part of the chain) reads the item's position (``ReturnValuesOnConditionCheckFailure``
   ALL_OLD, or a consistent GetItem) and applies only the suffix after it, at most
   :data:`~replicator.core.action_update.MAX_CONDITION_RETRIES` times; an UpdateItem refused as invalid is retried one op at a
   time, so only the op at fault is dead-lettered; throttling, 5xx and unknown outcomes are
   retried with backoff (safe: the condition makes a second apply a no-op);
5. acknowledgement is all or nothing: any write left unwritten fails the batch (read again from
   its first record); the checkpoint (:func:`~replicator.core.batch.write_checkpoint`, carrying
   the lease counter) is written only after every write of the batch was acknowledged.

Why a replay never counts an ADD twice: an item's ``xrh_seq`` is the position of the last action
its state includes; a full-state write sets it to the chain's last action, an update applies
only past it. Puts and deletes are unconditional (BatchWriteItem has no conditions), so a replay
that starts at an earlier batch boundary can set an item back to an older full state for a
moment, with the matching older position: the actions after it, replayed in order, bring it
forward again, each applied once. A delete removes the position with the item; what follows a
delete is applied to nothing, as the log says.

Metrics (``metrics.counters``): ``actions_in``, ``actions_applied``, ``malformed``, ``item_ops``,
``put_requests``, ``delete_requests``, ``update_requests``, ``write_calls``, ``update_calls``,
``condition_retries``, ``ops_already_applied``, ``unprocessed_retries``, ``throttled_requests``,
``dead_lettered``, ``failed_batches``, ``lease_lost_batches``, ``checkpoint_*``; ``apply_lag_ms``
(apply time - commitTimestamp); per shard lag and ``applied_arrival_ms`` (the lag file).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from replicator.core.action_pace import unlimited
from replicator.core.action_plan import (
    ActionValueError,
    ChainOp,
    KeyPlan,
    applied_seq,
    plan_batch,
    wire_ops,
)
from replicator.core.action_update import ChainUpdater, UnwrittenError
from replicator.core.batch import (
    BatchResult,
    BatchStatus,
    DeadLetterRecord,
    DeadLetterSink,
    Log,
    write_checkpoint,
)
from replicator.core.batch_result import ClosedShardIdle
from replicator.core.checkpoint import CheckpointStore, ShardCheckpoint
from replicator.core.fence import LeaseFence
from replicator.core.metrics import Metrics
from replicator.core.records import SourceRecord, parse_iso_ms
from replicator.core.table_writes import BatchWriter
from replicator.errors import DeadLetterError, LeaseLost, ReplicatorError
from xrh.action_log import ActionFormatError, parse_action

APPLY_LAG = "apply_lag_ms"
COUNTERS = (
    "batches", "actions_in", "actions_applied", "malformed", "item_ops", "put_requests",
    "delete_requests", "update_requests", "write_calls", "update_calls", "condition_retries",
    "ops_already_applied", "unprocessed_retries", "throttled_requests", "dead_lettered",
    "failed_batches", "lease_lost_batches", "checkpoint_writes", "checkpoint_conflicts",
    "checkpoint_errors", "get_records_calls", "rate_waited_ms",
)  # fmt: skip


def _no_log(event: str, **fields: object) -> None:
    return None


class ActionApplier(ClosedShardIdle):
    """Applies batches of actions to ``table`` (any shard, one batch at a time per shard)."""

    def __init__(
        self,
        *,
        stream: str,
        table: str,
        source_region: str,
        target_region: str,
        updater: ChainUpdater,
        writer: BatchWriter,
        checkpoints: CheckpointStore,
        dead_letters: DeadLetterSink,
        clock_ms: Callable[[], int],
        pace: Callable[[int], float] = unlimited,
        max_in_flight: int = 4,
        metrics: Metrics | None = None,
        log: Log = _no_log,
    ) -> None:
        self.stream = stream
        self.table = table
        self.source_region = source_region
        self.target_region = target_region
        self.updater = updater
        self.writer = writer
        self.checkpoints = checkpoints
        self.dead_letters = dead_letters
        self.clock_ms = clock_ms
        self.pace = pace
        self.max_in_flight = max_in_flight
        self.metrics = metrics or Metrics(counters=dict.fromkeys(COUNTERS, 0))
        self.log = log
        #: per shard: arrival time of the last action applied and checkpointed (the lag file)
        self.applied_arrival_ms: dict[str, int] = {}
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.writer.close()

    # ------------------------------------------------------------------ one batch

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
        """Apply one batch of one shard (module doc); the arguments are the poller's."""
        m = self.metrics
        m.add("batches")
        m.add("actions_in", len(records))
        if not records:
            return BatchResult(BatchStatus.REPLICATED, 0, None)
        first = records[0].sequence_number
        ops: list[ChainOp] = []
        letters: dict[int, list[str]] = {}
        commits: list[int] = []
        for index, r in enumerate(records):
            try:
                action = parse_action(r.data)
                parts = wire_ops(action)
            except (ActionFormatError, ActionValueError) as exc:
                m.add("malformed")
                letters.setdefault(index, []).append(f"malformed: {exc}")
                continue
            seq = applied_seq(r.shard_id, r.sequence_number)
            ops.extend(ChainOp(seq, index, op) for op in parts)
            if action.commit_ts is not None:
                with contextlib.suppress(ValueError):  # no lag sample, still applied
                    commits.append(parse_iso_ms(action.commit_ts))
        m.add("item_ops", len(ops))
        waited = self.pace(len(records))
        if waited:
            m.add("rate_waited_ms", int(waited * 1000))
        guard = None if fence is None else _locked(fence.check)
        plans = plan_batch(ops)
        failure = self._write(plans, guard, letters)
        if failure is not None:
            status, error = failure
            m.add("lease_lost_batches" if status is BatchStatus.LEASE_LOST else "failed_batches")
            self.log("lease_lost" if status is BatchStatus.LEASE_LOST else "batch_failed",
                     shard_id=shard_id, error=error, actions=len(records))  # fmt: skip
            return BatchResult(status, 0, first, error=error)
        if letters:
            dead = [
                DeadLetterRecord(
                    records[i],
                    self.stream,
                    self.source_region,
                    self.target_region,
                    reasons[0].partition(": ")[0],
                    "; ".join(reasons),
                )  # fmt: skip
                for i, reasons in sorted(letters.items())
            ]
            try:
                self.dead_letters.put(dead)
            except DeadLetterError as exc:
                m.add("failed_batches")
                self.log("dead_letter_failed", shard_id=shard_id, error=str(exc))
                return BatchResult(BatchStatus.FAILED, 0, first, error=f"dead letters: {exc}")
            m.add("dead_lettered", len(dead))
            self.log("dead_lettered", shard_id=shard_id, actions=len(dead),
                     reasons=[d.detail for d in dead[:5]])  # fmt: skip
        return self._acknowledge(shard_id, records, commits, tip_read_at_ms, shard_end, fence,
                                 skipped_history)  # fmt: skip

    def _write(
        self, plans: list[KeyPlan], guard: Callable[[], object] | None,
        letters: dict[int, list[str]],
    ) -> tuple[BatchStatus, str] | None:  # fmt: skip
        """Every key's write; None when all were acknowledged (dead ones added to
        ``letters``), else the batch's status and why."""
        m = self.metrics
        for plan in plans:
            for c, reason in plan.invalid:
                letters.setdefault(c.index, []).append(f"{reason} (key {plan.pk!r})")
        requests = [p.write for p in plans if p.write is not None]
        chains = [p for p in plans if p.write is None]
        m.add("put_requests", sum(1 for r in requests if not r.is_delete))
        m.add("delete_requests", sum(1 for r in requests if r.is_delete))
        m.add("update_requests", len(chains))
        futures = []
        if chains:
            pool = self._executor()
            futures = [pool.submit(self.updater.apply, p.pk, p.updates, guard) for p in chains]
        report = self.writer.write(requests, guard=guard) if requests else None
        outcomes = [f.result() for f in futures]
        errors: list[ReplicatorError] = []
        if report is not None:
            m.add("write_calls", report.calls)
            m.add("unprocessed_retries", report.unprocessed_retries)
            m.add("throttled_requests", report.throttles)
            for request, reason in report.dead:
                plan: KeyPlan = request.ref
                for c in plan.chain:
                    letters.setdefault(c.index, []).append(f"{reason} (key {plan.pk!r})")
            if not report.complete:
                errors.append(report.fenced or report.error or UnwrittenError("writes unwritten"))
        for o in outcomes:
            m.add("update_calls", o.calls)
            m.add("condition_retries", o.retries)
            m.add("ops_already_applied", o.skipped)
            m.add("throttled_requests", o.throttles)
            for c, reason in o.dead:
                letters.setdefault(c.index, []).append(f"{reason} (key {c.op.pk!r})")
            if not o.done:
                errors.append(o.error or UnwrittenError("update unwritten"))
        if not errors:
            return None
        lost = next((e for e in errors if isinstance(e, LeaseLost)), None)
        if lost is not None:
            return BatchStatus.LEASE_LOST, str(lost)
        return BatchStatus.FAILED, f"{len(errors)} key(s) unwritten; first: {errors[0]}"

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.max_in_flight, thread_name_prefix=f"action-update-{self.table}"
            )
        return self._pool

    # ------------------------------------------------------------------ acknowledgement

    def _acknowledge(
        self,
        shard_id: str,
        records: Sequence[SourceRecord],
        commits: list[int],
        tip_read_at_ms: int | None,
        shard_end: bool,
        fence: LeaseFence | None,
        skipped_history: bool,
    ) -> BatchResult:
        """Metrics and the checkpoint of a batch whose every write was acknowledged."""
        m = self.metrics
        now = self.clock_ms()
        m.add("actions_applied", len(records))
        lag = m.histogram(APPLY_LAG)
        for at in commits:
            lag.add(now - at)
        shard_lag = m.lag(shard_id)
        shard_lag.last_sequence_number = records[-1].sequence_number
        shard_lag.updated_ms = now
        if commits:
            shard_lag.commit_lag_ms = now - max(commits)
        checkpoint = ShardCheckpoint(
            shard_id, records[-1].sequence_number, commit_ms=max(commits) if commits else None,
            closed=shard_end, skipped_history=skipped_history,
        )  # fmt: skip
        written = write_checkpoint(self.checkpoints, checkpoint, fence, m, self.log)
        arrival = records[-1].arrival_ms
        if written and arrival is not None:
            self.applied_arrival_ms[shard_id] = arrival
        return BatchResult(BatchStatus.REPLICATED, len(records), None, checkpoint, written)


def _locked(check: Callable[[], object]) -> Callable[[], object]:
    """A fence check that several writer threads may call: one renewal at a time."""
    lock = threading.Lock()

    def guard() -> object:
        with lock:
            return check()

    return guard
