"""Live apply of stream changes to a table over fakes: squashing, the bootstrap gate, all-or-
nothing acknowledgement, dead letters, fencing, checkpoints, metrics; change records from both
wire forms; the lag histogram."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from replicator.adapters.s3 import to_json
from replicator.core.changes import LAMBDA_SHARD, ChangeEvent, ChangeRecord
from replicator.core.checkpoint import MemoryCheckpointStore
from replicator.core.fence import LeaseFence
from replicator.core.metrics import LagHistogram
from replicator.core.putrecords import Backoff
from replicator.core.table_apply import BootstrapGate, TableApplier, squash
from replicator.core.table_fakes import FakeTableSink
from replicator.core.table_writes import BatchWriter, key_id
from replicator.errors import DeadLetterError, RetryableRequestError, TerminalRequestError

T0 = 1_700_000_000_000
SHARD = "shardId-00000001700000000000-aaaa"


def change(seq: int, key: str, event: str = "MODIFY", value: int = 0, commit_ms: int | None = None):
    keys = {"pk": {"S": key}}
    new = None
    if event != "REMOVE":
        new = {**keys, "v": {"N": str(value)}}
        if commit_ms is not None:
            new["commitTimestamp"] = {"S": dt.datetime.fromtimestamp(commit_ms / 1000, dt.UTC)
                                      .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}  # fmt: skip
    return ChangeRecord(
        SHARD, str(10**20 + seq), ChangeEvent(event), keys, new, None,
        approximate_ms=T0 + seq, commit_ms=commit_ms,
    )  # fmt: skip


class Letters:
    def __init__(self, fail: bool = False) -> None:
        self.letters: list = []
        self.fail = fail

    def put(self, letters) -> None:
        if self.fail:
            raise DeadLetterError("bucket gone")
        self.letters.extend(letters)


def applier(sink=None, gate=None, letters=None, now=T0 + 500, **writer_kwargs):
    sink = sink or FakeTableSink()
    writer_kwargs.setdefault("backoff", Backoff(base=0.0, max_attempts=3))
    writer_kwargs.setdefault("max_in_flight", 1)
    writer = BatchWriter(sink, "items", sleep=lambda s: None, **writer_kwargs)
    kwargs = {} if gate is None else {"gate": gate}
    return TableApplier(
        table="items", source_region="us-east-1", target_region="us-west-2", writer=writer,
        checkpoints=MemoryCheckpointStore(), dead_letters=letters or Letters(),
        clock_ms=lambda: now, **kwargs,
    ), sink  # fmt: skip


def table(sink: FakeTableSink) -> dict[str, int | None]:
    return {json.loads(k)["pk"]["S"]: int(v["v"]["N"]) for k, v in sink.items("items").items()}


def test_squash_keeps_the_last_change_per_key() -> None:
    records = [change(1, "a", value=1), change(2, "b", value=2), change(3, "a", "REMOVE"),
               change(4, "b", value=4)]  # fmt: skip
    assert [r.sequence_number[-1] for r in squash(records)] == ["3", "4"]


def test_a_batch_is_squashed_written_and_checkpointed() -> None:
    rep, sink = applier(now=T0 + 2000)
    sink.items("items")[key_id({"pk": {"S": "gone"}})] = {"pk": {"S": "gone"}, "v": {"N": "0"}}
    records = [change(i, f"k{i % 40}", value=i, commit_ms=T0 + i) for i in range(1000)]
    records.append(change(1000, "gone", "REMOVE"))
    result = rep.process(SHARD, records, tip_read_at_ms=T0 + 400)
    assert result.status.value == "replicated" and result.acked == 1001
    assert table(sink) == {f"k{k}": 960 + k for k in range(40)}
    c = rep.metrics.counters
    assert c["changes_in"] == 1001 and c["changes_applied"] == 1001 and c["squashed"] == 960
    assert c["write_calls"] == 2 == sink.calls  # 41 distinct keys: 0.002 calls per change
    cp = rep.checkpoints.rows[SHARD]
    assert cp.sequence_number == records[-1].sequence_number and cp.commit_ms == T0 + 999
    assert cp.shard_watermark_ms == T0 + 400 - 11_000  # tip read, minus delay bound and margin
    lag = rep.metrics.snapshot()["apply_lag_ms"]
    assert lag["count"] == 1001 and lag["max"] == 2000 and 1470 <= lag["p50"] <= 1530
    assert rep.metrics.shards[SHARD].commit_lag_ms == 2000 - 999


def test_changes_apply_in_order_across_batches_and_replays_are_idempotent() -> None:
    rep, sink = applier()
    first = [change(1, "a", "INSERT", 1), change(2, "b", "INSERT", 2)]
    second = [change(3, "a", "REMOVE"), change(4, "b", value=5), change(5, "c", "INSERT", 6)]
    for batch in (first, second, first + second):  # the last one: a replay from the start
        rep.process(SHARD, batch)
    assert table(sink) == {"b": 5, "c": 6}


def test_the_gate_holds_every_write_and_the_checkpoint() -> None:
    state = {"value": "copying"}
    gate = BootstrapGate(lambda: state["value"], clock=lambda: 0.0, ttl_s=0.0)
    rep, sink = applier(gate=gate)
    records = [change(1, "a", value=1)]
    result = rep.process(SHARD, records)
    assert result.status.value == "failed" and result.acked == 0
    assert result.failed_from == records[0].sequence_number
    assert result.error == "bootstrap copy in progress"
    assert not rep.idle(SHARD, None, T0)  # no watermark while the target lacks the copy
    assert sink.calls == 0 and rep.checkpoints.rows == {} and rep.metrics.counters["gated_batches"]
    state["value"] = "complete"
    assert rep.process(SHARD, records).status.value == "replicated" and table(sink) == {"a": 1}


def test_bootstrap_gate_caches_and_fails_shut() -> None:
    now = [0.0]
    answers: list = [None, "copying", RuntimeError("throttled"), "complete"]

    def read():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    gate = BootstrapGate(read, clock=lambda: now[0], ttl_s=1.0)
    assert "no bootstrap row" in gate()
    assert "no bootstrap row" in gate() and gate.reads == 1  # cached
    now[0] = 1.0
    assert gate() == "bootstrap copy in progress"
    now[0] = 2.0
    assert "unreadable" in gate()
    assert gate() is None and gate.reads == 4  # a failed read is not cached
    assert BootstrapGate(lambda: None, require_row=False)() is None


def test_a_write_left_unwritten_fails_the_whole_batch() -> None:
    sink = FakeTableSink(unprocessed=lambda r, call: r.key["pk"]["S"] == "b")
    rep, sink = applier(sink)
    records = [change(1, "a", value=1), change(2, "b", value=2), change(3, "c", value=3)]
    result = rep.process(SHARD, records)
    assert result.status.value == "failed" and result.acked == 0
    assert result.failed_from == records[0].sequence_number
    assert "1 requests left unwritten after 3 failed calls" in result.error
    assert rep.checkpoints.rows == {} and rep.metrics.counters["changes_applied"] == 0
    assert rep.metrics.counters["unprocessed_retries"] == 3


def test_unprocessed_and_throttles_are_retried_within_the_batch() -> None:
    sink = FakeTableSink(
        unprocessed=lambda r, call: call == 1 and r.key["pk"]["S"] in ("a", "c"),
        fail_calls={2: RetryableRequestError("slow", "ThrottlingException")},
    )
    rep, sink = applier(sink, backoff=Backoff(base=0.0, max_attempts=5))
    rep.process(SHARD, [change(1, "a", value=1), change(2, "b", value=2), change(3, "c", value=3)])
    assert table(sink) == {"a": 1, "b": 2, "c": 3}
    c = rep.metrics.counters
    assert c["unprocessed_retries"] == 2 and c["throttled_requests"] == 1 and c["write_calls"] == 3


def test_terminal_errors_fail_the_batch() -> None:
    sink = FakeTableSink(fail_calls={1: TerminalRequestError("no table", "ResourceNotFound")})
    rep, _ = applier(sink)
    result = rep.process(SHARD, [change(1, "a", value=1)])
    assert result.status.value == "failed" and "no table" in result.error


def test_poison_items_are_dead_lettered_with_their_data_and_the_rest_applied() -> None:
    letters = Letters()
    sink = FakeTableSink(invalid=lambda r: "nested too deep" if r.key["pk"]["S"] == "p" else None)
    rep, sink = applier(sink, letters=letters)
    records = [change(1, "p", value=1), change(2, "a", value=2), change(3, "p", value=3)]
    result = rep.process(SHARD, records)
    assert result.status.value == "replicated" and table(sink) == {"a": 2}
    (letter,) = letters.letters
    assert letter.record is records[2] and letter.reason == "invalid"
    assert letter.detail == "ValidationException: nested too deep"
    assert rep.metrics.counters["dead_lettered"] == 1
    assert rep.metrics.counters["changes_applied"] == 1  # both changes of p are not applied
    body = to_json(letter)
    assert body["kind"] == "table-change" and body["newImage"]["v"] == {"N": "3"}
    assert body["sourceTable"] == "items" and body["sequenceNumber"] == records[2].sequence_number


def test_a_dead_letter_sink_that_fails_fails_the_batch() -> None:
    sink = FakeTableSink(invalid=lambda r: "bad" if r.key["pk"]["S"] == "p" else None)
    rep, _ = applier(sink, letters=Letters(fail=True))
    result = rep.process(SHARD, [change(1, "p", value=1)])
    assert result.status.value == "failed" and rep.checkpoints.rows == {}


def test_a_change_without_new_image_fails_the_batch_loudly() -> None:
    rep, sink = applier()
    keys_only = ChangeRecord(SHARD, "5", ChangeEvent.MODIFY, {"pk": {"S": "a"}}, None, None)
    result = rep.process(SHARD, [keys_only])
    assert result.status.value == "failed" and "NEW_AND_OLD_IMAGES" in result.error
    assert sink.calls == 0


def fence(lost_after: int | None = None) -> LeaseFence:
    calls = [0]

    def renew(now: int, counter: int):
        calls[0] += 1
        return None if lost_after is not None and calls[0] > lost_after else counter + 1

    return LeaseFence(SHARD, counter=3, expires_at_ms=0, duration_ms=6000, guard_ms=2500,
                      renew=renew, clock_ms=lambda: 0)  # fmt: skip


def test_the_fence_is_checked_before_writes_and_the_checkpoint_carries_its_counter() -> None:
    rep, sink = applier()
    result = rep.process(SHARD, [change(1, "a", value=1)], fence=fence())
    assert result.status.value == "replicated"
    assert rep.checkpoints.rows[SHARD].lease_counter == 4


def test_a_lost_lease_writes_nothing_and_acknowledges_nothing() -> None:
    rep, sink = applier()
    result = rep.process(SHARD, [change(1, "a", value=1)], fence=fence(lost_after=0))
    assert result.status.value == "lease_lost" and result.acked == 0
    assert sink.calls == 0 and rep.checkpoints.rows == {}


def test_idle_writes_a_watermark_and_closed_shards_close() -> None:
    rep, _ = applier()
    assert rep.idle(SHARD, "7", T0, closed=True)
    row = rep.checkpoints.rows[SHARD]
    assert row.closed and row.shard_watermark_ms == T0 - 11_000


def test_write_calls_per_change_under_load_with_distinct_keys() -> None:
    rep, sink = applier(max_in_flight=4)
    for b in range(5):
        rep.process(SHARD, [change(b * 1000 + i, f"k{b}-{i}", value=i) for i in range(1000)])
    c = rep.metrics.counters
    assert c["write_calls"] / c["changes_in"] == 0.04 and len(table(sink)) == 5000
    rep.close()


def test_change_record_from_get_records_and_lambda_forms() -> None:
    stamp = "2021-11-10T00:48:30.123Z"
    body = {
        "Keys": {"pk": {"S": "42"}},
        "NewImage": {"pk": {"S": "42"}, "commitTimestamp": {"S": stamp}},
        "OldImage": {"pk": {"S": "42"}},
        "SequenceNumber": "300000000000000499659",
    }
    got = ChangeRecord.from_stream_record(
        "s-1",
        {"eventName": "MODIFY", "eventID": "e1", "dynamodb": {
            **body, "ApproximateCreationDateTime": dt.datetime(2021, 11, 10, tzinfo=dt.UTC)}},
    )  # fmt: skip
    assert got.event is ChangeEvent.MODIFY and got.sequence_int == 300000000000000499659
    assert got.commit_ms == 1636505310123 and got.approximate_ms == 1636502400000
    raw = base64.b64encode(b"\x00\x01").decode()
    lam = ChangeRecord.from_lambda_record(
        {"eventName": "INSERT", "dynamodb": {
            **body, "NewImage": {"pk": {"S": "42"}, "b": {"B": raw}, "m": {"M": {"x": {"BS": [raw]}}},
                                 "commitTimestamp": {"N": "1636505310123"}},
            "ApproximateCreationDateTime": 1636502400.0}},
    )  # fmt: skip
    assert lam.shard_id == LAMBDA_SHARD and lam.new_image["b"] == {"B": b"\x00\x01"}
    assert lam.new_image["m"]["M"]["x"] == {"BS": [b"\x00\x01"]}
    assert lam.commit_ms == 1636505310123 and lam.approximate_ms == 1636502400000
    with pytest.raises(ValueError, match="not a DynamoDB stream record"):
        ChangeRecord.from_lambda_record({"eventName": "INSERT"})


def test_lag_histogram_percentiles_within_two_percent_in_bounded_memory() -> None:
    h = LagHistogram()
    for v in range(1, 100_001):
        h.add(v)
    h.add(-5)
    s = h.summary()
    assert s["count"] == 100_001 and s["max"] == 100_000 and h.negative == 1
    for q, true in (("p50", 50_000), ("p90", 90_000), ("p99", 99_000)):
        assert true * 0.98 <= s[q] <= true * 1.02
    assert len(h._buckets) < 700
    assert LagHistogram().summary() == {"count": 0, "p50": None, "p90": None, "p99": None,
                                        "max": None}  # fmt: skip


def test_changes_older_than_the_copy_are_acknowledged_without_a_write() -> None:
    """The replay from TRIM_HORIZON skips what the completed copy already holds: changes
    created before its start, less a second of rounding and the clock skew."""
    from replicator.core.table_apply import copy_cutoff_ms

    rep, sink = applier()
    cutoff = copy_cutoff_ms(T0 + 1500 + 10, 500)  # == T0 + 10
    rep.covered_before = lambda: cutoff
    sink.items("items")[key_id({"pk": {"S": "a"}})] = {"pk": {"S": "a"}, "v": {"N": "5"}}  # copied
    records = [change(i, "a", value=i) for i in range(1, 6)]  # before the copy: in it
    records += [change(20, "b", value=20), change(21, "a", value=21)]  # after: applied
    result = rep.process(SHARD, records)
    assert result.acked == len(records) and result.checkpoint.sequence_number == str(10**20 + 21)
    assert table(sink) == {"a": 21, "b": 20}
    counters = rep.metrics.counters
    assert counters["changes_in_copy"] == 5 and counters["changes_applied"] == 2
    assert rep.metrics.snapshot()["apply_lag_ms"]["count"] == 2
    # A batch wholly older than the copy: checkpointed, nothing written.
    calls = sink.calls
    old = rep.process(SHARD, [change(i, "c", value=i) for i in range(6, 9)])
    assert old.acked == 3 and sink.calls == calls and "c" not in table(sink)
