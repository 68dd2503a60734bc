"""Lease fencing over fakes: the fence's local check and conditional renewal, the sender stopping
before a request, a batch that loses its lease mid-way, and checkpoints fenced by the counter."""

from __future__ import annotations

import json

import pytest
from test_batch import make, rec

from replicator.core.batch import BatchStatus
from replicator.core.checkpoint import MemoryCheckpointStore, ShardCheckpoint
from replicator.core.fakes import ScriptedSink
from replicator.core.fence import LeaseFence
from replicator.core.putrecords import EntryStatus, Limits, PutEntry, PutRecordsSender
from replicator.errors import LeaseLost, LeaseUnconfirmed


class LeaseRow:
    """One lease row: renew succeeds only for the counter it holds (like the conditional write)."""

    def __init__(self, counter: int = 1) -> None:
        self.counter = counter
        self.renewals: list[int] = []
        self.error: Exception | None = None

    def renew(self, now_ms: int, seen: int) -> int | None:
        self.renewals.append(now_ms)
        if self.error is not None:
            raise self.error
        if seen != self.counter:
            return None
        self.counter += 1
        return self.counter

    def steal(self) -> None:
        self.counter += 1


def fence(row: LeaseRow, clock: list[int], expires: int = 6_000) -> LeaseFence:
    return LeaseFence(
        "s0", counter=row.counter, expires_at_ms=expires, duration_ms=6_000, guard_ms=2_500,
        renew=row.renew, clock_ms=lambda: clock[0],
    )  # fmt: skip


def test_check_is_local_while_the_lease_is_long_enough() -> None:
    row, clock = LeaseRow(), [0]
    f = fence(row, clock)
    clock[0] = 3_500  # 2.5 s left: exactly the guard
    assert f.check() == 1 and row.renewals == []


def test_check_renews_when_short_and_carries_the_new_counter() -> None:
    row, clock = LeaseRow(), [0]
    f = fence(row, clock)
    clock[0] = 3_501
    assert f.check() == 2 and f.expires_at_ms == 9_501 and row.renewals == [3_501]
    assert f.check() == 2  # renewed: local again


def test_a_taken_lease_is_lost_for_good() -> None:
    row, clock = LeaseRow(), [0]
    f = fence(row, clock)
    row.steal()  # another worker took it (the counter moved)
    clock[0] = 7_000
    with pytest.raises(LeaseLost):
        f.check()
    assert f.lost
    with pytest.raises(LeaseLost):
        f.check()  # never asks again
    assert len(row.renewals) == 1


def test_an_unconfirmed_lease_is_not_written_under_but_not_lost() -> None:
    row, clock = LeaseRow(), [0]
    f = fence(row, clock)
    row.error = OSError("lease table unreachable")
    clock[0] = 5_000
    with pytest.raises(LeaseUnconfirmed):
        f.check()
    assert not f.lost


def test_guard_must_fit_in_the_lease() -> None:
    with pytest.raises(ValueError):
        LeaseFence("s0", counter=1, expires_at_ms=0, duration_ms=1_000, guard_ms=1_000,
                   renew=lambda now, c: c, clock_ms=lambda: 0)  # fmt: skip


def test_sender_stops_before_the_request_the_fence_refuses() -> None:
    sink = ScriptedSink()
    sender = PutRecordsSender(sink, "s", limits=Limits(max_entries=2), sleep=lambda s: None)

    def before() -> None:
        if len(sink.calls) >= 2:
            raise LeaseLost("taken")

    report = sender.send([PutEntry("k", b"%d" % i, ref=i) for i in range(6)], before_request=before)
    assert len(sink.calls) == 2 and isinstance(report.fenced, LeaseLost)
    assert [o.status for o in report.outcomes] == [EntryStatus.WRITTEN] * 4 + [
        EntryStatus.UNSENT
    ] * 2
    assert report.resolved_prefix == 4


def test_a_batch_that_loses_its_lease_writes_nothing_more_and_no_checkpoint() -> None:
    """Planted: the lease is taken while the first request is in flight. Without the fence the
    batch would go on writing (older values after a new owner's newer ones)."""
    row, clock = LeaseRow(), [0]
    f = fence(row, clock)

    class StealingSink(ScriptedSink):
        def put_records(self, stream, entries, guard=None):
            results = super().put_records(stream, entries, guard)
            if len(self.calls) == 1:
                row.steal()  # taken while the process was paused ...
                clock[0] = 10_000  # ... past the lease's expiry
            return results

    rep, sink, store, _ = make(sink=StealingSink(), limits=Limits(max_entries=5))
    records = [rec(i, key=f"k{i % 3}") for i in range(20)]
    result = rep.process("s0", records, fence=f)
    assert result.status is BatchStatus.LEASE_LOST and result.acked == 5
    assert len(sink.calls) == 1 and len(sink.records) == 5
    assert store.rows == {} and f.lost
    # Without a fence the same batch writes everything (the behaviour fencing prevents).
    rep2, sink2, *_ = make(sink=StealingSink(), limits=Limits(max_entries=5))
    assert rep2.process("s0", records).status is BatchStatus.REPLICATED
    assert [json.loads(r.entry.data)["trace"] for r in sink2.records][-1] == "p-19"


def test_checkpoints_carry_the_lease_counter_and_a_stale_owner_never_moves_them() -> None:
    row, clock = LeaseRow(counter=7), [0]
    rep, _, store, _ = make()
    rep.process("s0", [rec(i) for i in range(5)], fence=fence(row, clock))
    assert store.rows["s0"].lease_counter == 7
    # A newer owner (counter 9) checkpoints; the stale owner (counter 7) comes back later with
    # a batch that is further along: refused all the same.
    assert store.advance(ShardCheckpoint("s0", "1010", lease_counter=9))
    assert not store.advance(ShardCheckpoint("s0", "1020", lease_counter=7))
    assert store.rows["s0"].sequence_number == "1010"
    assert store.advance(ShardCheckpoint("s0", "1030"))  # no lease (Lambda): not fenced
    assert store.rows["s0"].lease_counter == 9


def test_idle_and_stand_down_writes_are_fenced() -> None:
    row, clock = LeaseRow(), [0]
    f = fence(row, clock)
    row.steal()
    clock[0] = 9_000
    rep, _, store, _ = make()
    assert not rep.idle("s0", "1000", 100_000, fence=f)
    assert store.rows == {} and f.lost and rep.metrics.counters["checkpoint_fenced"] == 1


def test_memory_store_keeps_the_counter_on_unfenced_writes() -> None:
    store = MemoryCheckpointStore()
    store.advance(ShardCheckpoint("s0", "1", lease_counter=3))
    store.advance(ShardCheckpoint("s0", "2"))
    assert store.rows["s0"].lease_counter == 3


def test_the_sink_checks_the_fence_again_at_the_last_moment() -> None:
    """A pause between the sender's check and the request leaving (botocore builds and signs a
    request of 500 records in about 16 ms) is caught by the sink's own last check."""
    sink = ScriptedSink()
    sender = PutRecordsSender(sink, "s", sleep=lambda s: None)
    checks = []

    def check() -> None:
        checks.append(len(checks))
        if len(checks) == 2:  # fine before the request, taken by the time it would leave
            raise LeaseLost("taken while the request was being built")

    report = sender.send([PutEntry("k", b"x", ref=0)], before_request=check)
    assert isinstance(report.fenced, LeaseLost) and sink.calls == []
    assert report.outcomes[0].status is EntryStatus.UNRESOLVED  # not acknowledged


def test_the_boto3_sink_runs_the_guard_after_signing_and_before_sending() -> None:
    """Against a loopback port nothing listens on: a guard that refuses means no connection
    was even tried; one that passes lets botocore send (and fail to connect)."""
    import boto3
    from botocore.config import Config

    from replicator.adapters.kinesis import KinesisSink
    from replicator.errors import RetryableRequestError

    client = boto3.client(
        "kinesis", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )  # fmt: skip
    sink = KinesisSink(client)
    seen = []

    def refuse() -> None:
        seen.append("refused")
        raise LeaseLost("taken")

    with pytest.raises(LeaseLost):
        sink.put_records("s", [PutEntry("k", b"x")], guard=refuse)
    assert seen == ["refused"]
    with pytest.raises(RetryableRequestError):  # sent: the connection was refused
        sink.put_records("s", [PutEntry("k", b"x")], guard=lambda: seen.append("passed"))
    assert seen == ["refused", "passed"]
    with pytest.raises(RetryableRequestError):  # no guard (producers): unchanged
        sink.put_records("s", [PutEntry("k", b"x")])
    assert seen == ["refused", "passed"]
