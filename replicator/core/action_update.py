"""One key's chain of updates applied exactly once: the conditional UpdateItem of the
``action-log`` consumer and what it does when the condition fails (pure).

:class:`ChainUpdater` sends the chain as one UpdateItem (:func:`~replicator.core.action_plan.
fold_updates`) that applies only if the item's ``xrh_seq`` is absent or before the chain's first
action. When the condition fails, an earlier attempt (a batch replayed after a crash before its
checkpoint, or a lost answer) applied part of the chain: the item's position is read (from the
ALL_OLD item the service returned with the failure, else with a consistent GetItem) and only
the ops after it are sent, at most :data:`MAX_CONDITION_RETRIES` times. So an ADD is never
applied twice, whatever was applied before and however the answer was lost.

Other answers: throttling, 5xx and unknown outcomes (a timeout, a dropped connection) are sent
again after exponential backoff with jitter, up to ``backoff.max_attempts`` failed calls; safe,
since the condition turns a second apply into a failed condition. An UpdateItem refused as
invalid (a ValidationException: an ADD to an attribute the item holds as a string, an item grown
past 400 KB) is sent again one op at a time, so that only the op at fault is dead-lettered and
the others still apply. A terminal error, or the lease fence refusing, leaves the chain
unwritten: the batch fails and is read again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from replicator.core.action_plan import ChainOp, UpdateRequest, fold_updates, seq_of
from replicator.core.putrecords import Backoff
from replicator.core.table_writes import TableWriteSink
from replicator.errors import (
    InvalidRequestError,
    ReplicatorError,
    SinkError,
    TerminalRequestError,
)

MAX_CONDITION_RETRIES = 3


class ConditionFailed(ReplicatorError):
    """An UpdateItem's condition on the item's position failed; ``item`` is the item as it
    stood (ALL_OLD) when the service returned it, else None (read it)."""

    def __init__(self, item: dict[str, Any] | None = None) -> None:
        super().__init__("the item's position is at or past the update's first action")
        self.item = item


class UnwrittenError(SinkError):
    """Writes were left unwritten (an attempt bound ran out, or nothing else said why)."""


class ActionTableSink(TableWriteSink, Protocol):
    """The target table: BatchWriteItem (:class:`TableWriteSink`) and the conditional update.

    ``update`` raises ConditionFailed, or the sink errors of a BatchWriteItem call (and runs
    ``guard`` at the last moment before sending, as ``batch_write`` does); ``read_seq`` is a
    consistent read of the item's position (None: no item, or no position). Both must be safe
    to call from several threads at once."""

    def update(
        self, table: str, request: UpdateRequest, guard: Callable[[], object] | None = None
    ) -> None: ...

    def read_seq(self, table: str, key: dict[str, Any]) -> str | None: ...


@dataclass(slots=True)
class ChainOutcome:
    """What became of one key's chain of updates."""

    done: bool = True  # applied (or nothing left to apply); False: unwritten, fail the batch
    calls: int = 0  # UpdateItem and GetItem calls
    retries: int = 0  # failed conditions
    skipped: int = 0  # ops found already applied
    throttles: int = 0  # calls refused or unanswered, sent again
    dead: list[tuple[ChainOp, str]] = field(default_factory=list)
    error: ReplicatorError | None = None

    def unwritten(self, error: ReplicatorError | None) -> ChainOutcome:
        self.done, self.error = False, error or UnwrittenError("update left unwritten")
        return self

    def merge(self, other: ChainOutcome) -> None:
        self.calls += other.calls
        self.retries += other.retries
        self.skipped += other.skipped
        self.throttles += other.throttles
        self.dead.extend(other.dead)


class ChainUpdater:
    """Applies chains of updates to ``table`` through ``sink`` (module doc)."""

    def __init__(
        self,
        sink: ActionTableSink,
        table: str,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = lambda: 1.0,
    ) -> None:
        self.sink = sink
        self.table = table
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.random = random

    def apply(
        self, pk: str, chain: list[ChainOp], guard: Callable[[], object] | None = None
    ) -> ChainOutcome:
        """Apply ``chain`` (one key's updates, log order) exactly once in effect."""
        out = ChainOutcome()
        # Ops refused client-side over the whole chain (also those an earlier attempt applied
        # past: its dead letters may never have been stored) and over each suffix sent.
        refused = {c.seq: (c, reason) for c, reason in fold_updates(pk, chain).invalid}
        pending, failures = chain, 0
        while pending:
            folded = fold_updates(pk, pending)
            refused.update({c.seq: (c, reason) for c, reason in folded.invalid})
            out.dead = list(refused.values())
            if folded.request is None:
                return out
            if failures:
                self.sleep(self.backoff.delay(failures, self.random()))
            try:
                if guard is not None:
                    guard()
                out.calls += 1
                self.sink.update(self.table, folded.request, guard)
                return out
            except ConditionFailed as exc:
                out.retries += 1
                if out.retries > MAX_CONDITION_RETRIES:
                    return out.unwritten(UnwrittenError(
                        f"key {pk!r}: the condition failed {out.retries} times"))  # fmt: skip
                try:
                    position = seq_of(exc.item)
                    if position is None:
                        out.calls += 1
                        position = self.sink.read_seq(self.table, folded.request.key)
                except SinkError as read_exc:
                    failures += 1
                    out.throttles += 1
                    if failures >= self.backoff.max_attempts:
                        return out.unwritten(read_exc)
                    continue
                after = [c for c in pending if position is None or c.seq > position]
                out.skipped += len(pending) - len(after)
                pending = after
            except InvalidRequestError as exc:
                if len(pending) == 1:
                    reason = f"invalid: {exc.code + ': ' if exc.code else ''}{exc.message}"
                    out.dead.append((pending[0], reason))
                    return out
                for c in pending:  # one op at a time: only the op at fault is dead
                    if c.seq in refused:
                        continue
                    one = self.apply(pk, [c], guard)
                    out.merge(one)
                    if not one.done:
                        return out.unwritten(one.error)
                return out
            except TerminalRequestError as exc:
                return out.unwritten(exc)
            except SinkError as exc:  # throttled, 5xx, unknown outcome: the condition guards
                failures += 1
                out.throttles += 1
                if failures >= self.backoff.max_attempts:
                    return out.unwritten(exc)
            except ReplicatorError as exc:  # the fence refused: nothing was sent
                return out.unwritten(exc)
        return out
