"""An in-memory items table with a stream, for the active-active replicator's tests (no boto3).

:class:`FakeItemsTable` behaves as one region's ``{prefix}-items`` with a NEW_AND_OLD_IMAGES
stream: plain writes as applications make them (:meth:`put`, :meth:`delete`: unconditional),
the conditional writes of the reference (:meth:`put_if_newer`, the contract's (timestamp,
region) order) and of the sample (:meth:`put_if_ts_newer`, bare timestamp; :meth:`delete` for
real), each appending the :class:`~replicator.core.changes.ChangeRecord` the service would (no
record for a delete of a missing key). So a test can run forwarders and appliers of two regions
against each other and watch the tables converge, or not. ``fail`` scripts errors by call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from replicator.core.changes import ChangeEvent, ChangeRecord
from replicator.core.fakes import ScriptedSink
from replicator.core.lww_records import pk_of
from replicator.core.records import SourceRecord
from replicator.errors import SinkError
from xrh.active_active import STAMP_REGION, STAMP_TS, Stamp, source_seq_of, stamp_of


def item(pk: str, ts: int, region: str, **values: str) -> dict[str, Any]:
    """A stamped item in wire form (string values)."""
    out = {"pk": {"S": pk}, STAMP_TS: {"N": str(ts)}, STAMP_REGION: {"S": region}}
    out.update({k: {"S": v} for k, v in values.items()})
    return out


@dataclass
class FakeItemsTable:
    shard_id: str = "shardId-00000001"
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    stream: list[ChangeRecord] = field(default_factory=list)
    #: call number (1-based, over the conditional writes) -> error raised instead of writing
    fail: dict[int, SinkError] = field(default_factory=dict)
    calls: int = 0
    clock_ms: Callable[[], int] = lambda: 1_000

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ applications' writes

    def put(self, image: dict[str, Any]) -> None:
        with self._lock:
            self._write(pk_of(image), dict(image))

    def delete(self, table: str | None, key: dict[str, Any]) -> None:
        """A plain DeleteItem (also the sample's real delete)."""
        with self._lock:
            self._write(pk_of(key), None)

    # ------------------------------------------------------------------ the sinks' writes

    def put_if_newer(
        self, table: str, image: dict[str, Any], stamp: Stamp, guard=None, strict: bool = False,
        order: int | None = None,
    ) -> bool:
        with self._lock:
            self._call()
            if guard is not None:
                guard()
            current = self.items.get(pk_of(image))
            held = stamp_of(current)
            held_seq = source_seq_of(current)
            earlier = order is not None and held_seq is not None and held_seq < order
            if held is not None and (held > stamp or (strict and held == stamp and not earlier)):
                return False
            self._write(pk_of(image), dict(image))
            return True

    def put_if_ts_newer(self, table: str, image: dict[str, Any], ts: int) -> bool:
        with self._lock:
            self._call()
            held = stamp_of(self.items.get(pk_of(image)))
            if held is not None and not held.ts < ts:
                return False
            self._write(pk_of(image), dict(image))
            return True

    # ------------------------------------------------------------------ helpers

    def _call(self) -> None:
        self.calls += 1
        error = self.fail.pop(self.calls, None)
        if error is not None:
            raise error

    def _write(self, pk: str, new: dict[str, Any] | None) -> None:
        old = self.items.get(pk)
        if new is None and old is None:
            return
        if new is None:
            del self.items[pk]
            event = ChangeEvent.REMOVE
        else:
            self.items[pk] = new
            event = ChangeEvent.INSERT if old is None else ChangeEvent.MODIFY
        self.stream.append(
            ChangeRecord(
                self.shard_id,
                str(len(self.stream) + 1),
                event,
                {"pk": {"S": pk}},
                new,
                old,
                approximate_ms=self.clock_ms(),
            )  # fmt: skip
        )

    def changes_since(self, position: int) -> list[ChangeRecord]:
        return self.stream[position:]


def staging_records(sink: ScriptedSink, since: int = 0) -> list[SourceRecord]:
    """What a ScriptedSink's stream holds from ``since``, as a reader would give it (one list,
    in write order: per key, the stream's order)."""
    return [
        SourceRecord(r.shard_id, r.sequence_number, r.entry.partition_key, r.entry.data)
        for r in sink.records[since:]
    ]
