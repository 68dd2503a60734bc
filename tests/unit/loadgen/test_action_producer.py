"""The action log's producer over the scripted PutRecords sink: every record is an action of
:mod:`xrh.action_log`'s format, routed by its keys' block, weighted by ``--ops``, and ledgered
with its op, first key and trace, in per-key order even when part of a request fails."""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from loadgen.actions import (
    COUNTER_ATTRIBUTE,
    MAX_ADD,
    ActionRecords,
    action_producer,
    parse_action_ops,
)
from loadgen.errors import LoadgenUsageError
from loadgen.keyspace import KeyspaceSpec
from loadgen.ledger import LedgerWriter
from loadgen.producers import ProducerSettings
from loadgen.templates import DEFAULT_TEMPLATE, compile_template
from replicator.core.fakes import ScriptedSink
from xrh.action_log import KEY_GROUP_SIZE, action_partition_key, is_bookkeeping, parse_action
from xrh.contracts import parse_iso_ms

T0 = 1_700_000_000.0
RICH = ('{"key": {{key}}, "name": "{{name.firstName}}", "score": {{random.number(100)}}, '
        '"counter": "not a number", "xrh_applied": 1, "pk": "template\'s", '
        '"commitTimestamp": "{{date.utc("YYYY-MM-DDTHH:mm:ss.SSS[Z]")}}"}')  # fmt: skip


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def records(template: str = DEFAULT_TEMPLATE, *, keys: int = 1000, seed: int = 1,
            ops=None) -> ActionRecords:  # fmt: skip
    rng = random.Random(seed)
    renderer = compile_template(template).bind(rng=rng, producer="p1")
    keyspace = KeyspaceSpec(size=keys).build(rng)
    return ActionRecords(renderer, keyspace, rng, ops or parse_action_ops(None))


def make(tmp_path: Path, sink, *, keys: int = 1000, batch: int = 50, ops: str | None = None):
    clock = Clock()
    rng = random.Random(3)
    writer = LedgerWriter(tmp_path / "ledger.sqlite")
    producer = action_producer(
        "run/p1", compile_template(DEFAULT_TEMPLATE).bind(rng=rng, producer="run/p1"),
        KeyspaceSpec(size=keys).build(rng), sink, writer,
        ProducerSettings("x-actions", "us-east-1", pipeline="action-log", batch_size=batch,
                         linger_s=0.5),
        rng, parse_action_ops(ops), clock=clock, sleep=clock.sleep, random=lambda: 0.5,
    )  # fmt: skip
    return producer, writer


def ledger_rows(path: Path) -> list[dict]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM ledger ORDER BY rowid")]
    finally:
        db.close()


def test_every_record_is_an_action_with_the_block_partition_key_and_its_ref():
    build = records(RICH)
    seen = Counter()
    for seq in range(1, 2001):
        trace = f"p1-{seq:09d}"
        entry = build(seq, trace, int(T0 * 1000) + seq)
        action = parse_action(entry.data)
        seen[action.action] += 1
        ref = entry.ref
        assert (ref.trace, ref.seq, ref.op) == (trace, seq, action.ledger_op)
        assert action.trace == trace and action.commit_ts is not None
        assert ref.commit_ts == parse_iso_ms(action.commit_ts)
        first = int(action.ops[0].pk)
        assert ref.key == str(first)
        for op in action.ops:  # every key the action touches has the record's partition key
            assert action_partition_key(int(op.pk)) == entry.partition_key
            assert 0 <= int(op.pk) < 1000
        for op in action.ops:
            attrs = op.item if op.kind == "put" else op.set if op.kind == "update" else {}
            if op.kind == "delete":
                assert op.item is None and not op.set and not op.add
                continue
            # the action's trace and time on every item it writes; the template's reserved
            # and bookkeeping attributes never written
            assert attrs["trace"] == trace and attrs["commitTimestamp"] == action.commit_ts
            assert COUNTER_ATTRIBUTE not in attrs and not any(map(is_bookkeeping, attrs))
            if op.kind == "put":
                assert op.item["pk"] == op.pk and op.item["key"] == int(op.pk)
                assert set(op.item) >= {"name", "score"}
        if action.action == "UpdateItem":
            (op,) = action.ops
            assert set(op.add) == {COUNTER_ATTRIBUTE}
            assert 1 <= op.add[COUNTER_ATTRIBUTE] <= MAX_ADD
    assert set(seen) == {"PutItem", "UpdateItem", "DeleteItem", "BatchWrite"}


def test_batch_writes_take_distinct_keys_of_the_first_keys_block():
    build = records(keys=10_000, ops=parse_action_ops("batch=1,put=3,delete=1"))
    sizes, kinds = Counter(), Counter()
    for seq in range(1, 5001):
        entry = build(seq, f"t-{seq}", int(T0 * 1000))
        action = parse_action(entry.data)
        if action.action != "BatchWrite":
            continue
        keys = [int(op.pk) for op in action.ops]
        assert len(set(keys)) == len(keys) and 2 <= len(keys) <= 25
        assert {k // KEY_GROUP_SIZE for k in keys} == {keys[0] // KEY_GROUP_SIZE}
        assert entry.ref.key == str(keys[0]) and entry.ref.op == "batch"
        sizes[len(keys)] += 1
        kinds.update(op.kind for op in action.ops)
    assert sum(sizes.values()) > 800
    assert min(sizes) == 2 and max(sizes) == 25  # the whole range is drawn
    # puts and deletes in the ratio of their --ops weights (3:1)
    assert 2.5 < kinds["put"] / kinds["delete"] < 3.5, kinds


def test_batch_keys_stay_inside_a_small_keyspace():
    """A keyspace ending inside a block: the batch takes only keys that exist, and a block of
    one key gives a batch of one (still a valid BatchWrite)."""
    build = records(keys=26, ops=parse_action_ops("batch=1"))
    firsts = set()
    for seq in range(1, 500):
        action = parse_action(build(seq, f"t-{seq}", int(T0 * 1000)).data)
        keys = [int(op.pk) for op in action.ops]
        assert all(0 <= k < 26 for k in keys)
        assert (len(keys) == 1) if keys[0] == 25 else (len(keys) >= 2)
        firsts.add(keys[0] == 25)
    assert firsts == {True, False}


def test_op_weights_are_roughly_respected():
    build = records(ops=parse_action_ops("put=50,update=20,delete=20,batch=10"))
    n = 20_000
    got = Counter(build(s, f"t-{s}", int(T0 * 1000)).ref.op for s in range(n))
    for op, share in (("put", 0.5), ("update", 0.2), ("delete", 0.2), ("batch", 0.1)):
        assert abs(got[op] / n - share) < 0.02, got
    only = records(ops=parse_action_ops("update=1,put=0"))
    assert {only(s, f"t-{s}", 0).ref.op for s in range(200)} == {"update"}


def test_template_without_commit_timestamp_stamps_the_actions_time():
    build = records('{"key": {{key}}, "v": {{random.number(9)}}}')
    now_ms = int(T0 * 1000) + 123
    entry = build(1, "t-1", now_ms)
    action = parse_action(entry.data)
    assert action.commit_ts == "2023-11-14T22:13:20.123Z" and entry.ref.commit_ts == now_ms


def test_a_seed_repeats_the_actions():
    a, b = records(RICH, seed=9), records(RICH, seed=9)
    assert [a(s, f"t{s}", 5).data for s in range(300)] == [
        b(s, f"t{s}", 5).data for s in range(300)
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("merge=1", "unknown operation 'merge'; choose from put, update, delete, batch"),
        ("batch", "'batch' is not OP=WEIGHT (e.g. put=40,update=40,delete=10,batch=10)"),
        ("batch=0", "at least one weight must be above 0"),
    ],
)
def test_action_ops_errors_name_the_value(text, message):
    with pytest.raises(LoadgenUsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_action_ops(text)


def test_every_action_is_ledgered_with_its_op_first_key_and_trace(tmp_path):
    sink = ScriptedSink()
    producer, writer = make(tmp_path, sink)
    producer.add(300)
    producer.close()
    rows = ledger_rows(writer.close().path)
    assert len(rows) == 300 and producer.stats.acknowledged == 300
    stored = {r.entry.ref.trace: r for r in sink.records}
    assert len(stored) == 300
    for row in rows:
        record = stored[row["trace"]]
        action = parse_action(record.entry.data)
        assert (row["pipeline"], row["target"], row["region"]) == (
            "action-log", "x-actions", "us-east-1")  # fmt: skip
        assert row["status"] == "ok" and row["attempt"] == 1
        assert row["op"] == action.ledger_op and row["trace"] == action.trace
        assert row["key"] == action.ops[0].pk
        assert row["partition_key"] == action_partition_key(int(row["key"]))
        assert row["partition_key"] == record.entry.partition_key
        assert (row["shard_id"], row["sequence_number"]) == (
            record.shard_id, record.sequence_number)  # fmt: skip
        assert row["commit_ts"] == parse_iso_ms(action.commit_ts)
    assert {r["op"] for r in rows} == {"put", "update", "delete", "batch"}


def test_partial_failure_keeps_each_keys_actions_in_order(tmp_path):
    """Entries fail in the first request: each is sent again, with every later action of its
    partition key after it, so every key's actions reach the stream (last copies) in trace
    order, and the ledger says fail then ok for the failed ones."""
    sink = ScriptedSink().fail_entries(1, [0, 3, 7, 20])
    producer, writer = make(tmp_path, sink, keys=60)  # 3 blocks: partition keys repeat a lot
    producer.add(50)
    producer.flush()
    producer.close()
    rows = ledger_rows(writer.close().path)
    failed = {r["trace"] for r in rows if r["status"] == "fail"}
    assert len(failed) == 4
    for trace in failed:
        assert any(r["trace"] == trace and r["status"] == "ok" and r["attempt"] == 2
                   for r in rows)  # fmt: skip
    assert {r["trace"] for r in rows if r["status"] == "ok"} == {
        f"run/p1-{i:09d}" for i in range(1, 51)}  # fmt: skip
    assert len(sink.calls) >= 2
    # per partition key, the last copy of each action is in trace (= production) order
    for refs in sink.refs_by_key().values():
        last = {ref.trace: i for i, ref in enumerate(refs)}
        assert sorted(last, key=last.get) == sorted(last)
        # and each key (inside an action) sees its actions in that order too
    by_key: dict[str, list[str]] = {}
    for record in sink.records:
        for op in parse_action(record.entry.data).ops:
            by_key.setdefault(op.pk, []).append(record.entry.ref.trace)
    for traces in by_key.values():
        last = {t: i for i, t in enumerate(traces)}
        assert sorted(last, key=last.get) == sorted(last)


def test_records_over_the_limit_are_ledgered_not_sent(tmp_path):
    """A template rendering items too big for one record: the action is never sent and gets
    one ``fail`` row saying why (nothing is dropped silently)."""
    from replicator.core.putrecords import Limits

    rng = random.Random(1)
    big = '{"key": {{key}}, "blob": "' + "x" * 3000 + '"}'
    writer = LedgerWriter(tmp_path / "ledger.sqlite")
    sink = ScriptedSink()
    producer = action_producer(
        "p", compile_template(big).bind(rng=rng), KeyspaceSpec(size=100).build(rng), sink,
        writer, ProducerSettings("s", "r", pipeline="action-log", batch_size=10,
                                 limits=Limits(max_record_bytes=8000)),
        rng, parse_action_ops("batch=1"),
    )  # fmt: skip
    producer.add(5)
    producer.close()
    rows = ledger_rows(writer.close().path)
    assert len(rows) == 5 and {r["status"] for r in rows} == {"fail"}
    assert all(r["op"] == "batch" and "not sent" in r["error"] for r in rows)
    assert not sink.records


def test_actions_are_json_objects_in_the_seed_shape():
    entry = records()(1, "t-1", int(T0 * 1000))
    doc = json.loads(entry.data)
    assert list(doc) == ["Action", "Data", "trace", "commitTimestamp"]
