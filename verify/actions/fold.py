"""Read region A's actions stream and fold it, per key in log order, into the expected table.

This is verify's own model of what an action does to a DynamoDB item; it shares nothing with
the consumers (DESIGN.md, "Rules": verify imports nothing from ``replicator``), so a mistake in
one cannot hide the same mistake in the other. Only the wire format is shared
(:func:`xrh.action_log.parse_action`).

- PutItem replaces the item (stamped with the action's ``trace`` and ``commitTimestamp``, as
  every item a put or update leaves carries them);
- UpdateItem creates ``{pk}`` if absent, then ``SET a = v`` and ``ADD a n`` (an absent attribute
  starts at 0); an ADD to an attribute holding something other than a number is refused by
  DynamoDB as a whole, so the fold leaves the item as it was and counts it;
- DeleteItem removes the item; BatchWrite is its puts and deletes, in the order listed.

A record that is not an action (:class:`~xrh.action_log.ActionFormatError`) is kept with the
error in ``malformed`` and counted; it never stops verify.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from verify.actions.items import expected_row, key_of, to_decimal
from verify.actions.store import ActionStore, order_of
from verify.kinesis_reader import ReadStats, read_stream
from verify.model import StreamRecord
from xrh.action_log import Action, ActionFormatError, parse_action
from xrh.contracts import ITEM_COMMIT_TS, ITEM_KEY, ITEM_TRACE

MALFORMED_DATA_CHARS = 500


def _trace_of(data: bytes) -> str | None:
    """The ``trace`` of a record that is not a valid action, when it still has one."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    trace = doc.get("trace") if isinstance(doc, dict) else None
    return trace if isinstance(trace, str) else None


def record_rows(record: StreamRecord) -> tuple[tuple, list[tuple]] | tuple[None, tuple]:
    """One stream record as store rows: (action row, op rows), or (None, malformed row)."""
    ord_text = order_of(record.generation, record.shard_id, record.sequence_number)
    try:
        action: Action = parse_action(record.data)
    except ActionFormatError as exc:
        text = record.data[:MALFORMED_DATA_CHARS].decode(errors="replace")
        return None, (ord_text, record.shard_id, record.sequence_number, record.partition_key,
                      _trace_of(record.data), str(exc), text)  # fmt: skip
    ops = []
    for idx, op in enumerate(action.ops):
        payload = {"item": op.item, "set": op.set, "add": op.add, "trace": action.trace,
                   "commit": action.commit_ts}  # fmt: skip
        ops.append((key_of(op.pk), ord_text, idx, op.kind, json.dumps(payload)))
    row = (ord_text, record.shard_id, record.sequence_number, record.partition_key, action.trace,
           action.action, len(ops), action.commit_ts, record.arrival_ms)  # fmt: skip
    return row, ops


def add_record(store: ActionStore, record: StreamRecord) -> None:
    """The ``on_record`` of the stream read: parse and append (malformed ones kept apart)."""
    row, rest = record_rows(record)
    if row is None:
        store.add_malformed(rest)  # type: ignore[arg-type]
    else:
        store.add_action(row, rest)  # type: ignore[arg-type]


def read_actions(
    api: Any, stream: str, store: ActionStore, *, deadline: float,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> ReadStats:  # fmt: skip
    """Every record of ``stream`` (all shards, parents first, each in sequence order) into
    ``store``; raises :class:`~verify.errors.EndpointUnreachable` if the endpoint is gone."""
    stats = read_stream(api, stream, lambda r: add_record(store, r), deadline=deadline,
                        clock=clock, sleep=sleep)  # fmt: skip
    store.flush()
    return stats


@dataclass(slots=True)
class FoldStats:
    keys: int = 0
    ops: int = 0
    items: int = 0  # keys the fold ends holding
    refused_updates: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"keys": self.keys, "ops": self.ops, "items": self.items,
                "refused_updates": self.refused, "refused_examples": self.refused_updates}  # fmt: skip


def _stamp(item: dict[str, Any], payload: dict[str, Any]) -> None:
    if payload.get("trace") is not None:
        item[ITEM_TRACE] = payload["trace"]
    if payload.get("commit") is not None:
        item[ITEM_COMMIT_TS] = payload["commit"]


class _KeyFold:
    """One key's fold: the current item and its attributes' ADD epochs."""

    def __init__(self, key: str, pk: str) -> None:
        self.key, self.pk = key, pk
        self.item: dict[str, Any] | None = None
        self.epochs: dict[str, int] = {}
        self.adds: list[tuple] = []

    def _reset(self, names: Any = None) -> None:
        for name in list(self.epochs) if names is None else names:
            if name in self.epochs:
                self.epochs[name] += 1

    def apply(self, ord_text: str, kind: str, payload: dict[str, Any]) -> bool:
        """Apply one op; False when DynamoDB would refuse it (the item is left as it was)."""
        if kind == "put":
            item = dict(payload["item"])
            _stamp(item, payload)
            self._reset()
            self.item = item
        elif kind == "delete":
            self._reset()
            self.item = None
        else:
            sets, adds = payload.get("set") or {}, payload.get("add") or {}
            item = dict(self.item) if self.item is not None else {ITEM_KEY: self.pk}
            sums: dict[str, Decimal] = {}
            for name, delta in adds.items():
                current = to_decimal(item.get(name, 0))
                if current is None:
                    return False
                sums[name] = current + Decimal(delta)
            item.update(sets)
            self._reset(sets)
            for name, total in sums.items():
                item[name] = total
                epoch = self.epochs.setdefault(name, 0)
                self.adds.append((self.key, name, epoch, ord_text, str(adds[name])))
            _stamp(item, payload)
            self.item = item
        return True


def _ops_by_key(store: ActionStore) -> Iterator[tuple[str, list[tuple]]]:
    """(key, its ops in log order), key after key, paging through ``ops``."""
    last_key, last_ord, last_idx = "", "", -1
    current: str | None = None
    pending: list[tuple] = []
    while True:
        rows = store.db.execute(
            "SELECT key, ord, idx, kind, payload FROM ops WHERE (key, ord, idx) > (?, ?, ?) "
            "ORDER BY key, ord, idx LIMIT 5000",
            (last_key, last_ord, last_idx),
        ).fetchall()
        if not rows:
            break
        for row in rows:
            if row[0] != current:
                if current is not None:
                    yield current, pending
                current, pending = row[0], []
            pending.append(row)
        last_key, last_ord, last_idx = rows[-1][:3]
    if current is not None:
        yield current, pending


def fold(store: ActionStore, *, examples: int = 10) -> FoldStats:
    """Fold ``ops`` into ``fold``, ``states``, ``adds`` and ``add_epochs`` (emptied first, so
    a fold can be run again). Memory: one key's ops and item at a time, and a batch of rows."""
    stats = FoldStats()
    for table in ("fold", "states", "adds", "add_epochs"):
        store.db.execute(f"DELETE FROM {table}")
    folded: list[tuple] = []
    states: list[tuple] = []
    adds: list[tuple] = []
    epochs: list[tuple] = []

    def flush() -> None:
        store.write("INSERT INTO fold VALUES (?,?,?,?,?)", folded)
        store.write("INSERT INTO states VALUES (?,?,?,?,?)", states)
        store.write("INSERT INTO adds VALUES (?,?,?,?,?)", adds)
        store.write("INSERT INTO add_epochs VALUES (?,?,?)", epochs)

    for key, ops in _ops_by_key(store):
        pk = json.loads(key)[ITEM_KEY]["S"]
        state = _KeyFold(key, pk)
        stats.keys += 1
        last_ord = ""
        for n, (_, ord_text, idx, kind, payload) in enumerate(ops):
            stats.ops += 1
            if not state.apply(ord_text, kind, json.loads(payload)):
                stats.refused += 1
                if len(stats.refused_updates) < examples:
                    stats.refused_updates.append({"key": {ITEM_KEY: pk}, "ord": ord_text})
            digest = expected_row(state.item)[1] if state.item is not None else None
            states.append((key, ord_text, idx, digest, int(n == len(ops) - 1)))
            last_ord = ord_text
        adds.extend(state.adds)
        epochs.extend((key, name, epoch) for name, epoch in state.epochs.items())
        if state.item is not None:
            row_key, digest, body, trace = expected_row(state.item)
            folded.append((row_key, digest, body, trace, last_ord))
            stats.items += 1
        if len(states) >= 5000 or len(adds) >= 5000:
            flush()
    flush()
    return stats
