"""Small in-memory inputs for the action-log verify tests: stream records of actions, a
store folded from them, and a region's table as comparison rows."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from verify.actions.compare import EXPECTED, FOUND, open_stores
from verify.actions.fold import add_record, fold
from verify.actions.items import table_row
from verify.actions.store import ActionStore
from verify.model import StreamRecord
from xrh.config import Side


class Log:
    """Actions appended to one shard, numbered 1, 2, ... as moto does (compared as integers)."""

    def __init__(self) -> None:
        self.records: list[StreamRecord] = []
        self.seq = 0
        self.n = 0

    def add(self, action: str, data: Any, *, shard: str = "shardId-000000000000",
            generation: int = 0, trace: str | None = None) -> str:  # fmt: skip
        self.n += 1
        trace = trace or f"run/w0u1-{self.n:09d}"
        doc = {"Action": action, "Data": data, "trace": trace,
               "commitTimestamp": "2021-11-10T00:48:30.123Z"}  # fmt: skip
        self.raw(json.dumps(doc).encode(), shard=shard, generation=generation)
        return trace

    def raw(self, data: bytes, *, shard: str = "shardId-000000000000", generation: int = 0) -> None:
        self.seq += 1
        self.records.append(StreamRecord(shard, generation, str(self.seq), "g0", data, 1000))

    def put(self, pk: str, **attrs: Any) -> str:
        return self.add("PutItem", {"pk": pk, **attrs})

    def update(self, pk: str, set: dict | None = None, add: dict | None = None) -> str:  # noqa: A002
        data: dict[str, Any] = {"pk": pk}
        if set:
            data["Set"] = set
        if add:
            data["Add"] = add
        return self.add("UpdateItem", data)

    def delete(self, pk: str) -> str:
        return self.add("DeleteItem", {"pk": pk})

    def store(self) -> ActionStore:
        store = ActionStore(":memory:")
        for record in self.records:
            add_record(store, record)
        store.flush()
        fold(store)
        return store


def folded(store: ActionStore) -> dict[str, dict[str, Any]]:
    """The fold as {pk: plain item}."""
    from verify.actions.items import pk_of, plain_item

    return {pk_of(k): plain_item(b) for k, _, b, _ in store.db.execute(
        "SELECT key, hash, body, trace FROM fold")}  # fmt: skip


def wire(value: Any) -> dict[str, Any]:
    """A plain value as a table answers it (numbers as text)."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float | Decimal):
        return {"N": str(value)}
    if isinstance(value, dict):
        return {"M": {k: wire(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"L": [wire(v) for v in value]}
    if value is None:
        return {"NULL": True}
    return {"S": str(value)}


def compared(store: ActionStore, tables: dict[Side, list[dict[str, Any]]]) -> dict:
    """Comparison stores for the given regions' tables (plain items), compared with the fold:
    what :func:`verify.actions.checks.judge` takes."""
    stores = open_stores(None, store)
    out = {}
    for side, items in tables.items():
        rows = [table_row({k: wire(v) for k, v in item.items()}) for item in items]
        if rows:
            stores[side].add_items(FOUND, rows)
        stores[side].compare()
        out[side.name] = ("xrh-items", stores[side].db)
    assert EXPECTED == "a"
    return out
