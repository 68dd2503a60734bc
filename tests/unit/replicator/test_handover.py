"""A switch of the active region with a handover time: records that arrived before it belong
to the previous region, later ones to the new one; nothing is stood down while still owed."""

from __future__ import annotations

from test_batch import T0, make, rec

from replicator.core.active import Assignment, StaticActiveRegion
from replicator.core.batch import BatchStatus

A, B = "us-east-1", "us-east-2"  # the replicator under test runs in A (source_region us-east-1)


def test_assignment_rule() -> None:
    switch = Assignment(B, since_ms=T0 + 5, previous_region=A)
    assert switch.copies(A, T0 + 4) and not switch.copies(A, T0 + 5)
    assert not switch.copies(B, T0 + 4) and switch.copies(B, T0 + 5)
    assert not switch.copies("eu-west-1", T0 + 4)
    seed_item = Assignment(B)  # no handover time: the switch takes effect at once
    assert not seed_item.copies(A, T0) and seed_item.copies(B, T0)


def test_previous_region_copies_what_arrived_before_the_switch_then_stands_down() -> None:
    # Region B became active at T0 + 5: records 0..4 arrived in A while A was active.
    rep, sink, store, _ = make(active=StaticActiveRegion(B, since_ms=T0 + 5, previous_region=A))
    records = [rec(i) for i in range(10)]  # arrival T0 + i
    result = rep.process("s0", records)
    assert result.status is BatchStatus.REPLICATED and result.acked == 10
    assert [r.entry.data for r in sink.records] == [r.data for r in records[:5]]
    assert store.rows["s0"].sequence_number == "1009"  # the stand-down tail is acknowledged
    assert rep.metrics.counters["stood_down_records"] == 5
    assert store.writes == 2  # one for the copied run, one for the tail that ends the batch


def test_new_region_stands_down_for_copies_then_copies_its_own() -> None:
    rep, sink, store, _ = make(active=StaticActiveRegion(A, since_ms=T0 + 5, previous_region=B))
    records = [rec(i) for i in range(10)]
    result = rep.process("s0", records, tip_read_at_ms=T0 + 20)
    assert result.status is BatchStatus.REPLICATED and result.acked == 10
    assert [r.entry.data for r in sink.records] == [r.data for r in records[5:]]
    assert store.writes == 1  # the leading stand-down run is covered by the copy's checkpoint
    assert store.rows["s0"].sequence_number == "1009"


def test_failure_after_a_stand_down_run_resends_from_the_first_unwritten_record() -> None:
    rep, sink, store, _ = make(
        active=StaticActiveRegion(A, since_ms=T0 + 5, previous_region=B), attempts=1
    )
    sink.fail_entry = lambda entry, call: "ProvisionedThroughputExceededException"  # always
    result = rep.process("s0", [rec(i) for i in range(10)])
    assert result.status is BatchStatus.PARTIAL
    assert result.acked == 5 and result.failed_from == "1005"
    assert "s0" not in store.rows  # nothing copied, so nothing is claimed


def test_a_stale_cached_answer_never_stands_down_a_newer_record() -> None:
    """The cache read 'A active' at T0 + 3; a switch to B since T0 + 5 is not yet seen. B's
    replicator must not stand down records that arrived after its answer was read."""
    from replicator.core.active import CachedActiveRegion

    table = StaticActiveRegion(A)  # what B's replicator reads first
    wall = [T0 + 3]
    cached = CachedActiveRegion(table, ttl_s=60.0, clock=lambda: 0.0, wall_clock_ms=lambda: wall[0])
    assert cached.assignment("s").region == A
    table.region, table.since_ms, table.previous_region = B, T0 + 5, A  # the switch happens
    wall[0] = T0 + 20
    rep, sink, _, _ = make(active=cached)
    rep.source_region = B  # this replicator runs in B
    records = [rec(i) for i in range(10)]  # arrivals T0 .. T0 + 9
    result = rep.process("s0", records)
    assert result.status is BatchStatus.REPLICATED
    assert [r.entry.data for r in sink.records] == [r.data for r in records[5:]]
    assert table.calls == 2  # the stale answer was refreshed once, not trusted


def test_steady_copying_keeps_its_cache() -> None:
    from replicator.core.active import CachedActiveRegion

    table = StaticActiveRegion(A)
    wall = [T0 - 100]  # read long before the records arrived: copying on it is still fine
    cached = CachedActiveRegion(table, ttl_s=60.0, clock=lambda: 0.0, wall_clock_ms=lambda: wall[0])
    rep, sink, _, _ = make(active=cached)
    for batch in range(3):
        rep.process("s0", [rec(10 * batch + i) for i in range(10)])
    assert table.calls == 1 and len(sink.records) == 30
