"""The active-active reference replicator over fakes: two regions' tables, forwarders, staging
streams and appliers run against each other until nothing moves, then both tables compared."""

from __future__ import annotations

import json

import pytest

from replicator.core.checkpoint import MemoryCheckpointStore
from replicator.core.fakes import ScriptedSink
from replicator.core.lww_apply import Applier
from replicator.core.lww_fakes import FakeItemsTable, item, staging_records
from replicator.core.lww_forward import Forwarder
from replicator.core.lww_writes import ConditionalWriter
from replicator.core.putrecords import Backoff, PutRecordsSender
from replicator.errors import RetryableRequestError
from xrh.active_active import SOURCE_SEQ, STAMP_TS, TOMBSTONE, is_tombstone, stamp_of

A, B = "us-east-1", "us-east-2"


class Letters:
    def __init__(self) -> None:
        self.letters: list = []

    def put(self, letters) -> None:
        self.letters.extend(letters)


class Region:
    def __init__(self, name: str, other: str, direction: str) -> None:
        self.name = name
        self.table = FakeItemsTable(shard_id=f"shard-{name}")
        self.staging = ScriptedSink(shard_count=1)  # this region's staging stream
        self.lag: list[str] = []
        self.forward_cp = MemoryCheckpointStore()
        self.apply_cp = MemoryCheckpointStore()
        self.dead = Letters()
        fast = Backoff(base=0.0, cap=0.0, max_attempts=3)
        self.applier = Applier(
            stream="p-staging", table="p-items", region=name, other_region=other,
            direction=direction, writer=ConditionalWriter(self.table, "p-items", backoff=fast),
            checkpoints=self.apply_cp, dead_letters=self.dead, clock_ms=lambda: 5_000,
            lag_sink=self.lag.append,
        )  # fmt: skip
        self.read_table = 0
        self.read_staging = 0

    def connect(self, other: Region) -> None:
        fast = Backoff(base=0.0, cap=0.0, max_attempts=3)
        self.forwarder = Forwarder(
            table="p-items", region=self.name, other_region=other.name,
            sender=PutRecordsSender(other.staging, "p-staging", backoff=fast, sleep=lambda s: None),
            writer=ConditionalWriter(self.table, "p-items", backoff=fast),
            checkpoints=self.forward_cp, dead_letters=self.dead,
        )  # fmt: skip

    def forward(self) -> bool:
        changes = self.table.changes_since(self.read_table)
        if not changes:
            return False
        result = self.forwarder.process(self.table.shard_id, changes)
        if result.acked:
            self.read_table += result.acked
        return True

    def apply(self) -> bool:
        records = staging_records(self.staging, self.read_staging)
        if not records:
            return False
        result = self.applier.process("shard-staging", records)
        if result.acked:
            self.read_staging += result.acked
        return True


def pair() -> tuple[Region, Region]:
    a, b = Region(A, B, "b->a"), Region(B, A, "a->b")
    a.connect(b)
    b.connect(a)
    return a, b


def settle(a: Region, b: Region, rounds: int = 20) -> None:
    for _ in range(rounds):
        moved = [a.forward(), b.forward(), a.apply(), b.apply()]
        if not any(moved):
            return
    raise AssertionError("did not settle")


def logical(items: dict) -> dict:
    """The tables' items without the applier's bookkeeping (verify compares them so too)."""
    return {pk: {k: v for k, v in item.items() if k != SOURCE_SEQ} for pk, item in items.items()}


def origins(region: Region) -> list[str]:
    return [json.loads(r.entry.data)["origin"] for r in region.staging.records]


def test_forwards_only_local_changes_and_nothing_comes_back() -> None:
    a, b = pair()
    a.table.put(item("1", 100, A, v="a"))
    b.table.put(item("2", 100, B, v="b"))
    settle(a, b)
    assert logical(a.table.items) == logical(b.table.items)
    assert set(a.table.items) == {"1", "2"}
    assert origins(b) == [A] and origins(a) == [B]  # each change crossed once, never back
    assert a.forwarder.metrics.counters["skipped_not_local"] == 1  # the applied "2"
    assert a.forward_cp.rows["shard-us-east-1"].sequence_number == str(len(a.table.stream))
    record = json.loads(b.staging.records[0].entry.data)
    assert record["stamp"] == [100, A] and record["pk"] == "1"
    assert record["source"] == {"shard": "shard-us-east-1", "seq": "1", "created_ms": 1000}
    assert b.lag == ['{"ts_ms": 5000, "direction": "a->b", "lag_ms": 4000}\n']


@pytest.mark.parametrize("first", [A, B])
def test_equal_timestamps_resolve_by_region_in_both_orders(first: str) -> None:
    a, b = pair()
    regions = {A: a, B: b}
    regions[first].table.put(item("k", 100, first, v=first))
    settle(a, b)
    other = B if first == A else A
    regions[other].table.put(item("k", 100, other, v=other))
    settle(a, b)
    assert logical(a.table.items) == logical(b.table.items)
    assert stamp_of(a.table.items["k"]).region == B  # us-east-2 > us-east-1


def test_concurrent_equal_timestamps_converge_on_the_larger_region() -> None:
    a, b = pair()
    a.table.put(item("k", 100, A, v="a"))
    b.table.put(item("k", 100, B, v="b"))
    settle(a, b)
    assert logical(a.table.items) == logical(b.table.items)
    assert a.table.items["k"]["v"] == {"S": "b"}


def test_same_stamp_same_origin_later_record_wins() -> None:
    a, b = pair()
    a.table.put(item("k", 100, A, v="first"))
    a.table.put(item("k", 100, A, v="second"))
    settle(a, b)
    assert b.table.items["k"]["v"] == {"S": "second"} == a.table.items["k"]["v"]


def test_regression_is_repaired_and_the_loser_not_forwarded() -> None:
    a, b = pair()
    b.table.put(item("k", 200, B, v="winner"))
    settle(a, b)
    a.table.put(item("k", 150, A, v="late"))  # plain write, older than A's table held
    settle(a, b)
    assert a.table.items["k"]["v"] == {"S": "winner"} == b.table.items["k"]["v"]
    assert origins(b) == []  # the loser never left A
    assert a.forwarder.metrics.counters["repairs_written"] == 1


def test_a_repair_never_puts_back_a_version_that_a_same_stamp_later_one_replaced() -> None:
    """Whole-second stamps: B writes "first" then "second" with one stamp. A plain write in A
    regresses A's "first"; by the time A's forwarder repairs it, A's applier has applied
    "second": putting "first" back would leave the tables apart for good."""
    a, b = pair()
    b.table.put(item("k", 200, B, v="first"))
    b.forward()
    a.apply()
    a.table.put(item("k", 150, A, v="late"))  # A regressed: old "first", new "late"
    b.table.put(item("k", 200, B, v="second"))  # the same stamp, later in B's order
    b.forward()
    a.apply()
    a.forward()  # sees the regression only now
    settle(a, b)
    assert a.table.items["k"]["v"] == {"S": "second"} == b.table.items["k"]["v"]


def test_local_regression_over_a_local_winner_echo_not_forwarded_again() -> None:
    a, b = pair()
    a.table.put(item("k", 200, A, v="winner"))
    a.table.put(item("k", 150, A, v="late"))
    settle(a, b)
    assert a.table.items["k"]["v"] == {"S": "winner"} == b.table.items["k"]["v"]
    assert len(b.staging.records) == 1  # the winner once; neither the loser nor the echo
    assert a.forwarder.metrics.counters["skipped_restore_echoes"] == 1


def test_remove_becomes_a_tombstone_written_locally_and_forwarded_once() -> None:
    a, b = pair()
    a.table.put(item("k", 100, A, v="x"))
    settle(a, b)
    a.table.delete(None, {"pk": {"S": "k"}})
    settle(a, b)
    for region in (a, b):
        held = region.table.items["k"]
        assert is_tombstone(held) and held[STAMP_TS] == {"N": "101"} and held[TOMBSTONE]
    stamps = [json.loads(r.entry.data)["stamp"] for r in b.staging.records]
    assert stamps == [[100, A], [101, A]]  # the tombstone's own echo was not sent again
    assert a.forwarder.metrics.counters["skipped_own_tombstones"] == 1


def test_older_write_after_a_tombstone_never_resurrects() -> None:
    a, b = pair()
    a.table.put(item("k", 100, A, v="x"))
    settle(a, b)
    a.table.delete(None, {"pk": {"S": "k"}})  # tombstone (101, A)
    b.table.put(item("k", 99, B, v="late"))  # B has not seen the delete yet
    settle(a, b)
    assert logical(a.table.items) == logical(b.table.items)
    assert is_tombstone(a.table.items["k"])


def test_replay_of_an_applied_batch_is_idempotent() -> None:
    a, b = pair()
    a.table.put(item("k", 100, A, v="x"))
    a.table.put(item("j", 100, A, v="y"))
    settle(a, b)
    before = dict(b.table.items)
    records = staging_records(b.staging)
    result = b.applier.process("shard-staging", records)
    assert result.acked == len(records)
    assert b.table.items == before
    assert b.applier.metrics.counters["applied"] == 4  # the replay wrote the same items again
    settle(a, b)
    assert origins(a) == [] and logical(a.table.items) == logical(b.table.items)  # and nothing came back


def test_checkpoint_only_after_every_write() -> None:
    a, b = pair()
    a.table.put(item("k", 100, A, v="x"))
    a.forward()
    throttle = RetryableRequestError("slow down", "ProvisionedThroughputExceededException")
    b.table.fail = {1: throttle, 2: throttle, 3: throttle}  # every attempt of the write
    result = b.applier.process("shard-staging", staging_records(b.staging))
    assert result.acked == 0 and not b.apply_cp.rows and "k" not in b.table.items
    result = b.applier.process("shard-staging", staging_records(b.staging))
    assert result.acked == 1 and b.apply_cp.rows["shard-staging"].sequence_number
    assert logical(b.table.items)["k"] == logical(a.table.items)["k"]


def test_forwarder_does_not_checkpoint_when_the_staging_stream_refuses() -> None:
    a, b = pair()
    a.table.put(item("k", 100, A, v="x"))
    b.staging.fail_entry = lambda entry, call: "ProvisionedThroughputExceededException"
    assert a.forwarder.process(a.table.shard_id, a.table.stream).acked == 0
    assert not a.forward_cp.rows
    b.staging.fail_entry = None
    assert a.forwarder.process(a.table.shard_id, a.table.stream).acked == 1
    assert a.forward_cp.rows


def test_malformed_staging_record_is_dead_lettered_with_its_data() -> None:
    a, b = pair()
    from replicator.core.putrecords import PutEntry

    b.staging.put_records("p-staging", [PutEntry("k", b"{not json")])
    result = b.applier.process("shard-staging", staging_records(b.staging))
    assert result.acked == 1
    (letter,) = b.dead.letters
    assert letter.reason == "malformed" and letter.record.data == b"{not json"


def test_repairs_read_late_restore_the_later_of_two_same_stamp_versions() -> None:
    """Found by the clock-skew drill: B writes "first" then "second" with one stamp; in A each
    is applied and then regressed by a local older write before A's forwarder, reading late,
    repairs the first regression (restoring "first", over an older stamp) in one batch and the
    second in the next. The second repair must put "second" back over the equal-stamped
    "first": the origin stream's order, kept with each applied version, decides."""
    a, b = pair()
    b.table.put(item("k", 200, B, v="first"))
    b.forward()
    a.apply()
    a.table.put(item("k", 150, A, v="late-1"))  # regresses "first"
    b.table.put(item("k", 200, B, v="second"))
    b.forward()
    a.apply()  # "second" over "late-1"
    a.table.put(item("k", 160, A, v="late-2"))  # regresses "second"
    changes = a.table.changes_since(a.read_table)  # "first" applied, "late-1", "second" applied,
    first_batch = a.forwarder.process(a.table.shard_id, changes[:2])  # "late-2": repairs "first"
    assert first_batch.acked == 2 and a.table.items["k"]["v"] == {"S": "first"}
    a.read_table += 2
    settle(a, b)
    assert a.table.items["k"]["v"] == {"S": "second"} == b.table.items["k"]["v"]
