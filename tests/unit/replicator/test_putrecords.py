"""PutRecords engine against a scripted sink: throttling, partial failure, order per key,
unknown outcomes, dead letters and the attempt bound."""

from __future__ import annotations

import pytest

from replicator.core.fakes import ScriptedSink
from replicator.core.putrecords import (
    AttemptEvent,
    AttemptOutcome,
    Backoff,
    DeadLetterReason,
    EntryStatus,
    InvalidRequestError,
    Limits,
    PutEntry,
    PutRecordsSender,
    RetryableRequestError,
    TerminalRequestError,
    plan_batches,
)
from replicator.errors import SinkError


def entries(n: int, keys: int = 5, size: int = 10) -> list[PutEntry]:
    return [PutEntry(f"k{i % keys}", b"x" * size, ref=i) for i in range(n)]


def sender(
    sink: ScriptedSink, **kwargs
) -> tuple[PutRecordsSender, list[float], list[AttemptEvent]]:
    sleeps: list[float] = []
    events: list[AttemptEvent] = []
    kwargs.setdefault("backoff", Backoff(base=0.1, cap=1.0, max_attempts=5))
    s = PutRecordsSender(
        sink, "s", sleep=sleeps.append, random=lambda: 1.0, clock=lambda: 0.0,
        observer=events.append, **kwargs,
    )  # fmt: skip
    return s, sleeps, events


def is_subsequence(needle: list, haystack: list) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


def last_arrival_order(refs: list) -> list:
    """Refs ordered by their last copy in the stream."""
    last = {ref: i for i, ref in enumerate(refs)}
    return sorted(last, key=last.__getitem__)


def assert_order_per_key(sink: ScriptedSink, sent: list[PutEntry]) -> None:
    expected: dict[str, list] = {}
    for e in sent:
        expected.setdefault(e.partition_key, []).append(e.ref)
    got = sink.refs_by_key()
    for key, refs in expected.items():
        assert is_subsequence(refs, got.get(key, [])), (key, refs, got.get(key))
        assert last_arrival_order(got[key]) == refs, (key, got[key])


def test_plan_batches_keeps_order_and_limits() -> None:
    es = [PutEntry("k", b"x" * 99, ref=i) for i in range(1200)]  # 100 bytes each
    batches = plan_batches(
        es, Limits(max_entries=500, max_record_bytes=100, max_request_bytes=30_000)
    )
    assert [len(b) for b in batches] == [300, 300, 300, 300]
    assert [e.ref for b in batches for e in b] == list(range(1200))
    assert [len(b) for b in plan_batches(es)] == [500, 500, 200]


def test_plan_batches_refuses_oversize_entry() -> None:
    with pytest.raises(ValueError, match="dead-letter"):
        plan_batches(
            [PutEntry("k", b"x" * 200)], Limits(max_record_bytes=100, max_request_bytes=100)
        )


def test_record_size_counts_partition_key_bytes() -> None:
    limits = Limits(max_record_bytes=10, max_request_bytes=100)
    assert limits.rejection(PutEntry("é", b"x" * 8)) is None  # 2 + 8 bytes
    assert limits.rejection(PutEntry("é", b"x" * 9))[0] is DeadLetterReason.TOO_LARGE


def test_all_written_in_order_without_faults() -> None:
    sink = ScriptedSink()
    es = entries(1200)
    report = sender(sink)[0].send(es)
    assert report.complete and report.requests == 3 and report.retried_entries == 0
    assert [r.entry.ref for r in sink.records] == list(range(1200))
    assert all(o.sequence_number for o in report.outcomes)


def test_throttle_the_third_call_resends_that_request_after_backoff() -> None:
    sink = ScriptedSink().fail_call(3, RetryableRequestError("slow down", "ThrottlingException"))
    es = entries(1200)
    s, sleeps, events = sender(sink)
    report = s.send(es)
    assert report.complete and report.requests == 4 and report.throttled_requests == 1
    assert sleeps == [0.1]  # full jitter with random() == 1: base * 2**0
    assert [r.entry.ref for r in sink.records] == list(range(1200))
    fails = [e for e in events if e.outcome is AttemptOutcome.FAIL]
    assert len(fails) == 200 and {e.error_code for e in fails} == {"ThrottlingException"}
    assert len(events) == 1400  # once per entry per attempt


def test_fail_entries_2_and_7_resends_them_and_later_same_key_entries() -> None:
    sink = ScriptedSink().fail_entries(1, [2, 7])
    es = entries(10, keys=5)  # keys k0..k4: entry 7 is k2, as is entry 2
    s, _, events = sender(sink)
    report = s.send(es)
    assert report.complete
    # Second request: entry 2, then 7 (same key k2, failed) -- nothing else of k2 after 7.
    assert [e.ref for e in sink.calls[1]] == [2, 7]
    assert_order_per_key(sink, es)
    assert [e.index for e in events if e.attempt == 2] == [2, 7]


@pytest.mark.parametrize(
    "positions",
    [[0], [4], [0, 1, 2], [3, 8, 13], [19], [5, 6, 7, 8, 9], list(range(0, 20, 2))],
)
def test_partial_failure_keeps_order_per_key(positions: list[int]) -> None:
    sink = ScriptedSink().fail_entries(1, positions).fail_entries(2, [0])
    es = entries(20, keys=3)
    report = sender(sink)[0].send(es)
    assert report.complete
    assert_order_per_key(sink, es)
    first_failed = min(positions)
    key = es[first_failed].partition_key
    resent = [e.ref for e in sink.calls[1] if e.partition_key == key]
    later_same_key = [e.ref for e in es[first_failed:] if e.partition_key == key]
    assert resent == later_same_key  # written ones go again too: duplicates, never reordering


def test_resent_written_entry_is_reported_ok_and_flagged() -> None:
    sink = ScriptedSink().fail_entries(1, [0])
    es = [
        PutEntry("a", b"1", ref="a1"),
        PutEntry("a", b"2", ref="a2"),
        PutEntry("b", b"3", ref="b1"),
    ]
    _, _, events = s_e = sender(sink)
    report = s_e[0].send(es)
    first = {e.entry.ref: e for e in events if e.attempt == 1}
    assert first["a2"].outcome is AttemptOutcome.OK and first["a2"].resent_for_order
    assert not first["b1"].resent_for_order
    assert sink.refs_by_key()["a"] == ["a2", "a1", "a2"]
    assert report.outcomes[1].attempts == 2


def test_planted_reordering_sink_is_caught_by_the_order_check() -> None:
    """The order assertion itself must fail on a reordering: write a2 before a1."""
    sink = ScriptedSink()
    sink.put_records("s", [PutEntry("a", b"", ref=2), PutEntry("a", b"", ref=1)])
    with pytest.raises(AssertionError):
        assert_order_per_key(sink, [PutEntry("a", b"", ref=1), PutEntry("a", b"", ref=2)])


@pytest.mark.parametrize("applied", [True, False])
def test_unknown_outcome_is_resent_no_loss(applied: bool) -> None:
    sink = ScriptedSink().time_out_call(1, applied=applied)
    es = entries(30)
    s, _, events = sender(sink)
    report = s.send(es)
    assert report.complete
    refs = [r.entry.ref for r in sink.records]
    assert refs == (list(range(30)) * 2 if applied else list(range(30)))
    assert sum(e.outcome is AttemptOutcome.UNKNOWN for e in events) == 30


def test_unknown_outcome_not_resent_when_asked() -> None:
    sink = ScriptedSink().time_out_call(1, applied=False)
    report = sender(sink, retry_unknown=False)[0].send(entries(3))
    assert [o.status for o in report.outcomes] == [EntryStatus.UNKNOWN] * 3
    assert not report.complete and len(sink.calls) == 1


def test_oversize_and_invalid_records_go_to_dead_letter_and_the_rest_moves_on() -> None:
    limits = Limits(max_record_bytes=100, max_request_bytes=1000)
    es = entries(10)
    es[3] = PutEntry("k3", b"x" * 200, ref=3)
    es[6] = PutEntry("k1", b"x", explicit_hash_key="not-a-number", ref=6)
    es[8] = PutEntry("", b"x", ref=8)
    sink = ScriptedSink()
    report = sender(sink, limits=limits)[0].send(es)
    assert report.complete
    assert {d.entry.ref: d.reason for d in report.dead_letters} == {
        3: DeadLetterReason.TOO_LARGE,
        6: DeadLetterReason.INVALID,
        8: DeadLetterReason.INVALID,
    }
    assert "202 bytes" in report.dead_letters[0].detail
    assert report.dead_letters[0].entry.data == b"x" * 200  # full data kept
    assert [r.entry.ref for r in sink.records] == [0, 1, 2, 4, 5, 7, 9]


def test_entry_rejected_by_the_service_is_dead_lettered() -> None:
    sink = ScriptedSink().fail_entries(1, [1], code="ValidationException")
    report = sender(sink)[0].send(entries(4))
    assert report.complete and [d.entry.ref for d in report.dead_letters] == [1]
    assert [r.entry.ref for r in sink.records] == [0, 2, 3]


class RejectingSink(ScriptedSink):
    """Rejects any request that contains the entry with ref 'bad' (ValidationException)."""

    def put_records(self, stream, es):
        if any(e.ref == "bad" for e in es):
            self.calls.append(list(es))
            raise InvalidRequestError("1 validation error detected", "ValidationException")
        return super().put_records(stream, es)


def test_invalid_request_is_bisected_to_the_bad_record() -> None:
    es = entries(100)
    es[61] = PutEntry("k1", b"?", ref="bad")
    sink = RejectingSink()
    s, sleeps, _ = sender(sink)
    report = s.send(es)
    assert report.complete and [d.entry.ref for d in report.dead_letters] == ["bad"]
    assert "ValidationException" in report.dead_letters[0].detail
    assert [r.entry.ref for r in sink.records] == [i for i in range(100) if i != 61]
    assert sleeps == [] and len(sink.calls) <= 20


def test_attempt_bound_reports_unresolved_and_stops() -> None:
    sink = ScriptedSink(fail_entry=lambda e, call: "InternalFailure" if e.ref == 2 else None)
    s, sleeps, _ = sender(sink, backoff=Backoff(base=0.1, cap=0.3, max_attempts=4))
    report = s.send(entries(6))
    assert not report.complete and report.resolved_prefix == 2
    statuses = [o.status for o in report.outcomes]
    assert statuses[2] is EntryStatus.UNRESOLVED and report.outcomes[2].attempts == 4
    assert report.outcomes[2].error_code == "InternalFailure"
    assert sleeps == [0.1, 0.2, 0.3]  # capped
    assert len(sink.calls) == 4


def test_unknown_entry_code_is_retried_not_dead_lettered() -> None:
    sink = ScriptedSink().fail_entries(1, [0], code="KMSThrottlingException")
    report = sender(sink)[0].send(entries(2))
    assert report.complete and not report.dead_letters


@pytest.mark.parametrize("error", [TerminalRequestError("no stream", "ResourceNotFoundException")])
def test_terminal_request_error_stops_with_the_error(error: SinkError) -> None:
    sink = ScriptedSink().fail_call(2, error)
    report = sender(sink)[0].send(entries(700))
    assert report.error is error and report.resolved_prefix == 500
    assert report.outcomes[600].status is EntryStatus.UNRESOLVED
    assert len(sink.calls) == 2


def test_backoff_full_jitter_bounds() -> None:
    b = Backoff(base=0.05, cap=1.0)
    assert b.delay(0, 1.0) == 0.0
    assert [b.delay(n, 1.0) for n in (1, 2, 3, 6)] == [0.05, 0.1, 0.2, 1.0]
    assert b.delay(3, 0.5) == 0.1


def test_retries_mixed_with_new_entries_keep_overall_key_order_across_requests() -> None:
    sink = ScriptedSink()
    for call in range(1, 8):
        sink.fail_entries(call, [0, 5, 17, 33, 499])
    es = entries(2000, keys=7)
    report = sender(sink, backoff=Backoff(base=0.01, cap=0.05, max_attempts=20))[0].send(es)
    assert report.complete
    assert_order_per_key(sink, es)
