"""BatchWriteItem engine against a scripted sink: chunking, unprocessed items, throttling,
invalid items bisected to dead letters, the attempt bound, the guard, concurrency."""

from __future__ import annotations

import random
import threading

import pytest

from replicator.core.putrecords import Backoff
from replicator.core.table_fakes import FakeTableSink, refusing
from replicator.core.table_writes import (
    BatchWriter,
    UnprocessedLeftError,
    WriteRequest,
    item_size,
    key_id,
)
from replicator.errors import (
    LeaseLost,
    RetryableRequestError,
    TerminalRequestError,
    UnknownOutcomeError,
)


def put(i: int, **extra) -> WriteRequest:
    item = {"pk": {"S": str(i)}, "v": {"N": str(i)}, **extra}
    return WriteRequest({"pk": {"S": str(i)}}, item, ref=i)


def delete(i: int) -> WriteRequest:
    return WriteRequest({"pk": {"S": str(i)}}, None, ref=i)


def writer(sink: FakeTableSink, **kwargs) -> tuple[BatchWriter, list[float]]:
    sleeps: list[float] = []
    kwargs.setdefault("backoff", Backoff(base=0.1, cap=1.0, max_attempts=5))
    kwargs.setdefault("max_in_flight", 1)
    return BatchWriter(sink, "t", sleep=sleeps.append, random=lambda: 1.0, **kwargs), sleeps


def test_chunks_of_25_puts_and_deletes() -> None:
    sink = FakeTableSink()
    sink.items("t")[key_id({"pk": {"S": "999"}})] = {"pk": {"S": "999"}}
    w, sleeps = writer(sink)
    report = w.write([put(i) for i in range(60)] + [delete(999)])
    assert report.complete and report.written == 61 and report.calls == 3 == sink.calls
    assert [len(b) for b in sink.batches] == [25, 25, 11]
    assert len(sink.items("t")) == 60 and sleeps == []
    assert report.dead == [] and report.error is None


def test_duplicate_keys_are_refused_before_anything_is_sent() -> None:
    sink = FakeTableSink()
    w, _ = writer(sink)
    with pytest.raises(ValueError, match="appears twice"):
        w.write([put(1), put(2), delete(1)])
    assert sink.calls == 0


def test_only_unprocessed_requests_are_sent_again_with_backoff() -> None:
    # calls 1 and 2 leave every odd key unprocessed; call 3 takes everything
    sink = FakeTableSink(unprocessed=lambda r, call: call < 3 and r.ref % 2 == 1)
    w, sleeps = writer(sink)
    report = w.write([put(i) for i in range(10)])
    assert report.complete and report.written == 10 and report.calls == 3
    assert report.unprocessed_retries == 10  # 5 after call 1, 5 after call 2
    assert [len(b) for b in sink.batches] == [10, 5, 5]
    assert sleeps == [0.1, 0.2]  # full jitter at random()=1.0: base * 2**(n-1)


def test_unprocessed_beyond_the_bound_are_left_unwritten_and_counted() -> None:
    sink = FakeTableSink(unprocessed=lambda r, call: r.ref in (3, 4))
    w, _ = writer(sink, backoff=Backoff(base=0.01, max_attempts=3))
    report = w.write([put(i) for i in range(10)])
    assert not report.complete and report.written == 8
    assert sorted(r.ref for r in report.unwritten) == [3, 4]
    assert isinstance(report.error, UnprocessedLeftError)
    assert "2 requests left unwritten after 3 failed calls" in str(report.error)
    with pytest.raises(UnprocessedLeftError):
        report.raise_if_incomplete()


def test_throttles_and_unknown_outcomes_are_retried() -> None:
    sink = FakeTableSink(
        fail_calls={
            1: RetryableRequestError("slow down", "ProvisionedThroughputExceededException"),
            2: UnknownOutcomeError("read timeout", "ReadTimeoutError"),
        }
    )
    w, sleeps = writer(sink)
    report = w.write([put(i) for i in range(5)])
    assert report.complete and report.written == 5 and report.throttles == 2
    assert report.calls == 3 and sleeps == [0.1, 0.2]


def test_terminal_error_stops_and_leaves_everything_unwritten() -> None:
    sink = FakeTableSink(fail_calls={2: TerminalRequestError("no table", "ResourceNotFound")})
    w, _ = writer(sink)
    report = w.write([put(i) for i in range(60)])
    assert report.written == 25 and len(report.unwritten) == 35
    assert isinstance(report.error, TerminalRequestError) and sink.calls == 2


def test_invalid_items_are_bisected_to_dead_letters_and_the_rest_is_written() -> None:
    bad = {7, 19}
    sink = FakeTableSink(invalid=lambda r: "bad attribute" if r.ref in bad else None)
    w, sleeps = writer(sink)
    requests = [put(i) for i in range(25)]
    report = w.write(requests)
    assert report.complete and report.written == 23
    assert [(r.ref, reason) for r, reason in report.dead] == [
        (7, "invalid: ValidationException: bad attribute"),
        (19, "invalid: ValidationException: bad attribute"),
    ]
    assert len(sink.items("t")) == 23 and sleeps == []  # bisection is not a failure
    assert report.calls < 25  # log-depth, not one call per item


def test_items_over_the_size_limit_are_dead_without_being_sent() -> None:
    sink = FakeTableSink()
    w, _ = writer(sink)
    big = put(1, blob={"S": "x" * (400 * 1024)})
    report = w.write([big, put(2)])
    assert report.complete and report.written == 1 and sink.requests_sent == 1
    ((request, reason),) = report.dead
    assert request is big and reason.startswith("too_large: item is about")


def test_item_size_estimate() -> None:
    item = {"pk": {"S": "abc"}, "n": {"N": "12345"}, "b": {"BOOL": True},
            "m": {"M": {"x": {"S": "yy"}}}, "l": {"L": [{"S": "z"}]}}  # fmt: skip
    assert item_size(item) == (2 + 3) + (1 + 3) + (1 + 1) + (1 + 3 + 1 + 1 + 2) + (1 + 3 + 1 + 1)


def test_guard_runs_before_every_call_and_stops_the_write() -> None:
    sink = FakeTableSink()
    w, _ = writer(sink)
    report = w.write([put(i) for i in range(30)], guard=refusing(LeaseLost("taken")))
    assert sink.calls == 0 and report.written == 0 and len(report.unwritten) == 30
    assert isinstance(report.fenced, LeaseLost)
    with pytest.raises(LeaseLost):
        report.raise_if_incomplete()


def test_guard_refusing_at_the_last_moment_inside_the_sink() -> None:
    calls = []

    def guard() -> None:
        calls.append(1)
        if len(calls) == 4:  # the writer's check of call 2 passes, the sink's refuses
            raise LeaseLost("taken while building")

    sink = FakeTableSink()
    w, _ = writer(sink)
    report = w.write([put(i) for i in range(50)], guard=guard)
    assert report.written == 25 and len(report.unwritten) == 25
    assert isinstance(report.fenced, LeaseLost)


def test_chunks_go_concurrently_up_to_max_in_flight_and_guard_calls_are_serialised() -> None:
    sink = FakeTableSink(delay_s=0.02)
    active, most = [0], [0]
    lock = threading.Lock()

    def guard() -> None:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        threading.Event().wait(0.001)
        with lock:
            active[0] -= 1

    with BatchWriter(sink, "t", max_in_flight=4, sleep=lambda s: None) as w:
        report = w.write([put(i) for i in range(200)], guard=guard)
    assert report.complete and report.written == 200 and report.calls == 8
    assert 2 <= sink.max_in_flight_seen <= 4
    assert most[0] == 1


def test_concurrent_chunks_under_random_faults_lose_nothing() -> None:
    rng = random.Random(7)
    lock = threading.Lock()

    def unprocessed(r: WriteRequest, call: int) -> bool:
        with lock:
            return rng.random() < 0.3

    sink = FakeTableSink(
        unprocessed=unprocessed,
        invalid=lambda r: "too deep" if r.ref % 97 == 0 and r.ref else None,
    )
    with BatchWriter(sink, "t", backoff=Backoff(max_attempts=50), sleep=lambda s: None,
                     max_in_flight=4) as w:  # fmt: skip
        report = w.write([put(i) for i in range(500)])
    assert report.complete
    dead = sorted(r.ref for r, _ in report.dead)
    assert dead == [97, 194, 291, 388, 485]
    assert report.written == 495 == len(sink.items("t"))
    assert report.unprocessed_retries > 0
