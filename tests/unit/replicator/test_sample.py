"""The published sample's behaviour (``--behaviour sample``) over fakes: each of its traits,
shown against what the reference replicator does with the same input."""

from __future__ import annotations

import json

from test_batch import T0, make, rec

from replicator.core.active import StaticActiveRegion
from replicator.core.batch import BatchStatus
from replicator.core.checkpoint import MemoryCheckpointStore
from replicator.core.fakes import ScriptedSink
from replicator.core.sample import SampleReplicator, commit_text_of
from replicator.errors import ActiveRegionLookupError, CheckpointError
from xrh.contracts import iso_ms

A, B = "us-east-1", "us-east-2"


class MemoryWatermarkRow:
    """The sample's per-record checkpoint: every overwrite, in order; optionally failing."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.writes: list[tuple[str, int | None]] = []
        self.fail_on = fail_on  # 1-based write number that raises

    def overwrite(self, commit_text: str, commit_ms: int | None, written_at_ms: int) -> None:
        if self.fail_on is not None and len(self.writes) + 1 == self.fail_on:
            self.fail_on = None
            raise CheckpointError("checkpoint table throttled")
        self.writes.append((commit_text, commit_ms))

    @property
    def value(self) -> tuple[str, int | None] | None:
        return self.writes[-1] if self.writes else None


def sample(active=None, sink=None, row=None, positions=None):
    sink = sink or ScriptedSink()
    row = row or MemoryWatermarkRow()
    positions = positions or MemoryCheckpointStore()
    rep = SampleReplicator(
        stream="s",
        source_region=A,
        target_region=B,
        sink=sink,
        active=active or StaticActiveRegion(A),
        watermark_row=row,
        positions=positions,
        clock_ms=lambda: T0 + 60_000,
    )
    return rep, sink, row, positions


def traces(sink: ScriptedSink) -> list[str]:
    return [json.loads(r.entry.data)["trace"] for r in sink.records]


def test_lookup_failure_acknowledges_the_batch_uncopied() -> None:
    """The sample's bug: a failed lookup means "not active", and the batch is acknowledged."""
    down = StaticActiveRegion(error=ActiveRegionLookupError("table unreachable"))
    rep, sink, row, positions = sample(active=down)
    result = rep.process("s0", [rec(0), rec(1), rec(2)])
    assert result.status is BatchStatus.STOOD_DOWN and result.acked == 3
    assert result.failed_from is None  # nothing is retried: the three records are lost
    assert sink.calls == [] and row.writes == []
    assert positions.rows["s0"].sequence_number == "1002"  # the shard moves past them
    assert rep.metrics.counters["acknowledged_after_lookup_failure"] == 3
    # The reference fails the same batch instead, to be retried.
    reference, ref_sink, *_ = make(active=down)
    failed = reference.process("s0", [rec(0), rec(1), rec(2)])
    assert failed.status is BatchStatus.FAILED and failed.failed_from == "1000"


def test_not_active_acknowledges_without_copying() -> None:
    rep, sink, row, positions = sample(active=StaticActiveRegion(B))
    result = rep.process("s0", [rec(0), rec(1)])
    assert (result.status, result.acked, result.failed_from) == (BatchStatus.STOOD_DOWN, 2, None)
    assert sink.calls == [] and row.writes == []


def test_handover_time_is_ignored() -> None:
    """B active since T0 + 5, A before: the sample in A stands down for the records that
    arrived while A was still active (lost), where the reference still copies them."""
    switch = StaticActiveRegion(B, since_ms=T0 + 5, previous_region=A)
    rep, sink, *_ = sample(active=switch)
    result = rep.process("s0", [rec(i) for i in range(10)])  # arrivals T0 .. T0 + 9
    assert result.status is BatchStatus.STOOD_DOWN and sink.records == []
    reference, ref_sink, *_ = make(active=switch)
    reference.process("s0", [rec(i) for i in range(10)])
    assert len(ref_sink.records) == 5


def test_one_put_record_and_one_unconditional_checkpoint_per_record() -> None:
    rep, sink, row, positions = sample()
    commits = [T0 + 500, T0 + 900, T0 + 100]  # not monotone: a later record, an older commit
    records = [rec(i, key=f"k{i}", commit=c - i) for i, c in enumerate(commits)]
    result = rep.process("s0", records)
    assert result.status is BatchStatus.REPLICATED and result.failed_from is None
    assert [len(call) for call in sink.calls] == [1, 1, 1]  # one PutRecord each
    assert [(r.entry.partition_key, r.entry.data) for r in sink.records] == [
        (r.partition_key, r.data) for r in records
    ]
    assert row.writes == [(iso_ms(c), c) for c in commits]  # one write per record, in order
    assert row.value == (iso_ms(T0 + 100), T0 + 100)  # ... so the checkpoint moved backwards
    assert rep.metrics.counters["requests"] + rep.metrics.counters["checkpoint_writes"] == 6
    assert positions.rows["s0"].shard_watermark_ms is None  # the position claims nothing


def test_first_put_failure_stops_the_batch_at_that_record() -> None:
    sink = ScriptedSink().fail_entries(3, [0])  # the third PutRecord is throttled
    rep, _, row, positions = sample(sink=sink)
    result = rep.process("s0", [rec(i) for i in range(6)])
    assert result.status is BatchStatus.PARTIAL
    assert (result.acked, result.failed_from) == (2, "1002")
    assert traces(sink) == ["p-0", "p-1"] and len(sink.calls) == 3  # nothing after the failure
    assert len(row.writes) == 2
    assert positions.rows["s0"].sequence_number == "1001"


def test_failure_on_the_first_record_fails_the_whole_batch() -> None:
    rep, sink, row, positions = sample(sink=ScriptedSink().fail_entries(1, [0]))
    result = rep.process("s0", [rec(0), rec(1)])
    assert (result.status, result.acked, result.failed_from) == (BatchStatus.FAILED, 0, "1000")
    assert "s0" not in positions.rows


def test_checkpoint_failure_after_the_put_resends_that_record() -> None:
    rep, sink, row, _ = sample(row=MemoryWatermarkRow(fail_on=2))
    records = [rec(i) for i in range(4)]
    first = rep.process("s0", records)
    assert first.status is BatchStatus.PARTIAL and first.failed_from == "1001"
    rep.process("s0", records[first.acked :])  # resumed from the failed record
    assert traces(sink) == ["p-0", "p-1", "p-1", "p-2", "p-3"]  # p-1 copied twice


def test_data_that_is_not_json_is_put_then_fails_every_time() -> None:
    """No dead letters: a poison record is copied, then fails, on every retry."""
    rep, sink, row, _ = sample()
    poison = rec(1)
    poison = type(poison)(poison.shard_id, poison.sequence_number, "k", b"not json", T0)
    for _ in range(3):
        result = rep.process("s0", [poison, rec(2)])
        assert result.status is BatchStatus.FAILED and result.failed_from == poison.sequence_number
    assert [r.entry.data for r in sink.records] == [b"not json"] * 3 and row.writes == []


def test_commit_text_as_the_sample_reads_it() -> None:
    assert commit_text_of('{"commitTimestamp": "2021-11-10T00:48:30Z"}') == "2021-11-10T00:48:30Z"
    assert commit_text_of('{"key": 1}') == "" and commit_text_of("[1, 2]") == ""
    assert commit_text_of('{"commitTimestamp": 17}') == "17"
    rep, _, row, _ = sample()
    rep.process("s0", [rec(0, commit=None)])  # no commitTimestamp: the text is "", no ms
    assert row.writes == [("", None)]
