"""An in-memory, scriptable target table for the ``action-log`` consumers' tests (no boto3).

:class:`FakeActionTable` is :class:`~replicator.core.table_fakes.FakeTableSink` (BatchWriteItem:
unprocessed items, failed calls, invalid items) plus the single-item calls: the conditional
UpdateItem with DynamoDB's semantics (the condition on ``xrh_seq``, SET, ADD from 0 on an absent
attribute, a ValidationException for an ADD to a non-number), GetItem, PutItem, DeleteItem.
moto never loses an answer nor throttles, so the faults that matter to exactly-once are
scripted here: ``lost_updates`` applies an update and then raises as a dropped connection would;
``fail_updates`` refuses an update before applying it; ``all_old`` False makes a failed
condition come back without the item, as a service without ReturnValuesOnConditionCheckFailure
would (the consumer then reads it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from replicator.core.action_plan import SEQ_ATTR, UpdateRequest, number_text
from replicator.core.action_update import ConditionFailed
from replicator.core.table_fakes import FakeTableSink
from replicator.core.table_writes import key_id
from replicator.errors import InvalidRequestError, SinkError, UnknownOutcomeError


@dataclass
class FakeActionTable(FakeTableSink):
    """Tables as dicts of ``key_id -> item`` (wire form), shared by every call.

    - ``fail_updates``: 1-based update call number -> the SinkError it raises (not applied);
    - ``lost_updates``: update call numbers applied, then answered UnknownOutcomeError;
    - ``crash_on_write``: a BaseException raised by the next single-item write or batch write
      (a process killed mid-batch: nothing of that call applied);
    - ``all_old``: a failed condition carries the item (ReturnValuesOnConditionCheckFailure).
    """

    fail_updates: dict[int, SinkError] = field(default_factory=dict)
    lost_updates: set[int] = field(default_factory=set)
    crash_on_write: BaseException | None = None
    all_old: bool = True
    update_calls: int = 0
    read_calls: int = 0
    single_writes: int = 0

    def _crash(self) -> None:
        if self.crash_on_write is not None:
            exc, self.crash_on_write = self.crash_on_write, None
            raise exc

    def batch_write(self, table, requests, guard=None):  # type: ignore[override]
        self._crash()
        return super().batch_write(table, requests, guard)

    def update(
        self, table: str, request: UpdateRequest, guard: Callable[[], object] | None = None
    ) -> None:
        self._crash()
        if guard is not None:
            guard()
        with self._lock:
            self.update_calls += 1
            call = self.update_calls
            if call in self.fail_updates:
                raise self.fail_updates[call]
            rows = self.items(table)
            kid = key_id(request.key)
            old = rows.get(kid)
            position = None if old is None else old.get(SEQ_ATTR, {}).get("S")
            if request.below is not None and position is not None and position >= request.below:
                raise ConditionFailed(dict(old) if self.all_old else None)
            item = dict(old) if old is not None else dict(request.key)
            item.update(request.set)
            for name, n in request.add.items():
                current = item.get(name)
                if current is not None and "N" not in current:
                    raise InvalidRequestError(
                        "An operand in the update expression has an incorrect data type",
                        "ValidationException",
                    )
                base = Decimal(current["N"]) if current is not None else Decimal(0)
                item[name] = {"N": number_text(base + Decimal(n))}
            if request.new_seq is not None:
                item[SEQ_ATTR] = {"S": request.new_seq}
            rows[kid] = item
        if call in self.lost_updates:
            raise UnknownOutcomeError("connection dropped after the update", "ReadTimeoutError")

    def read_seq(self, table: str, key: dict[str, Any]) -> str | None:
        with self._lock:
            self.read_calls += 1
            item = self.items(table).get(key_id(key))
        return None if item is None else item.get(SEQ_ATTR, {}).get("S")

    def put(self, table: str, key: dict[str, Any], item: dict[str, Any]) -> None:
        self._crash()
        with self._lock:
            self.single_writes += 1
            self.items(table)[key_id(key)] = dict(item)

    def delete(self, table: str, key: dict[str, Any]) -> None:
        self._crash()
        with self._lock:
            self.single_writes += 1
            self.items(table).pop(key_id(key), None)
