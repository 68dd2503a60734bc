"""The action-log proof of concept's consumer, reproduced faithfully: ``--behaviour sample``.

**This is not the reference consumer** (:mod:`replicator.core.action_apply`). It is the
behaviour of the proof of concept that pipeline replaces (seed ``002_1aab54fff089c574``,
"DynamoDB lazy replication": a Lambda function and a lazy KCL application, each reading
``{Action, Data}`` commands from a Kinesis stream and writing them to a DynamoDB table), kept so
that users can run it under the harness and see what verify catches. Every log line and the
metrics file of a run with this behaviour say "sample behaviour".

Per batch (one shard's records in order), as the proof of concept's record processor:

1. the batch's LAST sequence number is checkpointed FIRST (the KCL application called
   ``checkpointer.checkpoint`` while its writes were still in flight: Node callbacks). A
   process that dies after this and before its writes finish has acknowledged actions that
   were never applied: they are lost, and no replay brings them back;
2. each action is then applied with its own unconditional call: PutItem, UpdateItem (SET and
   ADD as they are: an ADD replayed counts twice), DeleteItem, BatchWriteItem (its
   ``UnprocessedItems`` are not sent again);
3. a record that does not parse, or a call that fails, is logged and skipped: lost. Nothing is
   dead-lettered and the batch is always reported done.

Not reproduced: the Node callbacks could also complete out of order (two actions of one key
racing); here the calls are made one after the other, so that only the two defects above show.
The poller's lease fence (the KCL's lease) is checked before the checkpoint and each write, as
the KCL would refuse a checkpoint of a lost lease; that is the harness's, not the sample's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from replicator.core.action_plan import (
    ActionValueError,
    UpdateRequest,
    WireOp,
    key_of,
    wire_ops,
)
from replicator.core.batch import BatchResult, BatchStatus, Log, write_checkpoint
from replicator.core.checkpoint import CheckpointStore, ShardCheckpoint
from replicator.core.fence import LeaseFence
from replicator.core.metrics import Metrics
from replicator.core.records import SourceRecord
from replicator.core.table_writes import WriteRequest
from xrh.action_log import ActionFormatError, parse_action

SAMPLE_LABEL = "sample behaviour"
SAMPLE_NOTE = (
    "sample behaviour: the action-log proof of concept's consumer (checkpoint before the "
    "writes, unconditional writes, failures only logged), reproduced to show what the harness "
    "catches; not the reference consumer"
)
COUNTERS = (
    "batches", "actions_in", "actions_applied", "actions_lost", "malformed_lost",
    "unprocessed_lost", "write_calls", "checkpoint_writes", "checkpoint_conflicts",
    "checkpoint_errors", "get_records_calls", "rate_waited_ms",
)  # fmt: skip


class SampleTableSink(Protocol):
    """The single-item and batch calls the proof of concept made (each raises on failure)."""

    def put(self, table: str, key: dict[str, Any], item: dict[str, Any]) -> None: ...

    def delete(self, table: str, key: dict[str, Any]) -> None: ...

    def update(
        self, table: str, request: UpdateRequest, guard: Callable[[], object] | None = None
    ) -> None: ...

    def batch_write(
        self,
        table: str,
        requests: Sequence[WriteRequest],
        guard: Callable[[], object] | None = None,
    ) -> list[WriteRequest]: ...


def _no_log(event: str, **fields: object) -> None:
    return None


def _unlimited(n: int) -> float:
    return 0.0


class SampleActionConsumer:
    """The proof of concept's per-batch logic (same ``process``/``idle`` shape as
    :class:`~replicator.core.action_apply.ActionApplier`, so the same poller drives it)."""

    label = SAMPLE_LABEL

    def __init__(
        self,
        *,
        stream: str,
        table: str,
        sink: SampleTableSink,
        checkpoints: CheckpointStore,
        pace: Callable[[int], float] = _unlimited,
        metrics: Metrics | None = None,
        log: Log = _no_log,
    ) -> None:
        self.stream = stream
        self.table = table
        self.sink = sink
        self.checkpoints = checkpoints
        self.pace = pace
        self.metrics = metrics or Metrics(counters=dict.fromkeys(COUNTERS, 0))
        self.log = log
        self.applied_arrival_ms: dict[str, int] = {}

    def close(self) -> None:
        return None

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
        """Checkpoint the batch, then apply it (module doc)."""
        m = self.metrics
        m.add("batches")
        m.add("actions_in", len(records))
        if not records:
            return BatchResult(BatchStatus.REPLICATED, 0, None)
        checkpoint = ShardCheckpoint(shard_id, records[-1].sequence_number, closed=shard_end)
        written = write_checkpoint(self.checkpoints, checkpoint, fence, m, self.log)
        if fence is not None and fence.lost:
            return BatchResult(BatchStatus.LEASE_LOST, 0, records[0].sequence_number)
        if written and records[-1].arrival_ms is not None:
            self.applied_arrival_ms[shard_id] = records[-1].arrival_ms
        waited = self.pace(len(records))
        if waited:
            m.add("rate_waited_ms", int(waited * 1000))
        for record in records:
            self._apply(shard_id, record, fence)
        return BatchResult(BatchStatus.REPLICATED, len(records), None, checkpoint, written)

    def idle(
        self,
        shard_id: str,
        sequence_number: str | None,
        tip_read_at_ms: int,
        closed: bool = False,
        fence: LeaseFence | None = None,
        skipped_history: bool = False,
    ) -> bool:
        """No record, nothing to do (a closed shard's end is the poller's lease row)."""
        return False

    def _apply(self, shard_id: str, record: SourceRecord, fence: LeaseFence | None) -> None:
        m = self.metrics
        try:
            action = parse_action(record.data)
            ops = wire_ops(action)
        except (ActionFormatError, ActionValueError) as exc:
            m.add("malformed_lost")
            self.log("malformed_action", shard_id=shard_id,
                     sequence_number=record.sequence_number, error=str(exc))  # fmt: skip
            return
        try:
            if fence is not None:
                fence.check()
            m.add("write_calls")
            if action.action == "BatchWrite":
                requests = [_request(op) for op in ops]
                left = self.sink.batch_write(self.table, requests)
                if left:
                    m.add("unprocessed_lost", len(left))
                    self.log("unprocessed_items", shard_id=shard_id, level="ERROR",
                             sequence_number=record.sequence_number,
                             keys=[r.key for r in left])  # fmt: skip
            else:
                self._single(ops[0])
            m.add("actions_applied")
        except Exception as exc:  # noqa: BLE001 - the proof of concept logged every error
            m.add("actions_lost")
            self.log("action_failed", shard_id=shard_id, level="ERROR",
                     sequence_number=record.sequence_number, action=action.action,
                     error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    def _single(self, op: WireOp) -> None:
        if op.kind == "put":
            self.sink.put(self.table, key_of(op.pk), {**(op.item or {}), **key_of(op.pk)})
        elif op.kind == "delete":
            self.sink.delete(self.table, key_of(op.pk))
        else:
            adds = {name: str(n) for name, n in op.add.items()}
            self.sink.update(self.table, UpdateRequest(key_of(op.pk), dict(op.set), adds))


def _request(op: WireOp) -> WriteRequest:
    if op.kind == "delete":
        return WriteRequest(key_of(op.pk), None)
    return WriteRequest(key_of(op.pk), {**(op.item or {}), **key_of(op.pk)})
