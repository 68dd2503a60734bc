"""Stopping a producer never cuts a request: ProducerLoop, Producer.close, TimedSink.

Plain threads and events (no locust, no gevent patching in this process); the same loop runs
under Locust with a gevent event (see test_locust_stop.py for the real runner).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from loadgen.keyspace import KeyspaceSpec
from loadgen.kinesis_sink import RequestCutOff, TimedSink
from loadgen.ledger import LedgerWriter
from loadgen.producers import Pacer, Producer, ProducerLoop, ProducerSettings
from loadgen.templates import DEFAULT_TEMPLATE, compile_template
from replicator.core.fakes import ScriptedSink
from replicator.errors import RetryableRequestError

BOUND_S = 5.0  # every wait in these tests; a stuck test fails instead of hanging


class GatedSink:
    """A ScriptedSink whose requests block until ``release`` is set (a request in flight)."""

    def __init__(self) -> None:
        self.inner = ScriptedSink()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def put_records(self, stream, entries):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(BOUND_S), "the test never released the request"
        return self.inner.put_records(stream, entries)


class InterruptingSink:
    """Raises ``exc`` (a BaseException, as a killed greenlet sees GreenletExit) on ``call``."""

    def __init__(self, call: int, exc: BaseException) -> None:
        self.inner = ScriptedSink()
        self.call, self.exc, self.calls = call, exc, 0

    def put_records(self, stream, entries):
        self.calls += 1
        if self.calls == self.call:
            raise self.exc
        return self.inner.put_records(stream, entries)


def producer(tmp_path: Path, sink, *, batch: int = 500, linger: float = 0.2):
    writer = LedgerWriter(tmp_path / "ledger.sqlite")
    p = Producer(
        "p1",
        compile_template(DEFAULT_TEMPLATE).bind(rng=random.Random(1), producer="p1"),
        KeyspaceSpec(size=20).build(random.Random(2)),
        sink,
        writer,
        ProducerSettings("s", "us-east-1", batch_size=batch, linger_s=linger),
    )
    return p, writer


def ledger(writer: LedgerWriter) -> tuple[list[tuple[str, str | None]], str | None]:
    summary = writer.close()
    db = sqlite3.connect(summary.path)
    try:
        rows = db.execute("SELECT status, error FROM ledger ORDER BY rowid").fetchall()
        complete = db.execute("SELECT value FROM ledger_meta WHERE name='complete'").fetchone()
    finally:
        db.close()
    return rows, complete[0] if complete else None


def run_in_thread(fn):
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def test_a_waiting_loop_stops_at_once_without_a_request(tmp_path):
    sink = ScriptedSink()
    p, writer = producer(tmp_path, sink)
    loop = ProducerLoop(p, Pacer(1.0))  # one record per second: long waits between turns
    assert loop.turn() is True  # took what was due, now waits for the next record
    thread, result = run_in_thread(loop.turn)
    time.sleep(0.1)
    assert thread.is_alive()  # waiting
    started = time.monotonic()
    loop.request_stop()
    thread.join(BOUND_S)
    assert not thread.is_alive()
    assert time.monotonic() - started < 0.5  # woken, not timed out
    assert result == {"value": False}
    assert loop.turn() is False  # no turn starts after a stop
    calls_before_close = len(sink.calls)
    loop.close()
    assert len(sink.calls) == calls_before_close + (1 if p.stats.records else 0)
    rows, complete = ledger(writer)
    assert {status for status, _ in rows} <= {"ok"}
    assert len(rows) == p.stats.records
    assert complete == "1"


def test_a_stop_during_a_request_lets_it_finish_then_no_new_request(tmp_path):
    sink = GatedSink()
    p, writer = producer(tmp_path, sink, batch=5)
    loop = ProducerLoop(p, Pacer(None))  # as fast as possible: every turn sends a full batch
    thread, result = run_in_thread(loop.turn)
    assert sink.entered.wait(BOUND_S)  # the request is in flight
    loop.request_stop()
    time.sleep(0.05)
    assert thread.is_alive()  # the stop does not cut it off
    sink.release.set()
    thread.join(BOUND_S)
    assert result == {"value": True}  # the turn finished, request included
    assert loop.turn() is False
    assert sink.calls == 1
    loop.close()
    assert sink.calls == 1  # nothing was buffered: no final request
    rows, complete = ledger(writer)
    assert rows == [("ok", None)] * 5
    assert complete == "1"


def test_close_sends_the_final_batch(tmp_path):
    sink = ScriptedSink()
    p, writer = producer(tmp_path, sink, batch=50, linger=60.0)
    loop = ProducerLoop(p, Pacer(None))
    p.add(7)  # buffered, not yet due
    loop.request_stop()
    assert loop.turn() is False
    loop.close()
    loop.close()  # idempotent
    assert [len(c) for c in sink.calls] == [7]
    rows, complete = ledger(writer)
    assert rows == [("ok", None)] * 7
    assert complete == "1"


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit()])
def test_after_a_request_is_cut_off_nothing_more_is_sent(tmp_path, exc):
    """The stop timeout ended with a request in flight (a hanging endpoint): its records are
    unknown, and close() must not send again (it would hang too): the rest is 'not sent'."""
    sink = InterruptingSink(2, exc)
    p, writer = producer(tmp_path, sink, batch=4)
    p.add(4)
    p.flush()  # call 1: ok
    p.add(10)  # three batches of 4, 4, 2
    with pytest.raises(type(exc)):
        p.flush()  # call 2 is cut off
    assert p.interrupted
    p.close()
    assert sink.calls == 2  # the remaining 6 records were never sent
    rows, complete = ledger(writer)
    assert [s for s, _ in rows[:4]] == ["ok"] * 4
    assert rows[4:8] == [("unknown", "interrupted: the run stopped during the request")] * 4
    assert rows[8:] == [("fail", "not sent: the run stopped before it was sent")] * 6
    assert complete == "1"
    assert p.stats.unknown == 4 and p.stats.failed == 6


def test_close_cut_off_during_the_final_batch_still_declares_it(tmp_path):
    sink = InterruptingSink(1, KeyboardInterrupt())
    p, writer = producer(tmp_path, sink, batch=3)
    p.add(5)
    with pytest.raises(KeyboardInterrupt):
        p.close()
    assert p.closed
    rows, complete = ledger(writer)
    assert (
        rows
        == [("unknown", "interrupted: the run stopped during the request")] * 3
        + [("fail", "not sent: the run stopped before it was sent")] * 2
    )
    assert complete == "1"


def test_timed_sink_reports_a_cut_off_request_as_such_never_as_the_signal():
    reports = []
    timed = TimedSink(InterruptingSink(1, KeyboardInterrupt()), lambda *a: reports.append(a))
    with pytest.raises(KeyboardInterrupt):  # the interruption itself still propagates
        timed.put_records("s", [object()] * 3)  # type: ignore[list-item]
    ((ms, n, results, exc),) = reports
    assert (n, results) == (3, None)
    assert isinstance(exc, RequestCutOff) and exc.ms == ms >= 0
    assert "cut off as the run stopped" in str(exc)


def test_timed_sink_reports_a_request_error_as_it_is():
    class Failing:
        def put_records(self, stream, entries):
            raise RetryableRequestError("connection refused")

    reports = []
    with pytest.raises(RetryableRequestError):
        TimedSink(Failing(), lambda *a: reports.append(a)).put_records("s", [])
    assert isinstance(reports[0][3], RetryableRequestError)
