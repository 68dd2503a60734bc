"""The shard poller over fakes: it reads nothing while the replicator's gate is shut (no
GetShardIterator or GetRecords each poll interval, no ``batch_retry``), and it stops working a
shard whose records were trimmed before they were applied (logged once, counted, and reported
by the exit: code 2 on drain). A drain counts only reads sent after it was requested."""

from __future__ import annotations

from replicator.adapters.kinesis import ReadResult
from replicator.adapters.leases import Lease
from replicator.adapters.streams import TrimmedData
from replicator.core.batch import BatchResult, BatchStatus
from replicator.core.metrics import Metrics
from replicator.core.records import SourceRecord
from replicator.core.watermark import ShardInfo
from replicator.runners.poller import EXIT_NOT_DRAINED, Poller, PollerSettings


class Clock:
    """Seconds; sleeping advances it."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Leases:
    """One worker's lease table: every shard free to take."""

    def __init__(self) -> None:
        self.held: dict[str, int] = {}
        self.released: list[str] = []
        self.calls = 0

    def heartbeat(self, now_ms: int, duration_ms: int) -> None:
        return None

    def list(self) -> tuple[dict[str, Lease], dict[str, int]]:
        leases = {k: Lease(k, "me", c, 2**62, None) for k, c in self.held.items()}
        return leases, {"me": 2**62}

    def take(self, shard_id: str, now_ms: int, duration_ms: int) -> int | None:
        self.held[shard_id] = self.held.get(shard_id, 0) + 1
        return self.held[shard_id]

    def renew(self, shard_id, now_ms, duration_ms, last_seq, counter) -> int | None:
        return counter

    def release(self, shard_id: str, last_seq: str | None) -> None:
        self.held.pop(shard_id, None)
        self.released.append(shard_id)

    def finish(self, shard_id: str) -> None:
        self.held.pop(shard_id, None)

    def leave(self) -> None:
        return None


class Reader:
    """One open shard; ``trimmed``: positioning it raises TrimmedData."""

    def __init__(self, trimmed: bool = False) -> None:
        self.trimmed = trimmed
        self.iterators = 0
        self.reads = 0
        self.calls = 0

    def list_shards(self) -> list[ShardInfo]:
        return [ShardInfo("shard-0")]

    def iterator(self, shard_id, after_sequence, latest=False, at_timestamp_ms=None) -> str:
        self.iterators += 1
        if self.trimmed:
            raise TrimmedData(f"shard {shard_id}: position is past the stream's 24 h retention")
        return "it"

    def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult:
        self.reads += 1
        return ReadResult([], "it", None)


class Checkpoints:
    def load(self) -> dict:
        return {}


class Applier:
    """A BatchReplicator with a gate: shut for the first ``shut_for`` answers of ready()."""

    def __init__(self, shut_for: int = 0) -> None:
        self.metrics = Metrics()
        self.shut_for = shut_for
        self.asked = 0

    def ready(self) -> str | None:
        self.asked += 1
        return "bootstrap copy in progress" if self.asked <= self.shut_for else None

    def process(self, shard_id, records, **kw) -> BatchResult:
        return BatchResult(BatchStatus.REPLICATED, len(records), None)

    def idle(self, *args, **kw) -> bool:
        return True


class NoClaims:
    def publish(self):
        return None


def poller(reader: Reader, applier: Applier, **settings) -> tuple[Poller, list]:
    clock, events = Clock(), []
    p = Poller(
        reader=reader, leases=Leases(), replicator=applier, checkpoints=Checkpoints(),
        publisher=NoClaims(), settings=PollerSettings(poll_interval_s=0.2, quiet_s=0.5,
                                                      **settings),
        clock=clock, sleep=clock.sleep, log=lambda event, **f: events.append((event, f)),
    )  # fmt: skip
    return p, events


def test_a_shut_gate_keeps_the_poller_from_reading_until_it_opens() -> None:
    reader, applier = Reader(), Applier(shut_for=50)
    p, events = poller(reader, applier, max_seconds=20.0)
    p.run()
    names = [e for e, _ in events]
    assert applier.asked > 50  # asked every poll interval, then the gate opened
    assert names.count("apply_waiting") == 1  # said once, not every interval
    assert "batch_retry" not in names and "poll_failed" not in names
    assert names.index("apply_ready") > names.index("apply_waiting")
    assert reader.iterators == 1  # positioned once the gate opened, never while shut
    assert reader.reads == applier.asked - 50


def test_no_reads_at_all_while_the_gate_stays_shut() -> None:
    reader, applier = Reader(), Applier(shut_for=10**9)
    p, events = poller(reader, applier, max_seconds=10.0)
    p.run()
    assert reader.iterators == 0 and reader.reads == 0
    assert [e for e, _ in events].count("apply_waiting") == 1


def test_trimmed_records_stop_the_shard_and_a_drain_exits_2() -> None:
    reader, applier = Reader(trimmed=True), Applier()
    p, events = poller(reader, applier, until_drained=True, drain_timeout_s=30.0)
    code = p.run()
    assert code == EXIT_NOT_DRAINED
    assert reader.iterators == 1  # not positioned again and again
    lost = [f for e, f in events if e == "shard_data_lost"]
    assert len(lost) == 1 and lost[0]["shard_id"] == "shard-0"
    assert "bootstrap" in lost[0]["note"]
    assert applier.metrics.counters["shards_data_lost"] == 1
    assert p.lost_shards == {"shard-0": lost[0]["error"]}
    assert "shard-0" in p.leases.released
    assert "lost records" in p.exit_reason and "bootstrap" in p.exit_reason
    assert [f for e, f in events if e == "exit"][0]["lost_shards"] == ["shard-0"]


def test_trimmed_records_are_reported_by_a_stop_too() -> None:
    reader, applier = Reader(trimmed=True), Applier()
    p, _ = poller(reader, applier, max_seconds=5.0)
    assert p.run() == 0  # not draining: the exit code stays, the reason says it
    assert "lost records" in p.exit_reason
    assert reader.iterators == 1


class HeldReader(Reader):
    """A frozen source: the read sent at ``hold_at`` is answered empty only after the drain
    was requested and a record its producer was acknowledged for had arrived."""

    def __init__(self, hold_at: int, poller_ref: list) -> None:
        super().__init__()
        self.hold_at, self.poller_ref = hold_at, poller_ref
        self.pending: list[SourceRecord] = []

    def read(self, shard_id: str, iterator: str, limit: int) -> ReadResult:
        self.reads += 1
        if self.reads == self.hold_at:  # held past the resume: the answer predates the record
            self.pending = [SourceRecord("shard-0", "49000000000000000001", "k", b"{}", 0)]
            self.poller_ref[0].request_drain()
            return ReadResult([], "it", 0)
        records, self.pending = self.pending, []
        return ReadResult(records, "it", 0)


class CountingApplier(Applier):
    def __init__(self) -> None:
        super().__init__()
        self.records = 0

    def process(self, shard_id, records, **kw) -> BatchResult:
        self.records += len(records)
        return super().process(shard_id, records, **kw)


def test_a_drain_waits_for_a_read_sent_after_it_was_requested() -> None:
    ref: list = []
    reader, applier = HeldReader(hold_at=20, poller_ref=ref), CountingApplier()
    p, events = poller(reader, applier, drain_timeout_s=30.0)
    ref.append(p)
    assert p.run() == 0 and p.exit_reason == "drained"
    assert applier.records == 1  # the record acknowledged before the drain was copied
    assert reader.reads > 21


def test_a_drain_barrier_holds_the_drain_and_counts_only_reads_after_it() -> None:
    """Active-active: the applier drains only once the other region's forwarder has drained,
    and only on reads made after that."""
    reader, applier = Reader(), CountingApplier()
    p, _ = poller(reader, applier, until_drained=True, drain_timeout_s=60.0)
    opened: list[float] = []

    def barrier(since: float) -> float | None:
        if reader.reads < 30:
            return None  # the other forwarder still sends
        if not opened:
            opened.append(p.clock() + 0.5)  # it drained a little after this look
        return opened[0]

    p.drain_barrier = barrier
    assert p.run() == 0 and p.exit_reason == "drained"
    assert reader.reads > 30
    assert p.clock() > opened[0]  # a read after the barrier, then the exit


def test_a_barrier_that_never_opens_ends_in_a_drain_timeout() -> None:
    reader, applier = Reader(), CountingApplier()
    p, _ = poller(reader, applier, until_drained=True, drain_timeout_s=5.0)
    p.drain_barrier = lambda since: None
    assert p.run() == 2 and p.exit_reason == "drain timeout"
