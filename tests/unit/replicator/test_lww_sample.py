"""The published sample's behaviour (``--behaviour sample``) over fakes: what verify must catch."""

from __future__ import annotations

import json

from replicator.core.checkpoint import MemoryCheckpointStore
from replicator.core.fakes import ScriptedSink
from replicator.core.lww_fakes import FakeItemsTable, item, staging_records
from replicator.core.lww_sample import SampleApplier, SampleForwarder

A, B = "us-east-1", "us-east-2"


class Side:
    def __init__(self, name: str) -> None:
        self.name = name
        self.table = FakeItemsTable(shard_id=f"shard-{name}")
        self.staging = ScriptedSink(shard_count=1)
        self.applier = SampleApplier(
            stream="p-staging", table="p-items", direction="x", sink=self.table,
            checkpoints=MemoryCheckpointStore(), clock_ms=lambda: 0,
        )  # fmt: skip
        self.read_table = self.read_staging = 0

    def connect(self, other: Side) -> None:
        self.forwarder = SampleForwarder(
            table="p-items", region=self.name, staging_stream="p-staging", sink=other.staging,
            checkpoints=MemoryCheckpointStore(),
        )  # fmt: skip

    def step(self) -> bool:
        moved = False
        changes = self.table.changes_since(self.read_table)
        if changes:
            self.read_table += self.forwarder.process(self.table.shard_id, changes).acked
            moved = True
        records = staging_records(self.staging, self.read_staging)
        if records:
            self.read_staging += self.applier.process("s", records).acked
            moved = True
        return moved


def pair() -> tuple[Side, Side]:
    a, b = Side(A), Side(B)
    a.connect(b)
    b.connect(a)
    return a, b


def settle(a: Side, b: Side) -> None:
    for _ in range(20):
        if not any([a.step(), b.step()]):
            return
    raise AssertionError("did not settle")


def test_equal_timestamp_conflict_diverges() -> None:
    a, b = pair()
    a.table.put(item("k", 100, A, v="a"))
    b.table.put(item("k", 100, B, v="b"))
    settle(a, b)
    assert a.table.items["k"]["v"] == {"S": "a"} and b.table.items["k"]["v"] == {"S": "b"}
    assert a.applier.metrics.counters["superseded"] == 1  # strict < on the bare timestamp


def test_real_delete_then_late_older_write_resurrects() -> None:
    a, b = pair()
    a.table.put(item("k", 100, A, v="x"))
    settle(a, b)
    a.table.delete(None, {"pk": {"S": "k"}})
    settle(a, b)
    assert "k" not in a.table.items and "k" not in b.table.items  # a real delete, no tombstone
    b.table.put(item("k", 90, B, v="late"))  # older than the delete
    settle(a, b)
    assert a.table.items["k"]["v"] == {"S": "late"} == b.table.items["k"]["v"]  # back


def test_a_failed_entry_fails_the_whole_batch_and_deletes_bounce() -> None:
    a, b = pair()
    a.table.put(item("k", 100, A, v="x"))
    a.table.put(item("j", 100, A, v="y"))
    b.staging.fail_entries(1, [1])
    assert a.forwarder.process(a.table.shard_id, a.table.stream).acked == 0
    assert len(b.staging.records) == 1  # entry 0 was written; the whole batch goes again
    settle(a, b)
    assert [json.loads(r.entry.data)["pk"] for r in b.staging.records] == ["k", "k", "j"]
    a.table.delete(None, {"pk": {"S": "k"}})
    settle(a, b)
    back = [json.loads(r.entry.data) for r in a.staging.records]
    assert [(r["pk"], r.get("delete")) for r in back] == [("k", True)]  # B sent A's delete back
