"""The capture loop with a fake slot and a scripted Kinesis sink: the slot is confirmed only past
acknowledged transactions, a crash between put and confirm re-sends and never skips, partial
failure keeps per-key order, drain and a busy slot end as documented."""

from __future__ import annotations

import json
import struct

import pytest

from replicator.core import capture as capture_mod
from replicator.core.capture import Capture, CaptureSettings, SlotBusy, SourceUnavailable
from replicator.core.capture_batch import BatchDecoder
from replicator.core.fakes import ScriptedSink
from replicator.core.putrecords import Backoff, PutRecordsSender
from replicator.core.table_mappings import default_mappings
from replicator.errors import TerminalRequestError

RELID = 16384


def _s(text: str) -> bytes:
    return text.encode() + b"\0"


def relation() -> bytes:
    cols = [(1, "key", 20), (0, "commit_timestamp", 1184), (0, "trace", 25), (0, "payload", 3802)]
    body = b"".join(struct.pack("!b", f) + _s(n) + struct.pack("!Ii", o, -1) for f, n, o in cols)
    return b"R" + struct.pack("!I", RELID) + _s("public") + _s("h") + b"d" + struct.pack("!h", 4) + body


def _tuple(values: list[str | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        out += b"n" if v is None else b"t" + struct.pack("!i", len(v.encode())) + v.encode()
    return out


def insert(key: int, trace: str) -> bytes:
    return b"I" + struct.pack("!I", RELID) + b"N" + _tuple([str(key), "2026-01-01 00:00:00+00", trace, "{}"])


class FakeSlot:
    """A WAL of committed transactions; peek returns whole ones from the confirmed position."""

    def __init__(self) -> None:
        self.wal: list[tuple[int, list[tuple[int, int, bytes]], int]] = []  # (end, rows, changes)
        self.confirmed = 0
        self.fail_advance = 0
        self.busy = 0
        self.down = 0
        self.lsn = 100
        self.xid = 700

    def commit(self, changes: list[tuple[int, str]]) -> None:
        self.xid += 1
        begin_lsn = self.lsn
        rows = [(begin_lsn, self.xid, b"B" + struct.pack("!qqI", begin_lsn, 10**15, self.xid)),
                (begin_lsn, self.xid, relation())]  # fmt: skip
        for key, trace in changes:
            self.lsn += 10
            rows.append((self.lsn, self.xid, insert(key, trace)))
        end = self.lsn + 10
        rows.append((end, self.xid, b"C" + struct.pack("!bqqq", 0, self.lsn, end, 10**15)))
        self.lsn = end + 10
        self.wal.append((end, rows, len(changes)))

    def peek(self, upto: int):
        if self.busy:
            self.busy -= 1
            raise SlotBusy("replication slot is active for PID 42")
        if self.down:
            self.down -= 1
            raise SourceUnavailable("connection refused")
        out, n = [], 0
        for end, rows, changes in self.wal:
            if end <= self.confirmed:
                continue
            if n >= upto:
                break
            out += rows
            n += changes
        return out

    def advance(self, lsn: int) -> None:
        if self.fail_advance:
            self.fail_advance -= 1
            raise SourceUnavailable("server closed the connection (crash before confirm)")
        assert lsn >= self.confirmed
        self.confirmed = lsn

    def pending_bytes(self) -> int:
        return self.lsn - self.confirmed


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list = []

    def put(self, letters) -> None:
        self.letters += letters


def make(slot: FakeSlot, sink: ScriptedSink, **settings) -> tuple[Capture, DeadLetters]:
    sender = PutRecordsSender(sink, "p-cdc", backoff=Backoff(max_attempts=3), sleep=lambda s: None,
                              random=lambda: 0.0)  # fmt: skip
    dead = DeadLetters()
    cap = Capture(slot, BatchDecoder(default_mappings("public", "h")), sender, dead, slot_name="s",
                  region="us-east-1", settings=CaptureSettings(**settings), sleep=lambda s: None)  # fmt: skip
    return cap, dead


def traces_by_key(sink: ScriptedSink) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in sink.records:
        out.setdefault(r.entry.partition_key, []).append(json.loads(r.entry.data)["data"]["trace"])
    return out


def in_order(expected: list, got: list) -> bool:
    """``expected`` is a subsequence of ``got`` (each at least once, in order)."""
    it = iter(got)
    return all(any(x == y for y in it) for x in expected)


def assert_confirmed_are_acknowledged(slot: FakeSlot, sink: ScriptedSink) -> None:
    """Every change of every confirmed transaction is in the sink."""
    stored = {json.loads(r.entry.data)["data"]["trace"] for r in sink.records}
    for end, rows, _ in slot.wal:
        if end > slot.confirmed:
            continue
        for t in expected_traces(rows):
            assert t in stored, f"transaction ending {end} confirmed but {t} not acknowledged"


def expected_traces(rows) -> list[str]:
    from replicator.core.pgoutput import Insert, decode

    return [m.new[2] for _, _, d in rows if isinstance(m := decode(d), Insert)]


def test_every_change_sent_in_commit_order_and_slot_confirmed_to_the_end() -> None:
    slot, sink = FakeSlot(), ScriptedSink()
    for i in range(20):
        slot.commit([(i % 3, f"t{i}a"), ((i + 1) % 3, f"t{i}b")])
    cap, _ = make(slot, sink)
    result = cap.step()
    assert result.complete and result.confirmed == 20 and slot.confirmed == slot.wal[-1][0]
    for key, traces in traces_by_key(sink).items():
        expected = [t for _, rows, _ in slot.wal for t in expected_traces(rows)
                    if slot.wal and _key_of(t, slot) == key]  # fmt: skip
        assert traces == expected
    assert cap.stats.records_put == 40 and cap.stats.put_requests == 1


def _key_of(trace: str, slot: FakeSlot) -> str:
    for _, rows, _ in slot.wal:
        from replicator.core.pgoutput import Insert, decode

        for _, _, d in rows:
            m = decode(d)
            if isinstance(m, Insert) and m.new[2] == trace:
                return m.new[0]
    raise KeyError(trace)


def test_crash_between_put_and_confirm_resends_and_never_skips() -> None:
    slot, sink = FakeSlot(), ScriptedSink()
    for i in range(5):
        slot.commit([(i, f"a{i}")])
    cap, _ = make(slot, sink)
    slot.fail_advance = 1
    with pytest.raises(SourceUnavailable):
        cap.step()  # put, then the "crash" before the slot was confirmed
    assert slot.confirmed == 0
    slot.commit([(9, "late")])
    restarted, _ = make(slot, sink)  # a new process: nothing remembered but the slot
    assert restarted.step().complete
    stored = [json.loads(r.entry.data)["data"]["trace"] for r in sink.records]
    assert stored == [f"a{i}" for i in range(5)] * 2 + ["late"]  # duplicates, no gap
    assert slot.confirmed == slot.wal[-1][0]


def test_partial_failure_keeps_per_key_order() -> None:
    slot, sink = FakeSlot(), ScriptedSink()
    for i in range(10):
        slot.commit([(i % 2, f"k{i % 2}-{i}")])
    sink.fail_entries(1, [0, 3])
    cap, _ = make(slot, sink)
    assert cap.step().complete
    for key, traces in traces_by_key(sink).items():
        expected = [f"k{key}-{i}" for i in range(10) if str(i % 2) == key]
        assert in_order(expected, traces) and set(traces) == set(expected)
        assert traces != expected  # the fault made resends (the test exercised the case)


def test_confirm_never_passes_an_unacknowledged_transaction() -> None:
    slot, sink = FakeSlot(), ScriptedSink()
    for i in range(6):
        slot.commit([(k, f"t{i}-{k}") for k in range(100)])  # 600 changes: two requests
    sink.fail_call(2, TerminalRequestError("stream gone", "ResourceNotFoundException"))
    cap, _ = make(slot, sink)
    result = cap.step()
    assert not result.complete and result.confirmed == 5  # the 6th transaction was not acknowledged
    assert_confirmed_are_acknowledged(slot, sink)
    assert cap.step().complete  # the next step sends it (the fault was once) and confirms
    assert slot.confirmed == slot.wal[-1][0]


def test_the_check_catches_a_capture_that_confirms_too_far(monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug (confirm the whole peek whatever Kinesis said) is caught by the check above."""
    monkeypatch.setattr(capture_mod, "confirmable", lambda txns, resolved: (txns[-1].end_lsn, len(txns)))
    slot, sink = FakeSlot(), ScriptedSink()
    for i in range(6):
        slot.commit([(k, f"t{i}-{k}") for k in range(100)])
    sink.fail_call(2, TerminalRequestError("stream gone", "ResourceNotFoundException"))
    cap, _ = make(slot, sink)
    cap.step()
    with pytest.raises(AssertionError, match="not acknowledged"):
        assert_confirmed_are_acknowledged(slot, sink)


def test_unbuildable_change_is_dead_lettered_and_the_slot_moves_on() -> None:
    slot, sink = FakeSlot(), ScriptedSink()
    slot.commit([(1, "ok")])
    end, rows, n = slot.wal[-1]
    toast = b"U" + struct.pack("!I", RELID) + b"N" + struct.pack("!h", 4) + _tuple(["1"])[2:] + \
        b"t" + struct.pack("!i", 1) + b"x" + b"t" + struct.pack("!i", 1) + b"y" + b"u"
    rows.insert(-1, (end - 5, slot.xid, toast))
    cap, dead = make(slot, sink)
    assert cap.step().complete
    assert slot.confirmed == end and len(sink.records) == 1
    assert len(dead.letters) == 1 and "TOAST" in dead.letters[0].detail
    assert dead.letters[0].record.data == toast and cap.stats.dead_lettered == 1


def test_drain_exits_0_after_an_empty_peek_begun_after_the_request() -> None:
    slot, sink = FakeSlot(), ScriptedSink()
    slot.commit([(1, "a")])
    cap, _ = make(slot, sink)
    cap.request_drain()
    assert cap.run() == 0 and cap.exit_reason == "drained"
    assert slot.confirmed == slot.wal[-1][0] and len(sink.records) == 1


def fake_time(cap: Capture) -> None:
    """A clock that moves only when the capture sleeps."""
    now = [0.0]
    cap.clock = lambda: now[0]
    cap.sleep = lambda s: now.__setitem__(0, now[0] + s)


def test_drain_gives_up_with_2_while_the_database_is_down() -> None:
    slot, sink = FakeSlot(), ScriptedSink()
    cap, _ = make(slot, sink, drain_timeout_s=5.0)
    fake_time(cap)
    slot.down = 10**6
    cap.request_drain()
    assert cap.run() == 2 and "drain" in cap.exit_reason


def test_busy_slot_is_waited_for_then_given_up() -> None:
    slot, sink = FakeSlot(), ScriptedSink()
    cap, _ = make(slot, sink, slot_wait_s=3.0)
    fake_time(cap)
    slot.busy = 10**6
    assert cap.run() == 2 and "busy" in cap.exit_reason
    slot.busy, slot.confirmed = 2, 0
    slot.commit([(1, "a")])
    cap2, _ = make(slot, sink)
    cap2.request_drain()
    assert cap2.run() == 0 and len(sink.records) == 1  # let go: it goes on
