"""Producers write every attempt to the ledger: ok / fail / unknown, against a scripted sink."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from loadgen.keyspace import KeyspaceSpec
from loadgen.ledger import LedgerCollector, LedgerForwarder, LedgerWriter
from loadgen.producers import Pacer, Producer, ProducerSettings, step
from loadgen.templates import DEFAULT_TEMPLATE, compile_template
from replicator.core.fakes import ScriptedSink
from replicator.errors import RetryableRequestError
from xrh.contracts import parse_iso_ms


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def make(tmp_path: Path, sink, *, keys: int = 3, batch: int = 10, pid: str = "p1", writer=None):
    clock = Clock()
    writer = writer or LedgerWriter(tmp_path / "ledger.sqlite")
    producer = Producer(
        pid,
        compile_template(DEFAULT_TEMPLATE).bind(rng=random.Random(1), producer=pid),
        KeyspaceSpec(size=keys).build(random.Random(2)),
        sink,
        writer,
        ProducerSettings("s", "us-east-1", batch_size=batch, linger_s=0.5),
        clock=clock,
        sleep=clock.sleep,
        random=lambda: 0.5,
    )
    return producer, writer, clock


def rows(path: Path) -> list[dict]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM ledger ORDER BY rowid")]
    finally:
        db.close()


def meta(path: Path) -> str | None:
    db = sqlite3.connect(path)
    try:
        got = db.execute("SELECT value FROM ledger_meta WHERE name='complete'").fetchone()
        return got[0] if got else None
    finally:
        db.close()


def test_ok_rows_carry_shard_sequence_and_commit_ts(tmp_path):
    sink = ScriptedSink()
    producer, writer, clock = make(tmp_path, sink)
    producer.add(5)
    producer.close()
    summary = writer.close()
    got = rows(summary.path)
    assert summary.complete and meta(summary.path) == "1"
    assert [r["trace"] for r in got] == [f"p1-{i:09d}" for i in range(1, 6)]
    assert [r["seq"] for r in got] == [1, 2, 3, 4, 5]
    stored = {r.entry.ref.trace: r for r in sink.records}
    for r in got:
        assert r["status"] == "ok" and r["attempt"] == 1
        assert r["shard_id"] == stored[r["trace"]].shard_id
        assert r["sequence_number"] == stored[r["trace"]].sequence_number
        assert r["partition_key"] == r["key"]
        assert r["commit_ts"] == int(clock.t * 1000)
        payload = stored[r["trace"]].entry.data.decode()
        assert parse_iso_ms(payload.split('"commitTimestamp": "')[1][:24]) == r["commit_ts"]


def test_ok_rows_fill_every_column_with_each_requests_own_times(tmp_path):
    """The inlined ok-row path writes the same columns as the general one, and the per-request
    time cache does not leak one request's times into the next."""
    sink = ScriptedSink()
    producer, writer, clock = make(tmp_path, sink, batch=2)
    producer.add(2)
    producer.flush()
    clock.t += 1.5
    producer.add(2)
    producer.flush()
    producer.close()
    got = rows(writer.close().path)
    assert len(got) == 4
    for r in got:
        assert (r["producer"], r["pipeline"], r["region"], r["target"], r["op"]) == (
            "p1", "kinesis", "us-east-1", "s", "put"
        )  # fmt: skip
        assert r["error"] is None and r["key"] == r["partition_key"]
    t0 = int(1_700_000_000.0 * 1000)
    assert [(r["invoked_at"], r["completed_at"]) for r in got] == [(t0, t0)] * 2 + [
        (t0 + 1500, t0 + 1500)
    ] * 2


def test_partial_failure_fails_then_retries_and_keeps_key_order(tmp_path):
    sink = ScriptedSink().fail_entries(1, [1])
    producer, writer, _ = make(tmp_path, sink, keys=1)
    producer.add(4)
    producer.flush()
    producer.close()
    got = rows(writer.close().path)
    by = [(r["trace"][-1], r["attempt"], r["status"]) for r in got]
    assert ("2", 1, "fail") in by and ("2", 2, "ok") in by
    # the stream holds the key's records in trace order after the last failure
    order = [r.entry.ref.trace for r in sink.records]
    last = {t: i for i, t in enumerate(order)}
    assert sorted(last, key=last.get) == sorted(last)


def test_unknown_outcome_is_recorded_and_not_resent(tmp_path):
    sink = ScriptedSink().time_out_call(1, applied=True)
    producer, writer, _ = make(tmp_path, sink)
    producer.add(3)
    producer.close()
    got = rows(writer.close().path)
    assert [r["status"] for r in got] == ["unknown"] * 3
    assert all("ReadTimeout" in r["error"] for r in got)
    assert len(sink.calls) == 1 and producer.stats.unknown == 3


def test_requests_that_keep_failing_end_fail_and_unsent_entries_get_a_row(tmp_path):
    sink = ScriptedSink()
    for call in range(1, 20):
        sink.fail_call(call, RetryableRequestError("slow down", "ThrottlingException"))
    producer, writer, _ = make(tmp_path, sink, batch=2)
    producer.add(3)
    producer.flush()
    producer.close()
    got = rows(writer.close().path)
    statuses = {r["status"] for r in got}
    assert statuses == {"fail"}
    traces = {r["trace"] for r in got}
    assert traces == {"p1-000000001", "p1-000000002", "p1-000000003"}
    assert producer.stats.acknowledged == 0 and producer.stats.failed == 3


def test_interrupted_request_records_unknown(tmp_path):
    class Boom:
        def put_records(self, stream, entries):
            raise KeyboardInterrupt

    producer, writer, _ = make(tmp_path, Boom())
    producer.add(2)
    with pytest.raises(KeyboardInterrupt):
        producer.flush()
    got = rows(writer.close(clean=False).path)
    assert [(r["status"], r["error"][:11]) for r in got] == [("unknown", "interrupted")] * 2


def test_ledger_is_incomplete_without_every_final_batch(tmp_path):
    writer = LedgerWriter(tmp_path / "ledger.sqlite")
    a, _, _ = make(tmp_path, ScriptedSink(), pid="a", writer=writer)
    b, _, _ = make(tmp_path, ScriptedSink(), pid="b", writer=writer)
    a.add(1)
    a.close()
    b.add(1)
    b.flush()  # b never closes: its final batch is missing
    summary = writer.close()
    assert not summary.complete and summary.missing == ("b",)
    assert meta(summary.path) == "0"


def test_unclean_close_is_never_complete(tmp_path):
    writer = LedgerWriter(tmp_path / "ledger.sqlite")
    assert not writer.close(clean=False).complete
    assert meta(tmp_path / "ledger.sqlite") == "0"


def test_forwarder_and_collector_complete_only_with_every_worker(tmp_path):
    writer = LedgerWriter(tmp_path / "ledger.sqlite")
    collector = LedgerCollector(writer)
    collector.expect(["w1", "w2"])
    fw1 = LedgerForwarder("w1", collector.on_message, max_rows=2)
    fw2 = LedgerForwarder("w2", collector.on_message, max_rows=2)
    p1, _, _ = make(tmp_path, ScriptedSink(), pid="w1u1", writer=fw1)
    p2, _, _ = make(tmp_path, ScriptedSink(), pid="w2u1", writer=fw2)
    p1.add(5)
    p1.close()
    p2.add(3)
    p2.close()
    fw1.close()
    assert collector.missing == {"w2"}
    assert not collector.wait(0.3, sleep=lambda s: None)
    fw2.close()
    assert collector.wait(1)
    summary = writer.close(clean=True)
    assert summary.complete and summary.rows == 8


def test_collector_notices_lost_messages(tmp_path):
    writer = LedgerWriter(tmp_path / "ledger.sqlite")
    collector = LedgerCollector(writer)
    collector.expect(["w1"])
    dropped = []
    fw = LedgerForwarder(
        "w1", lambda d: dropped.append(d) if not dropped else collector.on_message(d), max_rows=1
    )
    p, _, _ = make(tmp_path, ScriptedSink(), pid="w1u1", writer=fw)
    p.add(2)
    p.close()
    fw.close()
    assert not collector.wait(0.2, sleep=lambda s: None) and collector.problems
    writer.close(clean=False)


def test_pacer_and_step_hold_a_constant_rate(tmp_path):
    sink = ScriptedSink()
    producer, writer, clock = make(tmp_path, sink, batch=50)
    pacer = Pacer(200.0, clock=clock)
    for _ in range(10_000):
        if clock.t - 1_700_000_000.0 >= 10:
            break
        clock.sleep(max(step(producer, pacer), 0.001))
    producer.close()
    writer.close()
    assert abs(producer.stats.records - 2000) <= 60
    assert max(len(c) for c in sink.calls) <= 50
