"""Follow Kinesis streams: every shard of every stream read at once, each pass resuming where
the previous one stopped.

Verify reads the target stream several times while a slow replicator catches up (settle), so a
:class:`StreamFollower` remembers, per shard, the last sequence number its sink was given: the
next pass asks for ``AFTER_SEQUENCE_NUMBER`` of it, a closed shard read to its end is never read
again, and shards created since (resharding) are found by listing the stream again.

:func:`catch_up` runs one pass over any number of followers (both regions together)::

    reader threads (at most one per shard, max_threads in all)       calling thread
      GetRecords -> StreamRecord page  --> bounded queue -->  sink(record) for each record
                                                              (the store: one SQLite connection)

- Each shard is read by one thread at a time, so at most one GetRecords is in flight per shard,
  and calls on one shard are spaced by at least ``min_call_interval_s`` (AWS allows 5
  GetRecords a second per shard; REFERENCE.md, "Kinesis Data Streams"). A shard's pass ends at
  its end (closed: ``NextShardIterator`` is None) or at its tip (open: an empty page with
  ``MillisBehindLatest`` 0), without waiting.
- Pages go through one bounded queue, so memory stays flat: a reader blocks when the sinks fall
  behind (at most ``QUEUE_PAGES`` pages plus one in each reader's hand are held). Pages of one
  shard are queued in the order they were read, and sinks are called only in the calling
  thread, so the records of a shard reach their sink in shard order (the store numbers
  positions in call order). Shards are read concurrently, parents beside their children:
  every record carries its shard's generation, which the store orders by.
- On a botocore client, GetRecords answers are parsed with ``json.loads`` rather than botocore's
  per-record parser (:func:`verify.kinesis_reader.raw_get_records`: about 16 us a record less,
  which is most of what reading costs this process).
- Throttling backs off with the follower's ``sleep``; an expired iterator is renewed after the
  last sequence number read; a connection failure becomes :class:`EndpointUnreachable` naming
  the stream and region, raised in the calling thread; any other error (ResourceNotFound)
  propagates as it is. Every reader thread is stopped and joined before :func:`catch_up`
  returns or raises, at the deadline too (a call already in flight finishes first: the client's
  timeouts bound it).
- At the deadline the pass stops: records read but not yet given to a sink are dropped (the
  shard's position stays at the last record delivered, so the next pass reads them again) and
  the shards not finished are listed in the pass's stats.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from verify.errors import EndpointUnreachable
from verify.kinesis_reader import (
    EXPIRED_CODE,
    THROTTLE_CODES,
    Backoff,
    KinesisApi,
    ReadStats,
    ShardInfo,
    arrival_ms,
    error_code,
    is_connection_error,
    list_shards,
    raw_get_records,
)
from verify.model import StreamRecord

__all__ = ["StreamFollower", "catch_up"]

Sink = Callable[[StreamRecord], None]

POLL_S = 0.05  # how often a blocked queue put or get looks at the stop flag and the deadline
QUEUE_PAGES = 4  # pages waiting for the sinks (each up to ``limit`` records)


@dataclass(slots=True)
class _Shard:
    """What a follower knows of one shard across passes."""

    info: ShardInfo
    last_seq: str | None = None  # the last sequence number given to the sink
    finished: bool = False  # closed and read to its end: never read again
    records: int = 0  # given to the sink, over every pass
    last_call: float | None = None  # follower clock at the last GetRecords (pacing)


class StreamFollower:
    """Follows one stream: every shard from TRIM_HORIZON, each catch-up continuing where the
    last one stopped (AFTER_SEQUENCE_NUMBER), new shards found by listing again."""

    def __init__(
        self,
        api: KinesisApi,
        stream: str,
        *,
        label: str,
        limit: int = 10_000,
        backoff: Backoff = Backoff(),  # noqa: B008 - frozen value
        min_call_interval_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api = api
        self.stream = stream
        self.label = label
        self.limit = limit
        self.backoff = backoff
        self.min_call_interval_s = min_call_interval_s
        self.clock = clock
        self.sleep = sleep
        self.stats = ReadStats(stream)  # cumulative over every catch-up
        self.records = 0  # records delivered so far
        self._shards: dict[str, _Shard] = {}
        self._listed: list[str] = []  # shard ids of the latest listing, parents first
        self._busy = False
        self._get_records = raw_get_records(api) or self._parsed_get_records

    def __repr__(self) -> str:
        return f"StreamFollower({self.label!r}, {self.stream!r}, records={self.records})"

    def where(self) -> str:
        """The stream, its region and endpoint, for messages."""
        meta = getattr(self.api, "meta", None)
        region = getattr(meta, "region_name", None)
        url = getattr(meta, "endpoint_url", None)
        text = f"{self.label}: stream {self.stream}"
        if region:
            text += f" in {region}"
        if url:
            text += f" at {url}"
        return text

    # ------------------------------------------------------------------ listing

    def _refresh(self) -> list[_Shard]:
        """List the stream again; the shards this pass must read, parents first."""
        attempt = 0
        while True:
            try:
                listed = list_shards(self.api, self.stream)
                break
            except Exception as exc:
                if error_code(exc) not in THROTTLE_CODES or attempt >= 8:
                    raise
                self.sleep(self.backoff.delay(attempt))
                attempt += 1
        for info in listed:
            known = self._shards.get(info.shard_id)
            if known is None:
                self._shards[info.shard_id] = _Shard(info)
            else:
                known.info = info  # an open shard may have closed since
        self._listed = [info.shard_id for info in listed]
        return [self._shards[sid] for sid in self._listed if not self._shards[sid].finished]

    # ------------------------------------------------------------------ reading (reader thread)

    def _iterator(self, shard_id: str, after: str | None) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream, "ShardId": shard_id}
        if after is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
        return self.api.get_shard_iterator(**kwargs)["ShardIterator"]

    def _parsed_get_records(self, iterator: str, limit: int) -> dict[str, Any]:
        return self.api.get_records(ShardIterator=iterator, Limit=limit)

    def _pace(self, shard: _Shard) -> None:
        """At least ``min_call_interval_s`` between two GetRecords on one shard."""
        interval = self.min_call_interval_s
        if interval <= 0:
            return
        if shard.last_call is not None:
            wait = shard.last_call + interval - self.clock()
            if wait > 0:
                self.sleep(wait)
        shard.last_call = self.clock()

    def _read(self, task: _Task, run: _Pass) -> str | None:
        """Read one shard until its end ('end'), its tip ('tip'), the deadline or a stop (None).
        Pages go to the pass's queue; only this thread touches the shard while it runs."""
        shard, info = task.shard, task.shard.info
        shard_id, generation = info.shard_id, info.generation
        last = shard.last_seq
        get_records, limit, backoff = self._get_records, self.limit, self.backoff
        iterator: str | None = None
        throttled = 0
        while True:
            if run.stop.is_set() or run.clock() >= run.deadline:
                return None
            try:
                if iterator is None:  # GetShardIterator is throttled like GetRecords
                    task.calls += 1
                    iterator = self._iterator(shard_id, last)
                self._pace(shard)
                task.calls += 1
                page = get_records(iterator, limit)
            except Exception as exc:
                code = error_code(exc)
                if code in THROTTLE_CODES:
                    task.throttles += 1
                    self.sleep(backoff.delay(throttled))
                    throttled += 1
                    continue
                if code == EXPIRED_CODE:
                    task.expired += 1
                    iterator = None  # renewed after the last record read
                    continue
                raise
            throttled = 0
            raw = page.get("Records")
            if raw:
                records = [
                    StreamRecord(
                        shard_id,
                        generation,
                        r["SequenceNumber"],
                        r["PartitionKey"],
                        bytes(r["Data"]),
                        arrival_ms(r["ApproximateArrivalTimestamp"]),
                    )
                    for r in raw
                ]
                last = records[-1].sequence_number
                if not run.put((task, records, last)):
                    return None
            iterator = page.get("NextShardIterator")
            if iterator is None:
                return "end"
            if not raw and page.get("MillisBehindLatest", 0) == 0:
                return "tip"


@dataclass(slots=True, eq=False)
class _Task:
    """One shard in one pass. The reader thread writes the counters; the calling thread reads
    them after joining it."""

    follower: StreamFollower
    shard: _Shard
    sink: Sink
    calls: int = 0
    throttles: int = 0
    expired: int = 0
    delivered: int = 0
    outcome: str | None = None  # 'end' or 'tip' once the calling thread has delivered it all


class _Pass:
    """The shared state of one catch-up: task list, queue, stop flag, failures."""

    def __init__(self, tasks: list[_Task], deadline: float, clock: Callable[[], float]) -> None:
        self.todo: deque[_Task] = deque(tasks)
        self.queue: queue.Queue[tuple[_Task, list[StreamRecord] | None, Any]] = queue.Queue(
            maxsize=QUEUE_PAGES
        )
        self.stop = threading.Event()
        self.deadline = deadline
        self.clock = clock
        self.failure: tuple[_Task, BaseException] | None = None

    def put(self, item: tuple) -> bool:
        """Queue an item unless the pass is stopping (then False)."""
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def work(self) -> None:
        """A reader thread: shards from the task list, one at a time, until none is left."""
        while not self.stop.is_set():
            try:
                task = self.todo.popleft()
            except IndexError:
                return
            try:
                outcome = task.follower._read(task, self)
            except BaseException as exc:  # handed to the calling thread
                if self.failure is None:
                    self.failure = (task, exc)
                self.stop.set()
                return
            if outcome is None or not self.put((task, None, outcome)):
                return  # deadline or stop: the shards not started stay unfinished


def catch_up(
    followers: Sequence[tuple[StreamFollower, Sink]],
    *,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    max_threads: int = 32,
    on_progress: Callable[[str, int], None] | None = None,
) -> dict[str, ReadStats]:
    """One pass: every shard of every follower read concurrently to its end (closed: NextShardIterator
    None) or tip (open: an empty page with MillisBehindLatest 0); each follower's sink is called
    ONLY in the calling thread, per shard in shard order (records of one shard never reordered).
    Returns this pass's stats per follower label (records, calls, throttles, expired iterators,
    unfinished shards when the deadline passed)."""
    labels = [f.label for f, _ in followers]
    if len(set(labels)) != len(labels):
        raise ValueError(f"follower labels must be unique: {labels}")
    if max_threads < 1:
        raise ValueError(f"max_threads must be at least 1, not {max_threads}")
    for follower, _ in followers:
        if follower._busy:
            raise RuntimeError(f"{follower!r} is already catching up")
    started = {f.label: f.clock() for f, _ in followers}
    tasks: list[tuple[tuple[int, int, int], _Task]] = []
    listed: dict[str, list[_Shard]] = {}
    for index, (follower, sink) in enumerate(followers):
        try:  # listed even past the deadline, so the unfinished shards can be named
            shards = follower._refresh()
        except Exception as exc:
            if is_connection_error(exc):
                raise _unreachable(follower, exc) from exc
            raise
        listed[follower.label] = shards
        for order, shard in enumerate(shards):
            task = _Task(follower, shard, sink)
            tasks.append(((shard.info.generation, index, order), task))
    tasks.sort(key=lambda item: item[0])  # parents first, the streams side by side
    ordered = [task for _, task in tasks]
    if clock() < deadline and ordered:
        _run(ordered, deadline, clock, max_threads, on_progress)
    return {f.label: _account(f, listed[f.label], ordered, started[f.label]) for f, _ in followers}


def _run(
    tasks: list[_Task],
    deadline: float,
    clock: Callable[[], float],
    max_threads: int,
    on_progress: Callable[[str, int], None] | None,
) -> None:
    """Start the readers, deliver their pages in this thread, stop and join them whatever
    happens."""
    count = min(max_threads, len(tasks))
    run = _Pass(tasks, deadline, clock)
    followers = {id(t.follower): t.follower for t in tasks}.values()
    for follower in followers:
        follower._busy = True
    threads = [
        threading.Thread(target=run.work, name=f"verify-reader-{n}", daemon=True)
        for n in range(count)
    ]
    try:
        for thread in threads:
            thread.start()
        pending = len(tasks)
        get = run.queue.get
        while pending and not run.stop.is_set():
            try:
                task, records, value = get(timeout=POLL_S)
            except queue.Empty:
                if clock() >= deadline:
                    break
                continue
            if records is None:
                task.outcome = value
                pending -= 1
                continue
            sink = task.sink
            for record in records:
                sink(record)
            shard = task.shard
            shard.last_seq = value
            n = len(records)
            shard.records += n
            task.delivered += n
            task.follower.records += n
            if on_progress is not None:
                on_progress(task.follower.label, n)
            if clock() >= deadline:
                break
    finally:
        run.stop.set()
        for thread in threads:
            if thread.ident is not None:
                thread.join()
        for follower in followers:
            follower._busy = False
    if run.failure is not None:
        task, exc = run.failure
        if isinstance(exc, Exception) and is_connection_error(exc):
            raise _unreachable(task.follower, exc) from exc
        raise exc  # as the reader thread saw it, with its traceback


def _unreachable(follower: StreamFollower, exc: Exception) -> EndpointUnreachable:
    return EndpointUnreachable(f"{follower.where()}: endpoint not reachable ({exc})")


def _account(
    follower: StreamFollower, listed: list[_Shard], tasks: list[_Task], started: float
) -> ReadStats:
    """This pass's stats for one follower, added to its cumulative stats."""
    stats = ReadStats(follower.stream, shards=len(follower._listed))
    for task in tasks:
        if task.follower is not follower:
            continue
        stats.records += task.delivered
        stats.calls += task.calls
        stats.throttles += task.throttles
        stats.expired_iterators += task.expired
        stats.per_shard[task.shard.info.shard_id] = task.delivered
        if task.outcome == "end":
            task.shard.finished = True
    done = {id(t.shard) for t in tasks if t.follower is follower and t.outcome is not None}
    stats.unfinished = [s.info.shard_id for s in listed if id(s) not in done]
    stats.seconds = follower.clock() - started
    total = follower.stats
    total.shards = stats.shards
    total.records += stats.records
    total.calls += stats.calls
    total.throttles += stats.throttles
    total.expired_iterators += stats.expired_iterators
    total.seconds += stats.seconds
    total.unfinished = list(stats.unfinished)
    total.per_shard = {sid: follower._shards[sid].records for sid in follower._listed}
    return stats
