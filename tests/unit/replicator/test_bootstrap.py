"""The bootstrap copy over fakes: a complete copy, resume after a crash mid-segment, take-over
only after the heartbeat expired, progress recorded only after acknowledged writes, the
preconditions, dead letters, a graceful stop, a lost lease, the retention warning."""

from __future__ import annotations

import threading
import zlib
from typing import Any

import pytest

from replicator.core import bootstrap as bs
from replicator.core.batch import DeadLetterRecord
from replicator.core.bootstrap import (
    Bootstrap,
    BootstrapPreconditionError,
    BootstrapSettings,
    BootstrapState,
    MemoryBootstrapStore,
    Outcome,
    ScanPage,
    SegmentProgress,
    TableInfo,
)
from replicator.core.putrecords import Backoff
from replicator.core.table_fakes import FakeTableSink
from replicator.core.table_writes import BatchWriter, key_id
from replicator.errors import DeadLetterError, RetryableRequestError

TABLE = "t-items"
LEASE_MS = 6_000


class Crash(BaseException):
    """The process dies here: nothing after it runs (not an Exception: nothing catches it)."""


class Clock:
    """Milliseconds; sleep advances it (thread-safe: segment threads pause too)."""

    def __init__(self, now_ms: int = 1_000_000) -> None:
        self.now_ms = now_ms
        self.lock = threading.Lock()

    def __call__(self) -> int:
        with self.lock:
            return self.now_ms

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now_ms += int(seconds * 1000)

    def advance(self, ms: int) -> None:
        with self.lock:
            self.now_ms += ms


def item(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"k{i:05d}"}, "v": {"N": str(i)}}


class FakeScanner:
    """A table in memory scanned like DynamoDB: a segment is a hash range of the key, pages in
    key order after ExclusiveStartKey, ``limit`` items a page."""

    def __init__(
        self,
        items: list[dict[str, Any]],
        *,
        limit: int = 20,
        view: str | None = "NEW_AND_OLD_IMAGES",
    ) -> None:
        self.rows = {i["pk"]["S"]: i for i in items}
        self.limit = limit
        self.view = view
        self.calls = 0
        self.starts: list[tuple[int, str | None]] = []
        self.fail: dict[int, Exception] = {}  # call number -> error
        self.lock = threading.Lock()

    def describe(self) -> TableInfo:
        return TableInfo(TABLE, ("pk",), len(self.rows), self.view)

    def scan(self, segment: int, total: int, start_key: dict | None) -> ScanPage:
        with self.lock:
            self.calls += 1
            call = self.calls
            self.starts.append((segment, None if start_key is None else start_key["pk"]["S"]))
        if call in self.fail:
            raise self.fail[call]
        keys = sorted(k for k in self.rows if zlib.crc32(k.encode()) % total == segment)
        if start_key is not None:
            keys = [k for k in keys if k > start_key["pk"]["S"]]
        page = keys[: self.limit]
        more = len(keys) > self.limit
        return ScanPage(
            [dict(self.rows[k]) for k in page], {"pk": {"S": page[-1]}} if more else None
        )


class Letters:
    def __init__(self, fail_first: int = 0) -> None:
        self.letters: list[DeadLetterRecord] = []
        self.fail_first = fail_first

    def put(self, letters) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise DeadLetterError("s3 down")
        self.letters.extend(letters)


def make(
    scanner: FakeScanner,
    sink: FakeTableSink,
    store: MemoryBootstrapStore,
    clock: Clock,
    owner: str = "a",
    *,
    live: bool = False,
    letters: Letters | None = None,
    segments: int = 4,
    log: list | None = None,
    **settings: Any,
) -> Bootstrap:
    events = log if log is not None else []
    return Bootstrap(
        scanner=scanner,
        writer=BatchWriter(
            sink,
            TABLE,
            max_in_flight=2,
            sleep=clock.sleep,
            backoff=Backoff(base=0.01, cap=0.05, max_attempts=3),
        ),  # fmt: skip
        store=store,
        live_checkpoints=lambda: live,
        dead_letters=letters or Letters(),
        owner=owner,
        source_region="us-east-1",
        target_region="us-east-2",
        settings=BootstrapSettings(
            segments=segments,
            lease_ms=LEASE_MS,
            guard_ms=2_000,
            renew_interval_s=1.0,
            wait_interval_s=0.5,
            progress_interval_s=0.01,
            **settings,
        ),  # fmt: skip
        clock_ms=clock,
        sleep=clock.sleep,
        random=lambda: 1.0,
        log=lambda event, **f: events.append((event, f)),
    )


def target(sink: FakeTableSink) -> dict[str, dict]:
    return {json_key: row for json_key, row in sink.items(TABLE).items()}


def source(scanner: FakeScanner) -> dict[str, dict]:
    return {key_id({"pk": v["pk"]}): v for v in scanner.rows.values()}


def test_copies_every_item_and_completes_the_row() -> None:
    scanner, sink, store, clock = FakeScanner([item(i) for i in range(500)]), FakeTableSink(), MemoryBootstrapStore(), Clock()  # fmt: skip
    progress = []
    b = make(scanner, sink, store, clock)
    b.on_progress = progress.append
    result = b.run()
    assert result.outcome is Outcome.COPIED and result.open_gate
    assert target(sink) == source(scanner)
    row = store.read()
    assert row is not None and row.state is BootstrapState.COMPLETE
    assert row.items_copied == 500 == result.items_copied == result.copied_here
    assert row.copy_seconds is not None and row.completed_at_ms is not None
    assert all(p.done for p in store.segments().values()) and len(store.segments()) == 4
    assert sum(p.items for p in store.segments().values()) == 500
    assert progress and progress[-1].items_copied == 500 and progress[-1].estimated_total == 500
    # a second run finds it complete and copies nothing
    again = make(scanner, sink, store, clock, owner="b").run()
    assert again.outcome is Outcome.ALREADY_COMPLETE and again.open_gate
    assert again.items_copied == 500 and again.copied_here == 0


def test_state_row_reads_as_the_contract_says() -> None:
    from xrh import contracts

    assert bs.BOOTSTRAP_SHARD_ID == contracts.BOOTSTRAP_SHARD_ID
    assert bs.BOOTSTRAP_SEGMENT_PREFIX == contracts.BOOTSTRAP_SEGMENT_PREFIX
    assert bs.segment_row_id(3) == contracts.bootstrap_segment_id(3)
    assert [s.value for s in bs.BootstrapState] == [s.value for s in contracts.BootstrapState]
    store = MemoryBootstrapStore()
    make(FakeScanner([item(i) for i in range(30)]), FakeTableSink(), store, Clock()).run()
    row = contracts.BootstrapRow.from_item(store.row)
    assert row.state is contracts.BootstrapState.COMPLETE and row.items_copied == 30


def test_resume_after_a_crash_mid_segment_copies_every_item_to_the_end() -> None:
    items = [item(i) for i in range(600)]
    scanner, store, clock = FakeScanner(items, limit=25), MemoryBootstrapStore(), Clock()
    sink = FakeTableSink()
    crash_at = 9

    def unprocessed(request, call: int) -> bool:
        if call == crash_at:
            raise Crash()  # the process dies while writing a page
        return False

    sink.unprocessed = unprocessed
    with pytest.raises(Crash):
        make(scanner, sink, store, clock, owner="a").run()
    row = store.read()
    assert row is not None and row.state is BootstrapState.COPYING and row.owner == "a"
    saved = store.segments()
    assert 0 < sum(p.items for p in saved.values()) < 600
    assert not all(p.done for p in saved.values())
    # Every item a saved segment row claims is in the target: progress followed the writes.
    for p in saved.values():
        assert p.last_key is not None or p.done
    written_before = len(sink.items(TABLE))

    sink.unprocessed = None
    calls_before = sink.requests_sent
    scanner.starts.clear()
    clock.advance(LEASE_MS + 1)  # the dead owner's heartbeat is now older than the lease
    result = make(scanner, sink, store, clock, owner="b").run()
    assert result.outcome is Outcome.COPIED
    assert target(sink) == source(scanner)
    assert store.read().items_copied == 600 == sum(p.items for p in store.segments().values())
    # Each segment resumed after its last recorded page, not from the start.
    firsts = {}
    for segment, start in scanner.starts:
        firsts.setdefault(segment, start)
    for segment, p in saved.items():
        if not p.done:
            assert firsts[segment] == (p.last_key or {}).get("pk", {}).get("S"), segment
    resent = sink.requests_sent - calls_before
    assert resent <= 600 - sum(p.items for p in saved.values())
    assert resent < 600 - written_before + 4 * 25  # at most the pages in flight again


def test_take_over_only_after_the_heartbeat_expired() -> None:
    scanner, sink, store, clock = FakeScanner([item(i) for i in range(100)]), FakeTableSink(), MemoryBootstrapStore(), Clock()  # fmt: skip
    taken = store.take("a", clock(), LEASE_MS, 4)  # a live owner that then goes silent
    assert taken is not None
    heartbeat = clock()
    log: list = []
    takes: list[int] = []
    real_take = store.take

    def take(owner, now_ms, lease_ms, segments):
        got = real_take(owner, now_ms, lease_ms, segments)
        if got is not None:
            takes.append(now_ms)
        return got

    store.take = take  # type: ignore[method-assign]
    result = make(scanner, sink, store, clock, owner="b", log=log).run()
    assert result.outcome is Outcome.COPIED
    assert takes and takes[0] > heartbeat + LEASE_MS - 1
    assert takes[0] <= heartbeat + LEASE_MS + 1000  # and soon after (wait interval 0.5 s)
    assert ("bootstrap_waiting", {"owner": "a", "heartbeat_ms": heartbeat}) in log
    assert store.read().owner == "b" and target(sink) == source(scanner)


def test_a_renewing_owner_is_never_taken_over_and_a_waiter_can_stop() -> None:
    scanner, sink, store, clock = FakeScanner([item(i) for i in range(10)]), FakeTableSink(), MemoryBootstrapStore(), Clock()  # fmt: skip
    taken = store.take("a", clock(), LEASE_MS, 4)
    waits = [0]
    b = make(scanner, sink, store, clock, owner="b")

    def sleep(seconds: float) -> None:  # "a" keeps renewing while "b" waits
        nonlocal taken
        clock.sleep(seconds)
        counter = store.renew("a", clock(), taken.counter, 0)
        assert counter is not None
        taken = bs.Taken(taken.row, counter)
        waits[0] += 1
        if waits[0] == 40:  # 20 s of waiting, three leases: give up
            b.request_stop()

    b.sleep = sleep
    result = b.run()
    assert result.outcome is Outcome.STOPPED and not result.open_gate
    assert store.read().owner == "a" and sink.calls == 0


def test_progress_is_recorded_only_after_the_page_is_acknowledged() -> None:
    items = [item(i) for i in range(300)]
    scanner, store, clock = FakeScanner(items, limit=30), MemoryBootstrapStore(), Clock()
    # Part of every batch unprocessed the first time, and some calls throttled outright.
    sink = FakeTableSink(
        unprocessed=lambda r, call: call % 3 == 1 and int(r.key["pk"]["S"][1:]) % 2 == 0,
        fail_calls={2: RetryableRequestError("slow down", "ThrottlingException"),
                    7: RetryableRequestError("slow down", "ThrottlingException")},
    )  # fmt: skip
    checked = []
    real_save = store.save_segment

    def save_segment(progress: SegmentProgress) -> bool:
        # Every item of the segment up to the recorded key is already in the target.
        have = sink.items(TABLE)
        seg_keys = sorted(k for k in scanner.rows if zlib.crc32(k.encode()) % 4 == progress.segment)
        upto = (
            seg_keys
            if progress.done
            else [k for k in seg_keys if k <= progress.last_key["pk"]["S"]]
        )
        assert all(key_id({"pk": {"S": k}}) in have for k in upto)
        assert len(upto) == progress.items
        checked.append(progress)
        return real_save(progress)

    store.save_segment = save_segment  # type: ignore[method-assign]
    result = make(scanner, sink, store, clock).run()
    assert result.outcome is Outcome.COPIED and target(sink) == source(scanner)
    assert len(checked) == sum(-(-n // 30) or 1 for n in _segment_sizes(scanner, 4))


def _segment_sizes(scanner: FakeScanner, total: int) -> list[int]:
    sizes = [0] * total
    for k in scanner.rows:
        sizes[zlib.crc32(k.encode()) % total] += 1
    return sizes


def test_items_left_unwritten_are_sent_again_before_progress_moves() -> None:
    scanner, store, clock = FakeScanner([item(i) for i in range(120)]), MemoryBootstrapStore(), Clock()  # fmt: skip
    # Every request unprocessed in the first 6 calls: the writer's bound (3) runs out twice.
    sink = FakeTableSink(unprocessed=lambda r, call: call <= 6)
    log: list = []
    result = make(scanner, sink, store, clock, segments=1, log=log).run()
    assert result.outcome is Outcome.COPIED and target(sink) == source(scanner)
    assert any(e == "bootstrap_page_retry" for e, _ in log)
    assert store.read().items_copied == 120


def test_refuses_a_table_without_a_stream_of_new_images() -> None:
    for view in (None, "KEYS_ONLY", "OLD_IMAGE"):
        scanner = FakeScanner([item(1)], view=view)
        b = make(scanner, FakeTableSink(), MemoryBootstrapStore(), Clock())
        with pytest.raises(BootstrapPreconditionError, match="stream with new images"):
            b.run()
        assert scanner.calls == 0


def test_skipped_with_a_warning_when_live_checkpoints_exist() -> None:
    scanner, sink, store, clock = FakeScanner([item(i) for i in range(10)]), FakeTableSink(), MemoryBootstrapStore(), Clock()  # fmt: skip
    log: list = []
    result = make(scanner, sink, store, clock, live=True, log=log).run()
    assert result.outcome is Outcome.SKIPPED_LIVE and result.open_gate
    assert result.warnings and "applied without a bootstrap" in result.warnings[0]
    assert sink.calls == 0 and scanner.calls == 0 and store.row is None
    assert log[0][0] == "bootstrap_skipped"


def test_dead_items_go_to_the_dead_letter_sink_with_their_data() -> None:
    items = [item(i) for i in range(100)]
    items[7]["blob"] = {"S": "x" * 500_000}  # over 400 KB: never sent
    scanner, store, clock = FakeScanner(items), MemoryBootstrapStore(), Clock()
    sink = FakeTableSink(
        invalid=lambda r: "bad attribute" if r.key["pk"]["S"] == "k00042" else None
    )
    letters = Letters(fail_first=1)  # the sink fails once: the page waits, then stores them
    result = make(scanner, sink, store, clock, letters=letters).run()
    assert result.outcome is Outcome.COPIED and result.dead == 2
    by_key = {x.record.keys["pk"]["S"]: x for x in letters.letters}
    assert set(by_key) == {"k00007", "k00042"}
    assert by_key["k00007"].reason == "too_large" and by_key["k00007"].record.new_image == items[7]
    assert by_key["k00042"].reason == "invalid" and "bad attribute" in by_key["k00042"].detail
    assert by_key["k00042"].source_stream == TABLE and by_key["k00042"].target_region == "us-east-2"
    assert by_key["k00042"].record.shard_id.startswith("#bootstrap/segment-")
    assert len(sink.items(TABLE)) == 98
    assert store.read().items_copied == 98
    assert sum(p.dead for p in store.segments().values()) == 2


def test_graceful_stop_records_progress_and_releases_the_row() -> None:
    scanner, store, clock = FakeScanner([item(i) for i in range(400)], limit=10), MemoryBootstrapStore(), Clock()  # fmt: skip
    sink = FakeTableSink()
    holder: list[Bootstrap] = []

    def unprocessed(request, call: int) -> bool:
        if call == 6:
            holder[0].request_stop()
        return False

    sink.unprocessed = unprocessed
    b = make(scanner, sink, store, clock, owner="a")
    holder.append(b)
    result = b.run()
    assert result.outcome is Outcome.STOPPED and not result.open_gate
    row = store.read()
    assert row.state is BootstrapState.COPYING and row.heartbeat_ms == 0  # released
    saved = sum(p.items for p in store.segments().values())
    assert saved == b.copied_here > 0
    # A successor takes over at once (no lease to wait for) and completes it.
    sink.unprocessed = None
    now = clock()
    result = make(scanner, sink, store, clock, owner="b").run()
    assert result.outcome is Outcome.COPIED and clock() - now < LEASE_MS
    assert target(sink) == source(scanner) and store.read().items_copied == 400


def test_an_owner_whose_row_was_taken_stops_writing() -> None:
    scanner, store, clock = FakeScanner([item(i) for i in range(400)], limit=10), MemoryBootstrapStore(), Clock()  # fmt: skip
    sink = FakeTableSink()
    stolen_at: list[int] = []
    holder: list[Bootstrap] = []

    def unprocessed(request, call: int) -> bool:
        if call == 4 and not stolen_at:
            # "a" was paused past its lease; "b" took the copy over in the meantime.
            clock.advance(LEASE_MS + 1)
            assert store.take("b", clock(), LEASE_MS, 4) is not None
            stolen_at.append(sink.calls)
        return False

    sink.unprocessed = unprocessed
    a = make(scanner, sink, store, clock, owner="a", segments=1)
    holder.append(a)
    waits = [0]

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        store.renew("b", clock(), store.row["leaseCounter"], 0)  # "b" is alive
        waits[0] += 1
        if waits[0] > 3:
            a.request_stop()

    a.sleep = sleep
    result = a.run()
    assert result.outcome is Outcome.STOPPED
    assert sink.calls == stolen_at[0]  # not one more write after it lost the row
    assert store.read().owner == "b" and store.read().state is BootstrapState.COPYING


def test_a_copy_longer_than_the_stream_retention_warns_loudly() -> None:
    def run(limit: int) -> tuple[bs.BootstrapResult, list]:
        scanner, clock = FakeScanner([item(i) for i in range(50)], limit=limit), Clock()
        real = scanner.scan

        def slow_scan(segment, total, start_key):
            clock.advance(6 * 3600 * 1000)  # each page takes six hours
            return real(segment, total, start_key)

        scanner.scan = slow_scan  # type: ignore[method-assign]
        log: list = []
        b = make(scanner, FakeTableSink(), MemoryBootstrapStore(), clock, segments=1, log=log)
        return b.run(), log

    result, log = run(20)  # 3 pages, 18 h: under 24 h - 1 h
    assert result.outcome is Outcome.COPIED and not result.warnings
    result, log = run(10)  # 5 pages, 30 h
    assert result.outcome is Outcome.COPIED
    assert result.warnings and "MAY MISS CHANGES" in result.warnings[0]
    assert any(e == "bootstrap_retention_exceeded" for e, _ in log)


def test_scan_errors_are_retried_and_a_resumed_copy_keeps_its_segment_count() -> None:
    scanner, sink, store, clock = FakeScanner([item(i) for i in range(90)]), FakeTableSink(), MemoryBootstrapStore(), Clock()  # fmt: skip
    store.take("a", clock(), LEASE_MS, 3)  # started with 3 segments, then died
    clock.advance(LEASE_MS + 1)
    scanner.fail = {1: RetryableRequestError("throttled", "ThrottlingException")}
    log: list = []
    result = make(scanner, sink, store, clock, owner="b", segments=8, log=log).run()
    assert result.outcome is Outcome.COPIED and target(sink) == source(scanner)
    assert set(store.segments()) == {0, 1, 2}
    assert any(e == "bootstrap_segments_kept" for e, _ in log)
    assert any(e == "bootstrap_scan_failed" for e, _ in log)


def test_a_copy_that_died_after_its_last_segment_is_completed_by_its_successor() -> None:
    scanner, sink, store, clock = FakeScanner([item(i) for i in range(80)]), FakeTableSink(), MemoryBootstrapStore(), Clock()  # fmt: skip
    real_complete = store.complete

    def complete(owner, *args):
        if owner == "a":
            raise Crash()  # every segment row says done; the state row still says copying
        return real_complete(owner, *args)

    store.complete = complete  # type: ignore[method-assign]
    with pytest.raises(Crash):
        make(scanner, sink, store, clock, owner="a").run()
    assert all(p.done for p in store.segments().values())
    scans = scanner.calls
    clock.advance(LEASE_MS + 1)
    result = make(scanner, sink, store, clock, owner="b").run()
    assert result.outcome is Outcome.COPIED and result.copied_here == 0
    assert scanner.calls == scans and store.read().items_copied == 80


def test_checkpoint_store_load_ignores_the_bootstrap_rows() -> None:
    from replicator.adapters.dynamodb import DynamoCheckpointStore
    from replicator.adapters.dynamodb_bootstrap import decode_key, encode_key

    rows = [
        {"scope": {"S": "s"}, "shardId": {"S": "#bootstrap"}, "state": {"S": "copying"}},
        {"scope": {"S": "s"}, "shardId": {"S": "#bootstrap/segment-0000"}, "items": {"N": "5"}},
        {"scope": {"S": "s"}, "shardId": {"S": "#watermark"}, "watermarkMs": {"N": "1"}},
        {"scope": {"S": "s"}, "shardId": {"S": "shardId-1"}, "sequenceNumber": {"S": "42"}},
    ]

    class Client:
        def query(self, **kwargs):
            return {"Items": rows}

    loaded = DynamoCheckpointStore(Client(), "cp", "s").load()
    assert list(loaded) == ["shardId-1"] and loaded["shardId-1"].sequence_number == "42"
    key = {"pk": {"S": "a"}, "sk": {"B": b"\x00\xff"}, "n": {"N": "7"}}
    assert decode_key(encode_key(key)) == key and decode_key(encode_key(None)) is None
