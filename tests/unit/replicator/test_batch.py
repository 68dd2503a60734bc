"""Batch replication against scripted fakes: lookup failure, stand-down, dead letters,
checkpoints that never move backwards, a crash between put and checkpoint, the watermark."""

from __future__ import annotations

import json

import pytest

from replicator.core.active import CachedActiveRegion, StaticActiveRegion
from replicator.core.batch import BatchStatus, ShardReplicator
from replicator.core.checkpoint import MemoryCheckpointStore, ShardCheckpoint, sequence_key
from replicator.core.fakes import ScriptedSink
from replicator.core.putrecords import Backoff, Limits, PutRecordsSender
from replicator.core.records import SourceRecord, commit_ms_of, parse_iso_ms
from replicator.core.watermark import (
    ShardInfo,
    WatermarkPublisher,
    WatermarkSettings,
    stream_watermark,
)
from replicator.errors import ActiveRegionLookupError, CheckpointError, DeadLetterError
from xrh.contracts import iso_ms
from xrh.contracts import parse_iso_ms as contract_parse

T0 = 1_700_000_000_000


def rec(i: int, key: str = "k", commit: int | None = T0, shard: str = "s0", size: int = 10):
    payload = {"key": key, "trace": f"p-{i}", "pad": "x" * size}
    if commit is not None:
        payload["commitTimestamp"] = iso_ms(commit + i)
    return SourceRecord(shard, str(1000 + i), key, json.dumps(payload).encode(), T0 + i)


class ListDeadLetters:
    def __init__(self, fail: bool = False) -> None:
        self.letters: list = []
        self.fail = fail

    def put(self, letters) -> None:
        if self.fail:
            raise DeadLetterError("bucket unreachable")
        self.letters.extend(letters)


def make(sink=None, active=None, store=None, dlq=None, limits=None, attempts=5):
    sink = sink or ScriptedSink()
    store = store or MemoryCheckpointStore()
    dlq = dlq or ListDeadLetters()
    sender = PutRecordsSender(
        sink, "s", limits=limits, backoff=Backoff(0.0, 0.0, attempts), sleep=lambda s: None
    )
    rep = ShardReplicator(
        stream="s",
        source_region="us-east-1",
        target_region="us-east-2",
        sender=sender,
        active=active or StaticActiveRegion("us-east-1"),
        checkpoints=store,
        dead_letters=dlq,
        clock_ms=lambda: T0 + 60_000,
        watermark=WatermarkSettings(max_commit_delay_ms=10_000, margin_ms=1_000),
    )
    return rep, sink, store, dlq


def test_parse_matches_the_contract() -> None:
    for text in ["2021-11-10T00:48:30.123Z", "2021-11-10T00:48:30Z", "2021-11-10T01:48:30+01:00"]:
        assert parse_iso_ms(text) == contract_parse(text)
    assert commit_ms_of(b'{"commitTimestamp": "yesterday"}') is None
    assert commit_ms_of(b"not json") is None


def test_copies_byte_identical_and_checkpoints_once() -> None:
    rep, sink, store, _ = make()
    records = [rec(i, key=f"k{i % 3}") for i in range(20)]
    result = rep.process("s0", records, tip_read_at_ms=T0 + 50)
    assert result.status is BatchStatus.REPLICATED and result.failed_from is None
    assert [(r.entry.partition_key, r.entry.data) for r in sink.records] == [
        (r.partition_key, r.data) for r in records
    ]
    assert store.writes == 1
    row = store.rows["s0"]
    assert row.sequence_number == "1019" and row.commit_ms == T0 + 19
    assert row.shard_watermark_ms == T0 + 50 - 11_000  # tip read - margin - D


def test_lookup_failure_fails_the_batch_uncopied_and_uncheckpointed() -> None:
    active = StaticActiveRegion(error=ActiveRegionLookupError("table unreachable"))
    rep, sink, store, _ = make(active=active)
    result = rep.process("s0", [rec(0), rec(1)])
    assert result.status is BatchStatus.FAILED and result.failed_from == "1000"
    assert sink.calls == [] and store.rows == {}


def test_not_active_here_stands_down_without_copying() -> None:
    rep, sink, store, _ = make(active=StaticActiveRegion("us-east-2"))
    result = rep.process("s0", [rec(0), rec(1)])
    assert result.status is BatchStatus.STOOD_DOWN and result.acked == 2
    assert sink.calls == []
    assert store.rows["s0"].sequence_number == "1001"
    assert store.rows["s0"].shard_watermark_ms is None


def test_active_region_cache_bound() -> None:
    now = [0.0]
    inner = StaticActiveRegion("us-east-1")
    cached = CachedActiveRegion(inner, ttl_s=2.0, clock=lambda: now[0])
    assert cached.active_region("s") == "us-east-1"
    inner.region = "us-east-2"  # switched
    now[0] = 1.9
    assert cached.active_region("s") == "us-east-1"  # within the bound
    now[0] = 2.0
    assert cached.active_region("s") == "us-east-2"  # switch seen at the bound
    inner.error = ActiveRegionLookupError("down")
    now[0] = 4.5
    with pytest.raises(ActiveRegionLookupError):
        cached.active_region("s")  # failures are not cached over


def test_partial_failure_checkpoints_the_prefix_and_fails_from_the_first_unresolved() -> None:
    sink = ScriptedSink(fail_entry=lambda e, call: "InternalFailure" if e.ref == 6 else None)
    rep, _, store, _ = make(sink=sink, attempts=3)
    records = [rec(i, key=f"k{i % 2}") for i in range(10)]
    result = rep.process("s0", records)
    assert result.status is BatchStatus.PARTIAL and result.failed_from == "1006"
    assert store.rows["s0"].sequence_number == "1005"
    # Pending records' commits bound the shard watermark below them.
    assert store.rows["s0"].shard_watermark_ms <= T0 + 6 - 1


def test_terminal_rejection_goes_to_dead_letter_with_full_data() -> None:
    rep, sink, store, dlq = make(limits=Limits(max_record_bytes=200, max_request_bytes=10_000))
    records = [rec(0), rec(1, size=500), rec(2)]
    result = rep.process("s0", records)
    assert result.status is BatchStatus.REPLICATED
    (letter,) = dlq.letters
    assert letter.record == records[1] and letter.reason == "too_large"
    assert letter.record.data == records[1].data
    assert [r.entry.data for r in sink.records] == [records[0].data, records[2].data]
    assert store.rows["s0"].sequence_number == "1002"


def test_dead_letter_sink_failure_stops_the_checkpoint_before_that_record() -> None:
    rep, _, store, _ = make(
        limits=Limits(max_record_bytes=200, max_request_bytes=10_000),
        dlq=ListDeadLetters(fail=True),
    )
    result = rep.process("s0", [rec(0), rec(1, size=500), rec(2)])
    assert result.status is BatchStatus.PARTIAL and result.failed_from == "1001"
    assert store.rows["s0"].sequence_number == "1000"


def test_checkpoint_never_moves_backwards() -> None:
    store = MemoryCheckpointStore()
    assert store.advance(ShardCheckpoint("s0", "1005", shard_watermark_ms=5))
    assert not store.advance(ShardCheckpoint("s0", "999", shard_watermark_ms=9))
    assert not store.advance(ShardCheckpoint("s0", "1005", shard_watermark_ms=4))
    assert store.advance(ShardCheckpoint("s0", "1005", shard_watermark_ms=6))
    assert store.rows["s0"].sequence_number == "1005"
    # The stored key orders as integers, not as strings.
    assert sequence_key("999") < sequence_key("1000") < sequence_key("49" + "0" * 54)


def test_concurrent_batches_out_of_order_do_not_regress_the_checkpoint() -> None:
    rep, _, store, _ = make()
    rep.process("s0", [rec(i) for i in range(10, 20)])
    rep.process("s0", [rec(i) for i in range(0, 10)])  # a slower, older batch lands later
    assert store.rows["s0"].sequence_number == "1019"
    assert rep.metrics.counters["checkpoint_conflicts"] == 1


def test_crash_between_put_and_checkpoint_gives_duplicates_not_loss() -> None:
    store = MemoryCheckpointStore()
    rep, sink, _, _ = make(store=store)
    records = [rec(i, key=f"k{i % 3}") for i in range(12)]
    rep.process("s0", records[:6])
    store.fail_next = CheckpointError("process died before the checkpoint")
    rep.process("s0", records[6:])  # written to the target, checkpoint lost
    resume = int(store.rows["s0"].sequence_number)
    again = [r for r in records if r.sequence_int > resume]
    rep.process("s0", again)  # a restarted replicator resumes from the checkpoint
    copied = [json.loads(r.entry.data)["trace"] for r in sink.records]
    assert set(copied) == {f"p-{i}" for i in range(12)}
    assert len(copied) == 18  # six duplicates, counted by verify, nothing lost


def test_checkpoint_failure_does_not_fail_the_copied_batch() -> None:
    store = MemoryCheckpointStore(fail_next=CheckpointError("throttled"))
    rep, *_ = make(store=store)
    result = rep.process("s0", [rec(0)])
    assert result.status is BatchStatus.REPLICATED and not result.checkpoint_written


def test_records_without_commit_timestamp_are_copied_and_counted() -> None:
    rep, sink, store, _ = make()
    rep.process("s0", [rec(0), rec(1, commit=None)])
    assert len(sink.records) == 2 and rep.metrics.counters["no_commit_timestamp"] == 1
    assert store.rows["s0"].commit_ms == T0  # the last record that had one


def test_stream_watermark_is_min_over_shards_and_needs_every_shard() -> None:
    shards = [ShardInfo("s0"), ShardInfo("s1"), ShardInfo("s2", closed=True)]
    rows = {
        "s0": ShardCheckpoint("s0", "1", shard_watermark_ms=500),
        "s1": ShardCheckpoint("s1", "1", shard_watermark_ms=300),
    }
    assert stream_watermark(shards, rows) is None  # s2 never read
    rows["s2"] = ShardCheckpoint("s2", "9", shard_watermark_ms=100, closed=True)
    assert stream_watermark(shards, rows) == 300  # closed and done: no constraint
    rows["s2"] = ShardCheckpoint("s2", "9", shard_watermark_ms=100)
    assert stream_watermark(shards, rows) == 100  # closed but not finished: holds W back


def test_idle_shard_watermark_moves_with_reads_and_publisher_only_rises() -> None:
    rep, _, store, _ = make()
    claims = []
    now = [T0 + 100_000]
    pub = WatermarkPublisher(
        store, lambda: [ShardInfo("s0"), ShardInfo("s1")], lambda: now[0], claims.append
    )
    rep.process("s0", [rec(0)], tip_read_at_ms=T0 + 20_000)
    assert pub.publish() is None  # s1 has no row yet
    rep.idle("s1", None, T0 + 30_000)
    claim = pub.publish()
    assert claim.watermark_ms == T0 + 20_000 - 11_000 and claim.claimed_at_ms == now[0]
    assert pub.publish() is None  # unchanged: not published again
    rep.idle("s0", "1000", T0 + 40_000)
    assert pub.publish().watermark_ms == T0 + 30_000 - 11_000
    assert len(claims) == 2


def test_watermark_claim_holds_with_non_monotone_commit_timestamps() -> None:
    """Whole-second commits from many producers: a later record may carry an older commit.
    The claim must stay below every pending record's commit (planted: a record pending with
    an old commit timestamp)."""
    sink = ScriptedSink(fail_entry=lambda e, call: "InternalFailure" if e.ref == 2 else None)
    rep, _, store, _ = make(sink=sink, attempts=2)
    records = [rec(0, commit=T0), rec(1, commit=T0), rec(2, commit=T0 - 5_000)]
    rep.process("s0", records, tip_read_at_ms=T0 + 60_000)
    assert store.rows["s0"].shard_watermark_ms < T0 - 5_000 + 2


def test_a_shard_that_skipped_its_history_claims_no_watermark() -> None:
    """--start-at-latest: records before the start were never read, so neither the shard rows
    nor the stream watermark may claim anything, however far the shard has been copied."""
    rep, _, store, _ = make()
    rep.process("s0", [rec(0)], tip_read_at_ms=T0 + 20_000, skipped_history=True)
    assert store.rows["s0"].sequence_number == "1000"
    assert store.rows["s0"].shard_watermark_ms is None and store.rows["s0"].skipped_history
    rep.idle("s0", "1000", T0 + 40_000, skipped_history=True)
    assert store.rows["s0"].shard_watermark_ms is None
    rep.idle("s1", None, T0 + 40_000)
    shards = [ShardInfo("s0"), ShardInfo("s1")]
    assert stream_watermark(shards, store.rows) is None
    # The flag sticks: a later write without it (say, a restarted replicator) keeps it.
    rep.process("s0", [rec(1)], tip_read_at_ms=T0 + 50_000)
    assert store.rows["s0"].skipped_history
    assert stream_watermark(shards, store.rows) is None
    # A closed shard that skipped its history still blocks while the stream lists it ...
    rows = {
        "s0": ShardCheckpoint(
            "s0", "9", shard_watermark_ms=None, closed=True, skipped_history=True
        ),
        "s1": ShardCheckpoint("s1", "1", shard_watermark_ms=500),
    }
    assert stream_watermark([ShardInfo("s0", closed=True), ShardInfo("s1")], rows) is None
    # ... and no longer once the stream has trimmed it (with its skipped records).
    assert stream_watermark([ShardInfo("s1")], rows) == 500
