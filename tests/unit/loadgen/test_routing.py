"""Producers follow the active region: a failover switches where the next request goes, a
request's retries stay in the region it began in, and its ledger rows name that region."""

from __future__ import annotations

import random
import sqlite3

from loadgen.keyspace import KeyspaceSpec
from loadgen.ledger import LedgerWriter
from loadgen.producers import Producer, ProducerSettings
from loadgen.routing import RoutedSink, WriteTarget
from loadgen.templates import DEFAULT_TEMPLATE, compile_template
from replicator.core.fakes import ScriptedSink
from xrh.config import Side, parse_config


def producer(tmp_path, sinks, target):
    routed = RoutedSink(sinks, target)
    writer = LedgerWriter(tmp_path / "ledger.sqlite")
    return Producer(
        "p1", compile_template(DEFAULT_TEMPLATE).bind(rng=random.Random(1), producer="p1"),
        KeyspaceSpec(size=3).build(random.Random(2)), routed, writer,
        ProducerSettings("s", "us-east-1", batch_size=5, linger_s=0.5),
        sleep=lambda s: None, random=lambda: 0.5, route=routed.pin,
    ), writer  # fmt: skip


def test_a_failover_moves_the_next_request_and_the_ledger_names_the_region(tmp_path):
    target = WriteTarget(parse_config([], environ={}))
    a, b = ScriptedSink(), ScriptedSink()
    p, writer = producer(tmp_path, {Side.A: a, Side.B: b}, target)
    p.add(5)
    p.flush()
    target.switch(Side.B)
    p.add(5)
    p.flush()
    p.close()
    writer.close()
    assert len(a.records) == 5 and len(b.records) == 5
    regions = (
        sqlite3.connect(tmp_path / "ledger.sqlite")
        .execute("SELECT region, COUNT(*) FROM ledger GROUP BY region ORDER BY region")
        .fetchall()
    )
    assert regions == [("us-east-1", 5), ("us-east-2", 5)]


def test_retries_stay_in_the_region_the_request_began_in(tmp_path):
    target = WriteTarget(parse_config([], environ={}))
    b = ScriptedSink()

    class SwitchOnFirstCall(ScriptedSink):
        def put_records(self, stream, entries):
            target.switch(Side.B)  # a failover lands while this request is in flight
            return super().put_records(stream, entries)

    a = SwitchOnFirstCall().fail_entries(1, {0: "ProvisionedThroughputExceededException"})
    p, writer = producer(tmp_path, {Side.A: a, Side.B: b}, target)
    p.add(5)
    p.flush()
    p.close()
    writer.close()
    assert len(a.calls) == 2 and not b.calls  # the retry went to A, where the request began
    assert {r.entry.ref.trace for r in a.records} == {f"p1-{i:09d}" for i in range(1, 6)}
