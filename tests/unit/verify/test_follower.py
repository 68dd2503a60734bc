"""StreamFollower and catch_up against a thread-safe scripted Kinesis: concurrent reading, shard
order, resuming, resharding, throttling, expiry, pacing, the deadline, errors, back-pressure."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from botocore.exceptions import EndpointConnectionError
from verify_fakes import client_error

from verify.errors import EndpointUnreachable
from verify.follower import StreamFollower, catch_up
from verify.kinesis_reader import Backoff

FOREVER = float("inf")


def rec(shard: str, n: int) -> dict:
    return {
        "SequenceNumber": str(n),
        "PartitionKey": f"{shard}-k",
        "Data": b'{"trace": "%s-%d"}' % (shard.encode(), n),
        "ApproximateArrivalTimestamp": datetime.fromtimestamp(1_700_000_000 + n, UTC),
    }


class Shard:
    def __init__(self, count: int = 0, *, parent: str | None = None, closed: bool = False,
                 endless: bool = False, first: int = 1) -> None:  # fmt: skip
        self.parent = parent
        self.closed = closed
        self.endless = endless  # always more records behind the tip
        self.shard_id = ""
        self.records: list[dict] = []
        self.next = first
        self.add(count)

    def add(self, count: int) -> None:
        for _ in range(count):
            self.records.append(rec(self.shard_id or "?", self.next))
            self.next += 1


class ThreadedKinesis:
    """Shards as lists of records; iterators are 'shard:position'. Thread-safe. ``faults`` maps
    (shard, GetRecords call number on that shard) to an exception; every call is logged."""

    def __init__(self, shards: dict[str, Shard], *, page: int = 3, delay: float = 0.002,
                 region: str = "us-east-1") -> None:  # fmt: skip
        self.shards = shards
        for sid, shard in shards.items():
            self._name(sid, shard)
        self.page = page
        self.delay = delay
        self.faults: dict[tuple[str, int], BaseException] = {}
        self.list_fault: BaseException | None = None
        self.list_throttles = 0
        self.iterator_throttles: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.max_total_in_flight = 0
        self.iterators: list[tuple[str, str, str | None]] = []  # shard, type, after
        self.call_times: defaultdict[str, list[float]] = defaultdict(list)
        self.caller_threads: set[int] = set()
        self.served = 0  # records handed out by GetRecords
        self.region = region

    def _name(self, sid: str, shard: Shard) -> None:
        shard.shard_id = sid
        for r in shard.records:
            n = int(r["SequenceNumber"])
            r.update(rec(sid, n))

    def add_shard(self, sid: str, shard: Shard) -> None:
        with self.lock:
            self._name(sid, shard)
            self.shards[sid] = shard

    def list_shards(self, **kwargs):
        if self.list_fault is not None:
            raise self.list_fault
        if self.list_throttles:
            self.list_throttles -= 1
            raise client_error("LimitExceededException")
        with self.lock:
            out = []
            for sid in sorted(self.shards):
                shard = self.shards[sid]
                rng = {"StartingSequenceNumber": "0"}
                if shard.closed:
                    rng["EndingSequenceNumber"] = "999999"
                entry = {"ShardId": sid, "SequenceNumberRange": rng}
                if shard.parent:
                    entry["ParentShardId"] = shard.parent
                out.append(entry)
        return {"Shards": out}

    def get_shard_iterator(self, StreamName, ShardId, ShardIteratorType, **kw):
        with self.lock:
            if self.iterator_throttles.get(ShardId):
                self.iterator_throttles[ShardId] -= 1
                raise client_error("ProvisionedThroughputExceededException")
            after = kw.get("StartingSequenceNumber")
            self.iterators.append((ShardId, ShardIteratorType, after))
            records = self.shards[ShardId].records
            pos = 0
            if ShardIteratorType == "AFTER_SEQUENCE_NUMBER":
                pos = next(i + 1 for i, r in enumerate(records) if r["SequenceNumber"] == after)
        return {"ShardIterator": f"{ShardId}:{pos}"}

    def get_records(self, ShardIterator, Limit):
        sid, pos_text = ShardIterator.rsplit(":", 1)
        pos = int(pos_text)
        with self.lock:
            self.calls[sid] += 1
            fault = self.faults.pop((sid, self.calls[sid]), None)
            self.in_flight[sid] += 1
            self.max_in_flight[sid] = max(self.max_in_flight[sid], self.in_flight[sid])
            self.max_total_in_flight = max(self.max_total_in_flight, sum(self.in_flight.values()))
            self.call_times[sid].append(time.monotonic())
            self.caller_threads.add(threading.get_ident())
        try:
            time.sleep(self.delay)
            if fault is not None:
                raise fault
            with self.lock:
                shard = self.shards[sid]
                if shard.endless and pos + self.page > len(shard.records):
                    shard.add(self.page)
                chunk = shard.records[pos : pos + min(self.page, Limit)]
                end = pos + len(chunk)
                nxt = None if shard.closed and end >= len(shard.records) else f"{sid}:{end}"
                behind = 1000 if shard.endless else 0
                self.served += len(chunk)
            return {"Records": chunk, "NextShardIterator": nxt, "MillisBehindLatest": behind}
        finally:
            with self.lock:
                self.in_flight[sid] -= 1


def four_shards(count: int = 10) -> dict[str, Shard]:
    return {f"shardId-{i}": Shard(count + i) for i in range(4)}


class Collected:
    """A sink that remembers each record and the thread it was called in."""

    def __init__(self) -> None:
        self.records: list = []
        self.threads: set[int] = set()

    def __call__(self, record) -> None:
        self.threads.add(threading.get_ident())
        self.records.append(record)

    def per_shard(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(list)
        for r in self.records:
            out[r.shard_id].append(int(r.sequence_number))
        return dict(out)


def expected(fake: ThreadedKinesis) -> dict[str, list[int]]:
    return {
        sid: [int(r["SequenceNumber"]) for r in shard.records]
        for sid, shard in fake.shards.items()
        if shard.records
    }


def follower(fake: ThreadedKinesis, label: str, **kw) -> StreamFollower:
    kw.setdefault("min_call_interval_s", 0.0)
    return StreamFollower(fake, "s", label=label, **kw)


@pytest.fixture
def no_thread_left():
    """Call it right after catch_up returns or raises: every reader thread must be joined by
    then (a thread merely told to stop would still be alive)."""
    before = threading.active_count()

    def check() -> None:
        assert threading.active_count() == before

    yield check
    check()


def test_both_regions_read_concurrently_every_record_in_shard_order_sinks_in_caller(
    no_thread_left,
):
    a, b = ThreadedKinesis(four_shards(12)), ThreadedKinesis(four_shards(7), region="us-west-2")
    sink_a, sink_b = Collected(), Collected()
    progress: Counter[str] = Counter()
    stats = catch_up(
        [(follower(a, "a"), sink_a), (follower(b, "b"), sink_b)], deadline=FOREVER,
        on_progress=lambda label, n: progress.update({label: n}),
    )  # fmt: skip
    assert sink_a.per_shard() == expected(a) and sink_b.per_shard() == expected(b)
    assert sink_a.threads == sink_b.threads == {threading.get_ident()}
    assert threading.get_ident() not in a.caller_threads | b.caller_threads
    assert stats["a"].records == 12 * 4 + 6 and stats["b"].records == 7 * 4 + 6
    assert progress == {"a": stats["a"].records, "b": stats["b"].records}
    assert stats["a"].complete and stats["b"].complete
    assert stats["a"].per_shard == {sid: len(s.records) for sid, s in a.shards.items()}
    # one call in flight per shard, several shards at once
    assert set(a.max_in_flight.values()) == set(b.max_in_flight.values()) == {1}
    assert a.max_total_in_flight > 1 and b.max_total_in_flight > 1
    first = sink_a.records[0]
    assert first.arrival_ms == 1_700_000_000_000 + int(first.sequence_number) * 1000


def test_more_shards_than_threads_still_one_reader_per_shard(no_thread_left):
    fake = ThreadedKinesis({f"shardId-{i:02d}": Shard(5) for i in range(12)})
    sink = Collected()
    stats = catch_up([(follower(fake, "a"), sink)], deadline=FOREVER, max_threads=3)
    assert sink.per_shard() == expected(fake) and stats["a"].records == 60
    assert len(fake.caller_threads) <= 3 and set(fake.max_in_flight.values()) == {1}


def test_next_pass_delivers_only_new_records_and_reads_new_child_shards(no_thread_left):
    fake = ThreadedKinesis({"shardId-0": Shard(5), "shardId-1": Shard(4), "shardId-2": Shard(0)})
    f = follower(fake, "b")
    sink = Collected()
    catch_up([(f, sink)], deadline=FOREVER)
    assert f.records == 9
    # New records in open shards; shardId-1 is split: it gets more records, then closes.
    fake.shards["shardId-0"].add(2)
    fake.shards["shardId-1"].add(3)
    fake.shards["shardId-1"].closed = True
    fake.add_shard("shardId-3", Shard(4, parent="shardId-1", first=100))
    fake.iterators.clear()
    second = Collected()
    stats = catch_up([(f, second)], deadline=FOREVER)
    assert second.per_shard() == {
        "shardId-0": [6, 7], "shardId-1": [5, 6, 7], "shardId-3": [100, 101, 102, 103],
    }  # fmt: skip
    assert {r.generation for r in second.records if r.shard_id == "shardId-3"} == {1}
    assert ("shardId-0", "AFTER_SEQUENCE_NUMBER", "5") in fake.iterators
    assert ("shardId-1", "AFTER_SEQUENCE_NUMBER", "4") in fake.iterators
    assert ("shardId-2", "TRIM_HORIZON", None) in fake.iterators  # nothing read from it yet
    assert ("shardId-3", "TRIM_HORIZON", None) in fake.iterators
    assert stats["b"].records == 9 and f.records == 18
    assert f.stats.records == 18 and f.stats.per_shard["shardId-1"] == 7
    assert stats["b"].per_shard == {"shardId-0": 2, "shardId-1": 3, "shardId-2": 0, "shardId-3": 4}
    # shardId-1 is closed and was read to its end: never read again
    fake.iterators.clear()
    calls = fake.calls["shardId-1"]
    third = catch_up([(f, Collected())], deadline=FOREVER)
    assert fake.calls["shardId-1"] == calls
    assert "shardId-1" not in {shard for shard, _, _ in fake.iterators}
    assert third["b"].records == 0 and third["b"].complete


def test_child_shard_read_beside_its_unfinished_parent(no_thread_left):
    fake = ThreadedKinesis(
        {"shardId-0": Shard(30, closed=True), "shardId-1": Shard(30, parent="shardId-0")},
        delay=0.005,
    )  # fmt: skip
    sink = Collected()
    catch_up([(follower(fake, "a"), sink)], deadline=FOREVER)
    assert sink.per_shard() == expected(fake)
    assert fake.max_total_in_flight == 2
    assert {r.shard_id: r.generation for r in sink.records} == {"shardId-0": 0, "shardId-1": 1}


def test_throttling_backs_off_and_an_expired_iterator_resumes_after_the_last_record(
    no_thread_left,
):
    fake = ThreadedKinesis(four_shards(6))
    throttle = client_error("ProvisionedThroughputExceededException")
    fake.faults = {
        ("shardId-1", 1): throttle,
        ("shardId-1", 2): throttle,
        ("shardId-2", 3): client_error("ExpiredIteratorException"),
    }
    fake.iterator_throttles["shardId-3"] = 1
    slept: list[float] = []
    f = follower(fake, "a", sleep=slept.append, backoff=Backoff(0.1, 5))
    sink = Collected()
    stats = catch_up([(f, sink)], deadline=FOREVER)
    assert sorted(slept) == [0.1, 0.1, 0.2]
    assert sink.per_shard() == expected(fake)  # every record once, in order
    assert stats["a"].throttles == 3 and stats["a"].expired_iterators == 1
    assert ("shardId-2", "AFTER_SEQUENCE_NUMBER", "6") in fake.iterators  # two pages of 3 read
    assert f.stats.throttles == 3 and f.stats.expired_iterators == 1


def test_calls_on_one_shard_are_spaced_by_the_minimum_interval(no_thread_left):
    fake = ThreadedKinesis({"shardId-0": Shard(12), "shardId-1": Shard(12)}, delay=0.0)
    f = follower(fake, "a", min_call_interval_s=0.05)
    catch_up([(f, Collected())], deadline=FOREVER)
    for sid in ("shardId-0", "shardId-1"):
        times = fake.call_times[sid]
        assert len(times) == 5  # four full pages and the empty one at the tip
        assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.045
    # the two shards were paced side by side, not one after the other
    first, second = sorted(fake.call_times.values())
    assert second[0] < first[-1]


def test_deadline_stops_the_pass_names_unfinished_shards_and_the_next_pass_resumes(
    no_thread_left,
):
    fake = ThreadedKinesis({"shardId-0": Shard(5), "shardId-1": Shard(endless=True)}, delay=0.01)
    f = follower(fake, "b")
    sink = Collected()
    started = time.monotonic()
    stats = catch_up([(f, sink)], deadline=started + 0.3)
    no_thread_left()
    assert time.monotonic() - started < 5
    assert stats["b"].unfinished == ["shardId-1"] and not stats["b"].complete
    assert f.stats.unfinished == ["shardId-1"]
    read = sink.per_shard()["shardId-1"]
    assert read == list(range(1, len(read) + 1)) and len(read) >= 3
    later = Collected()
    catch_up([(f, later)], deadline=time.monotonic() + 0.2)
    assert later.per_shard()["shardId-1"][0] == read[-1] + 1  # nothing twice, nothing skipped


def test_a_deadline_already_past_reads_nothing_and_lists_every_shard_unfinished(no_thread_left):
    fake = ThreadedKinesis(four_shards(3))
    stats = catch_up([(follower(fake, "a"), Collected())], deadline=0.0, clock=lambda: 1.0)
    assert stats["a"].unfinished == sorted(fake.shards) and stats["a"].shards == 4
    assert sum(fake.calls.values()) == 0


def test_connection_failure_is_endpoint_unreachable_naming_the_stream(no_thread_left):
    fake = ThreadedKinesis(four_shards(30), delay=0.005)
    fake.faults = {("shardId-2", 2): EndpointConnectionError(endpoint_url="http://127.0.0.1:9")}
    other = ThreadedKinesis(four_shards(30), delay=0.005)
    with pytest.raises(EndpointUnreachable, match=r"b: stream s: endpoint not reachable"):
        catch_up([(follower(other, "a"), Collected()), (follower(fake, "b"), Collected())],
                 deadline=FOREVER)  # fmt: skip
    no_thread_left()


def test_connection_failure_while_listing_is_endpoint_unreachable(no_thread_left):
    fake = ThreadedKinesis(four_shards(3))
    fake.list_fault = ConnectionRefusedError("refused")
    with pytest.raises(EndpointUnreachable, match="a: stream s"):
        catch_up([(follower(fake, "a"), Collected())], deadline=FOREVER)


def test_listing_is_retried_when_throttled(no_thread_left):
    fake = ThreadedKinesis(four_shards(2))
    fake.list_throttles = 2
    slept: list[float] = []
    f = follower(fake, "a", sleep=slept.append, backoff=Backoff(0.1, 5))
    stats = catch_up([(f, Collected())], deadline=FOREVER)
    assert slept == [0.1, 0.2] and stats["a"].records == 14 and stats["a"].complete


def test_resource_not_found_propagates(no_thread_left):
    fake = ThreadedKinesis(four_shards(3))
    fake.list_fault = client_error("ResourceNotFoundException")
    with pytest.raises(Exception) as caught:
        catch_up([(follower(fake, "a"), Collected())], deadline=FOREVER)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    fake.list_fault = None
    fake.faults = {("shardId-3", 1): client_error("ResourceNotFoundException")}
    with pytest.raises(Exception) as caught:
        catch_up([(follower(fake, "a"), Collected())], deadline=FOREVER)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_failing_sink_stops_every_reader(no_thread_left):
    fake = ThreadedKinesis(four_shards(50))

    def sink(record):
        if record.sequence_number == "7":
            raise ValueError("store full")

    with pytest.raises(ValueError, match="store full"):
        catch_up([(follower(fake, "a"), sink)], deadline=FOREVER)
    no_thread_left()


def test_readers_wait_for_a_slow_sink_instead_of_reading_ahead(no_thread_left):
    fake = ThreadedKinesis({f"shardId-{i}": Shard(200) for i in range(4)}, page=10, delay=0.0)
    ahead: list[int] = []
    delivered = 0

    def slow(record):
        nonlocal delivered
        delivered += 1
        with fake.lock:
            ahead.append(fake.served - delivered)
        time.sleep(0.0002)

    catch_up([(follower(fake, "a"), slow)], deadline=FOREVER, max_threads=4)
    assert delivered == 800
    # queue (4 pages) + a page in each reader's hand + the one being fetched: 12 pages at most
    assert max(ahead) <= 12 * 10


def test_labels_must_be_unique():
    fake = ThreadedKinesis(four_shards(1))
    with pytest.raises(ValueError, match="unique"):
        catch_up([(follower(fake, "a"), Collected()), (follower(fake, "a"), Collected())],
                 deadline=FOREVER)  # fmt: skip
