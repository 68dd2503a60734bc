"""No copy back at failover (replicator.core.handover) over fakes: the previous region records
its late copies and says when it is done; the new region holds what arrived after the switch
until then and never forwards a recorded copy; nothing of it costs a call in steady state."""

from __future__ import annotations

from test_batch import T0, make, rec

from replicator.core.active import CachedActiveRegion, StaticActiveRegion, Switch
from replicator.core.batch import BatchStatus
from replicator.core.handover import (
    Handover,
    HandoverKey,
    HandoverSettings,
    MemoryHandoverStore,
    copy_id,
)
from replicator.core.watermark import ShardInfo
from replicator.errors import HandoverError

A, B = "us-east-1", "us-east-2"
S = T0 + 5  # the switch: records rec(i) arrive at T0 + i
GRACE = 3  # A copies what its producers wrote before S + 3 ms
KEY = HandoverKey("s", A, B, S)


def replicator_in(region: str, active, store: MemoryHandoverStore, now: list[int]):
    """A replicator reading ``region``'s stream; ``store`` is the one table both sides share
    (the new region's: the previous one writes there, the new one reads it)."""
    rep, sink, checkpoints, _ = make(active=active)
    rep.source_region = region
    rep.target_region = B if region == A else A
    rep.clock_ms = lambda: now[0]
    rep.handover = Handover(
        this_region=region, outbound=store, inbound=store, clock_ms=lambda: now[0],
        settings=HandoverSettings(dead_after_ms=30_000, grace_ms=GRACE, in_flight_ms=3_000,
                                  gate_cache_ms=500, margin_ms=1_000),
    )  # fmt: skip
    return rep, sink, checkpoints


def switched() -> StaticActiveRegion:
    return StaticActiveRegion(B, since_ms=S, previous_region=A)


def test_previous_region_records_the_copies_it_makes_after_the_switch() -> None:
    store, now = MemoryHandoverStore(), [S + 1_000]
    rep, sink, _ = replicator_in(A, switched(), store, now)
    rep.process("s0", [rec(i) for i in range(10)])  # 0..7 arrived before S + grace: copied
    assert len(sink.records) == 8
    assert store.copies(KEY) == {copy_id(r.shard_id, r.sequence_number) for r in sink.records}


def test_steady_state_costs_no_call() -> None:
    store, now = MemoryHandoverStore(), [T0]
    rep, sink, _ = replicator_in(A, StaticActiveRegion(A), store, now)
    for batch in range(5):
        rep.process("s0", [rec(10 * batch + i) for i in range(10)])
    rep.handover_tick([ShardInfo("s0")], ["s0"], [])
    assert len(sink.records) == 50 and store.calls == 0


def test_new_region_holds_until_the_previous_is_done_then_skips_its_copies() -> None:
    store, now = MemoryHandoverStore(), [S + 1_000]
    rep, sink, checkpoints = replicator_in(B, switched(), store, now)
    store.heartbeat(KEY, now[0])
    records = [rec(i) for i in range(10)]  # in B's stream: 0..4 before S, 5..9 after
    held = rep.process("s0", records)
    assert held.status is BatchStatus.PARTIAL and held.acked == 5 and held.failed_from == "1005"
    assert sink.calls == [] and checkpoints.rows["s0"].sequence_number == "1004"
    # A finishes: records 6 and 8 in B's stream were A's late copies.
    store.record_copies(KEY, "s0#1", [copy_id("s0", "1006"), copy_id("s0", "1008")])
    store.mark_complete(KEY, now[0])
    now[0] += 100  # within the gate's cache: still holding
    assert rep.process("s0", records[5:]).status is BatchStatus.FAILED
    now[0] += 500
    done = rep.process("s0", records[5:])
    assert done.status is BatchStatus.REPLICATED and done.acked == 5
    assert [r.entry.data for r in sink.records] == [records[i].data for i in (5, 7, 9)]
    assert rep.metrics.counters["handover_skipped_copies"] == 2
    calls = store.calls  # complete: later batches check a local set only
    rep.process("s0", [rec(i) for i in range(10, 20)])
    assert store.calls == calls and len(sink.records) == 13


def test_a_silent_previous_region_is_waited_for_only_so_long() -> None:
    store, now = MemoryHandoverStore(), [S + 29_000]
    rep, sink, _ = replicator_in(B, switched(), store, now)
    store.record_copies(KEY, "s0#1", [copy_id("s0", "1007")])  # recorded before it went silent
    assert rep.process("s0", [rec(i) for i in range(5, 10)]).status is BatchStatus.FAILED
    now[0] = S + 30_000  # no heartbeat for the timeout: presumed gone
    result = rep.process("s0", [rec(i) for i in range(5, 10)])
    assert result.status is BatchStatus.REPLICATED and len(sink.records) == 4


def test_an_unreadable_handover_state_holds() -> None:
    store, now = MemoryHandoverStore(), [S + 60_000]
    rep, sink, _ = replicator_in(B, switched(), store, now)
    store.fail_next = HandoverError("table unreachable")
    assert rep.process("s0", [rec(i) for i in range(5, 10)]).status is BatchStatus.FAILED
    assert sink.calls == []


def test_copies_made_on_a_stale_answer_are_recorded_once_the_switch_is_seen() -> None:
    """A's cached answer still says "A active" after the switch: what it copies then lands in
    B after S, unrecorded, unless A remembers it and records it when it learns of the switch."""
    store, now = MemoryHandoverStore(), [S - 2_000]
    table = StaticActiveRegion(A)
    cached = CachedActiveRegion(table, ttl_s=60.0, clock=lambda: 0.0)
    rep, sink, _ = replicator_in(A, cached, store, now)
    rep.process("s0", [rec(i) for i in range(3)])  # sent at S - 2 s: may land after S
    now[0] = S + 5_000  # after the switch, still on the cached answer
    rep.process("s0", [rec(i) for i in range(3, 6)])
    table.region, table.since_ms, table.previous_region = B, S, A  # the switch, now seen:
    cached._cache.clear()
    rep.handover_tick([ShardInfo("s0")], ["s0"], [])
    assert store.copies(KEY) == {copy_id(r.shard_id, r.sequence_number) for r in sink.records}
    # What was sent before S minus the time a write can be in flight landed before S: not kept.
    early_store, early = MemoryHandoverStore(), [S - 4_000]
    rep2, sink2, _ = replicator_in(A, StaticActiveRegion(A), early_store, early)
    rep2.process("s0", [rec(0)])
    early[0] = S + 1_000
    rep2.active = switched()
    rep2.handover_tick([ShardInfo("s0")], ["s0"], [])
    assert early_store.copies(KEY) == set()


def test_the_previous_region_marks_its_shards_done_then_the_handover_complete() -> None:
    store, now = MemoryHandoverStore(), [S + 1_000]
    rep, _, _ = replicator_in(A, switched(), store, now)
    shards = [ShardInfo("s0"), ShardInfo("s1"), ShardInfo("s2", closed=True)]
    rep.process("s0", [rec(i) for i in range(10)])  # reached a record that arrived after S
    rep.handover_tick(shards, ["s0", "s1"], ["s2"])
    assert store.done_shards(KEY) == {"s0", "s2"} and not store.state(KEY).complete
    assert store.state(KEY).heartbeat_ms == now[0]
    rep.idle("s1", None, S + 500)  # an empty read that does not reach past S yet
    rep.handover_tick(shards, ["s0", "s1"], ["s2"])
    assert not store.state(KEY).complete
    rep.idle("s1", None, S + 1_500)  # ... now it does (minus the visibility margin)
    rep.handover_tick(shards, ["s0", "s1"], ["s2"])
    assert store.state(KEY).complete
    calls = store.calls
    rep.handover_tick(shards, ["s0", "s1"], ["s2"])
    assert store.calls == calls  # nothing more once complete


def test_records_written_to_the_previous_region_just_after_the_switch_are_not_lost() -> None:
    """A producer request that began before the switch lands after it. Without the handover
    (Lambda) the previous region stands down for it and nobody copies it; with it, the previous
    region copies what arrives within the grace (the new region forwards nothing into the
    previous region's stream meanwhile, so all of it is the previous region's own)."""
    store, now = MemoryHandoverStore(), [S + 1_000]
    rep, sink, _ = replicator_in(A, switched(), store, now)
    stragglers = [rec(i) for i in range(5, 10)]  # arrived at S .. S + 4
    rep.process("s0", stragglers)
    assert [r.entry.data for r in sink.records] == [x.data for x in stragglers[:3]]  # < S + 3
    assert store.copies(KEY) == {copy_id(r.shard_id, r.sequence_number) for r in sink.records}
    plain, plain_sink, _, _ = make(active=switched())  # no handover: the old rule
    plain.process("s0", stragglers)
    assert plain_sink.records == []


def test_a_failover_command_can_tell_a_handover_is_still_in_progress() -> None:
    from replicator.core.handover import handover_in_progress

    store = MemoryHandoverStore()
    assert handover_in_progress(store, KEY, S + 1_000)  # just switched
    store.heartbeat(KEY, S + 20_000)
    assert handover_in_progress(store, KEY, S + 40_000)  # the previous region is at work
    assert not handover_in_progress(store, KEY, S + 50_000)  # ... silent for 30 s: abandoned
    store.mark_complete(KEY, S + 50_000)
    assert not handover_in_progress(store, KEY, S + 50_001)


def test_a_drain_waits_for_the_handover_this_region_owes() -> None:
    store, now = MemoryHandoverStore(), [S + 1_000]
    rep, _, _ = replicator_in(A, switched(), store, now)
    assert not rep.handover_pending()  # no tick yet: nothing known
    rep.handover_tick([ShardInfo("s0")], ["s0"], [])
    assert rep.handover_pending()
    rep.idle("s0", None, S + 2_000)  # past S + grace, minus the margin
    rep.handover_tick([ShardInfo("s0")], ["s0"], [])
    assert store.state(KEY).complete and not rep.handover_pending()
    b, _, _ = replicator_in(B, switched(), store, now)
    b.handover_tick([ShardInfo("s0")], ["s0"], [])
    assert not b.handover_pending()  # the new region owes nothing


# A second switch back to A at S2, while B still works off what it held after the first (S).
S2 = S + 10
KEY2 = HandoverKey("s", B, A, S2)


def switched_back() -> StaticActiveRegion:
    return StaticActiveRegion(A, since_ms=S2, previous_region=B, earlier=(Switch(S, A, B),))


def test_a_switch_history_gives_each_record_the_region_active_when_it_arrived() -> None:
    back = switched_back().assignment("s")
    assert [back.active_at(T0 + i) for i in (0, 4, 5, 14, 15, 30)] == [A, A, B, B, A, A]
    assert back.switch_at(T0 + 4) is None and back.switch_at(T0 + 9) == Switch(S, A, B)
    # Without the history the first switch is forgotten: B would take records of A's time.
    forgetful = StaticActiveRegion(A, since_ms=S2, previous_region=B).assignment("s")
    assert forgetful.active_at(T0 + 0) == B


def test_after_a_second_switch_the_first_previous_regions_copies_still_never_go_back() -> None:
    """B is now the previous region (S2) but has not yet forwarded what arrived after S: its
    own producers' records go to A, A's late copies of the first handover are stood down for,
    and nothing is forwarded until that handover completed."""
    store, now = MemoryHandoverStore(), [S2 + 1_000]
    rep, sink, _ = replicator_in(B, switched_back(), store, now)
    store.heartbeat(KEY, now[0])
    records = [rec(i) for i in range(20)]  # in B: 0..4 before S, 5..14 B's time, 15.. A's
    held = rep.process("s0", records)
    assert held.status is BatchStatus.PARTIAL and held.acked == 5 and sink.calls == []
    store.record_copies(KEY, "s0#1", [copy_id("s0", "1006"), copy_id("s0", "1008")])
    store.mark_complete(KEY, now[0])
    now[0] += 1_000
    done = rep.process("s0", records[5:])
    assert done.status is BatchStatus.REPLICATED
    # 5..14 less A's copies (6, 8), then 15..17: B's producers' records within S2 + grace.
    copied = [5, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17]
    assert [r.entry.data for r in sink.records] == [records[i].data for i in copied]
    # ...and B records those late copies for the second handover, so A never sends them back.
    assert len(store.copies(KEY2)) == len(copied)
