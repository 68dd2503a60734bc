"""``--capture notify``: the seed's trigger + LISTEN/NOTIFY design, reproduced for comparison
(pure: the listener, sender, dead-letter sink, clock and sleep are passed in).

The seed's trigger (:func:`xrh.postgres_setup.notify_function_sql`) sends, for every row change,
``pg_notify`` with ``row_to_json`` of the row, the operation and ``txid_current()``. A trigger
cannot know its transaction's commit time, so the record's ``metadata.timestamp`` is the
trigger's ``clock_timestamp()`` (when the statement ran, not when it committed). The listener
turns each notification into a record of the contract's shape and puts it to Kinesis.

It is lossy by design, and that is the point of reproducing it: notifications sent while no
listener is connected are gone (NOTIFY does not queue for absent listeners), nothing is
re-read, and nothing is checkpointed. Every log line carries :data:`NOTIFY_LABEL`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from replicator.core.batch_result import DeadLetterRecord, DeadLetterSink
from replicator.core.capture import Requests, SourceUnavailable
from replicator.core.putrecords import EntryStatus, PutEntry, PutRecordsSender
from replicator.core.records import SourceRecord
from replicator.core.table_mappings import TableMappings
from replicator.errors import DeadLetterError
from xrh.postgres_cdc import change_record, encode, partition_key

NOTIFY_LABEL = "seed behaviour: trigger + LISTEN/NOTIFY (lossy while no listener is connected)"
INT_TYPES = frozenset({"bigint", "integer", "smallint"})


class Listener(Protocol):
    def receive(self, timeout_s: float, limit: int = 1000) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    name: str
    type_name: str
    key: bool


def _text_form(type_name: str, value: Any) -> Any:
    """``row_to_json``'s value as the contract's: numbers and booleans kept, everything else as
    PostgreSQL's text form (a timestamptz's ISO ``T`` and ``+00:00`` back to ``' '`` and ``+00``,
    a jsonb as its text)."""
    if value is None or type_name in INT_TYPES or type_name == "boolean":
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    if type_name.startswith("timestamp") and isinstance(value, str):
        text = value.replace("T", " ", 1)
        return text[:-3] if text.endswith(":00") and text[-6] in "+-" else text
    return value if isinstance(value, str) else json.dumps(value)


def notify_entry(payload: str, columns: Sequence[ColumnInfo], mappings: TableMappings) -> PutEntry | None:
    """One notification as a record entry; None when the table is not selected; ValueError when
    the payload is not the trigger's."""
    note = json.loads(payload)
    schema, table, row = note["schema"], note["table"], note["row"]
    table_map = mappings.table(schema, table, [c.name for c in columns])
    if table_map is None:
        return None
    operation = note["operation"]
    data: dict[str, Any] = {}
    keys = []
    for column in columns:
        value = _text_form(column.type_name, row.get(column.name))
        if column.key:
            keys.append(value)
        elif operation == "delete":
            continue
        target = table_map.column(column.name)
        if target is not None:
            data[target] = value
    record = change_record(data=data, operation=operation, commit_time=note["timestamp"],
                           schema=table_map.schema, table=table_map.table,
                           transaction_id=int(note["xid"]) & 0xFFFFFFFF)  # fmt: skip
    return PutEntry(partition_key(keys), encode(record))


class NotifyCapture(Requests):
    def __init__(self, listener: Listener, sender: PutRecordsSender, dead_letters: DeadLetterSink,
                 *, columns: Sequence[ColumnInfo], mappings: TableMappings, region: str,
                 drain_timeout_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[..., None] | None = None,
                 progress: Callable[[Mapping[str, Any]], None] | None = None) -> None:  # fmt: skip
        self.listener, self.sender, self.dead_letters = listener, sender, dead_letters
        self.columns, self.mappings, self.region = columns, mappings, region
        self.drain_timeout_s, self.clock, self.sleep = drain_timeout_s, clock, sleep
        self.log = log or (lambda event, **fields: None)
        self.progress = progress
        self.records_put = self.dead_lettered = self.lost = self.requests = 0
        self._connections = 0
        self.last_commit_ms: int | None = None

    def step(self, timeout_s: float = 0.2) -> int:
        """Receive what was notified and put it; the number of notifications received."""
        payloads = self.listener.receive(timeout_s)
        connections = getattr(self.listener, "connections", 0)
        if connections > max(1, self._connections):
            self.log("listener_reconnected", connections=connections, behaviour=NOTIFY_LABEL,
                     note="changes notified while the listener was not connected are lost")  # fmt: skip
        self._connections = max(self._connections, connections)
        entries, letters = [], []
        for payload in payloads:
            try:
                entry = notify_entry(payload, self.columns, self.mappings)
            except (ValueError, KeyError, TypeError) as exc:
                letters.append(self._letter(PutEntry("", payload.encode()), "unbuildable", str(exc)))
                continue
            if entry is not None:
                entries.append(entry)
        if entries:
            report = self.sender.send(entries)
            self.requests += report.requests
            self.records_put += sum(1 for o in report.outcomes if o.status is EntryStatus.WRITTEN)
            letters += [self._letter(d.entry, d.reason.value, d.detail) for d in report.dead_letters]
            failed = [o for o in report.outcomes if o.status in (EntryStatus.UNRESOLVED, EntryStatus.UNSENT)]
            if failed:  # the seed has no checkpoint to retry from: these are gone
                self.lost += len(failed)
                self.log("records_lost", count=len(failed), error=str(failed[0].reason),
                         behaviour=NOTIFY_LABEL)  # fmt: skip
        if letters:
            try:
                self.dead_letters.put(letters)
                self.dead_lettered += len(letters)
            except DeadLetterError as exc:
                self.lost += len(letters)
                self.log("dead_letter_failed", error=str(exc), behaviour=NOTIFY_LABEL)
        return len(payloads)

    def _letter(self, entry: PutEntry, reason: str, detail: str) -> DeadLetterRecord:
        record = SourceRecord("notify", str(self.records_put + self.dead_lettered),
                              entry.partition_key, entry.data)  # fmt: skip
        return DeadLetterRecord(record, "notify", self.region, self.region, reason, detail)

    def run(self) -> int:
        failures = 0
        while True:
            if self._stop:
                self.exit_reason = "stopped"
                return 0
            began = self.clock()
            if self._drain_at is not None and began - self._drain_at > self.drain_timeout_s:
                self.exit_reason = f"could not drain within {self.drain_timeout_s:g} s"
                return 2
            try:
                received = self.step()
                failures = 0
            except SourceUnavailable as exc:
                failures += 1
                self.log("listener_unavailable", error=str(exc), attempt=failures,
                         behaviour=NOTIFY_LABEL, note="changes notified meanwhile are lost")  # fmt: skip
                self.sleep(min(5.0, 0.2 * 2 ** min(failures - 1, 10)))
                continue
            self._report()
            if self._drain_at is not None and began >= self._drain_at and received == 0:
                self.exit_reason = "drained"
                self._report(force=True)
                return 0

    def _report(self, force: bool = False) -> None:
        if self.progress is None or not self._progress_due(force):
            return
        self.progress({"records_put": self.records_put, "dead_lettered": self.dead_lettered,
                       "lost": self.lost})  # fmt: skip
