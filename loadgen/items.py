"""The item producer of the ``dynamodb`` pipeline: table writes instead of stream records.

Plain Python (no locust), driven by the same loop as the Kinesis producer
(:func:`loadgen.producers.step`, :class:`~loadgen.producers.ProducerLoop`) through the buffer
both share (:class:`loadgen.producer_base.BufferedProducer`). What a write is (its operation,
typed item, update expression, and the requests a flush's writes go in) is
:mod:`loadgen.item_writes`; this module sends them and ledgers every attempt.

Retries (bounded, exponential backoff with full jitter): a ``fail`` that may succeed later
(throttle, no connection) is sent again, and a BatchWriteItem's UnprocessedItems are sent again
alone. An ``unknown`` outcome (read timeout, dropped connection, 5xx) is never sent again.

Ledger: one row per write and attempt (DESIGN.md, "Ledger"): pipeline ``dynamodb``, region,
target = the items table, ``partition_key`` = ``key`` = pk, op, status ``ok`` / ``fail`` /
``unknown``, ``commit_ts`` (epoch ms), invoked/completed times, error (``UnprocessedItems``, the
service's code and message); ``shard_id`` and ``sequence_number`` are NULL. If the producer is
interrupted mid-request (a request still unanswered when the run's stop timeout ends), the
writes of that request not yet known to be written get an ``unknown`` row and nothing more is
sent: every write still to be sent gets one ``fail`` row, "not sent".
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from loadgen.dynamodb_sink import FAIL, UNKNOWN, ItemRequestError
from loadgen.errors import LoadgenUsageError
from loadgen.item_writes import (
    DEFAULT_OPS,
    MAX_GROUP,
    Group,
    ItemWrite,
    Request,
    UpdateExpressions,
    commit_ts_of_payload,
    item_of,
    plan,
)
from loadgen.keyspace import Keyspace
from loadgen.ledger import LedgerSink
from loadgen.producer_base import BufferedProducer, LedgerRows, ProducerStats
from loadgen.templates import Renderer
from replicator.core.putrecords import Backoff
from xrh.contracts import ITEM_KEY

_OK = "ok"


class ItemSink(Protocol):
    def put_item(self, table: str, item: Any) -> int: ...

    def update_item(self, table: str, key: Any, expression: str, names: Any,
                    values: Any) -> int: ...  # fmt: skip

    def delete_item(self, table: str, key: Any) -> int: ...

    def batch_write(self, table: str, requests: Sequence[Any],
                    key_name: str) -> tuple[list[str], int]: ...  # fmt: skip


@dataclass(frozen=True, slots=True)
class ItemSettings:
    table: str
    region: str
    pipeline: str = "dynamodb"
    batch_size: int = 100  # writes buffered before a flush (the driving loop's batch)
    linger_s: float = 0.2
    ops: tuple[tuple[str, float], ...] = DEFAULT_OPS
    batch_share: float = 0.25  # of puts and deletes, sent through BatchWriteItem
    group_size: int = MAX_GROUP
    backoff: Backoff = Backoff(base=0.05, cap=2.0, max_attempts=8)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise LoadgenUsageError(f"--batch-size {self.batch_size}: must be 1..10000 for "
                                    "the dynamodb pipeline (writes buffered per flush)")  # fmt: skip
        if self.linger_s < 0:
            raise LoadgenUsageError(f"--linger {self.linger_s}: must not be negative")
        if not 0 <= self.batch_share <= 1:
            raise LoadgenUsageError(f"--batch-writes {self.batch_share}: must be 0..1")
        if not 1 <= self.group_size <= MAX_GROUP:
            raise ValueError(f"group_size {self.group_size}: must be 1..{MAX_GROUP}")


class ItemWriter:
    """Sends planned requests with their retries and writes every attempt to the ledger.

    Shared by :class:`ItemProducer` and the bootstrap loader; one per thread or greenlet."""

    def __init__(
        self, producer_id: str, sink: ItemSink, ledger: LedgerSink, settings: ItemSettings, *,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random, stats: ProducerStats | None = None,
    ) -> None:  # fmt: skip
        self.id = producer_id
        self.sink = sink
        self.settings = settings
        self.ledger = ledger
        self.region = settings.region
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self.stats = stats if stats is not None else ProducerStats()
        self._rows = LedgerRows(ledger)
        self.update_parts = UpdateExpressions()
        #: writes of the request in flight not yet known to be written (for an interruption)
        self.in_flight: list[ItemWrite] = []
        self.in_flight_attempt = 0
        self.last_error: str | None = None  # the last failed attempt's error, for messages

    # ----------------------------------------------------------------- ledger rows

    def row(self, write: ItemWrite, attempt: int, status: str, invoked: float,
            completed: float, error: str | None) -> None:  # fmt: skip
        """One ledger row, a plain tuple in :data:`loadgen.ledger.COLUMNS` order."""
        if error is not None:
            self.last_error = error
        self._rows.pending.append(
            (write.trace, self.id, write.seq, attempt, self.settings.pipeline, self.region,
             self.settings.table, write.key, write.key, write.commit_ts, write.op, status,
             None, None, int(invoked * 1000), int(completed * 1000), error)
        )  # fmt: skip

    def emit(self) -> None:
        self._rows.emit()

    # ----------------------------------------------------------------- requests

    def send(self, request: Request) -> None:
        if isinstance(request, Group):
            self._send_group(request.writes)
        else:
            self._send_single(request.write)
        self.emit()

    def prepare(self, write: ItemWrite) -> ItemWrite:
        """The write as one attempt sends it and its rows ledger it: as rendered here; the
        active-active writer (:mod:`loadgen.active`) stamps each attempt at its own time."""
        return write

    def _single_call(self, write: ItemWrite) -> ItemWrite:
        """Send one write; the write as acknowledged (a subclass may learn its commit_ts)."""
        table, sink = self.settings.table, self.sink
        if write.op == "put":
            sink.put_item(table, write.item)
        elif write.op == "delete":
            sink.delete_item(table, {ITEM_KEY: {"S": write.key}})
        else:
            expression, names, values = self.update_parts(write.item or {})
            sink.update_item(table, {ITEM_KEY: {"S": write.key}}, expression, names, values)
        return write

    def _send_single(self, rendered: ItemWrite) -> None:
        attempt = 1
        while True:
            write = self.prepare(rendered)
            self.in_flight, self.in_flight_attempt = [write], attempt
            invoked = self._clock()
            try:
                write = self._single_call(write)
            except ItemRequestError as exc:
                if self._failed_attempt([write], attempt, exc, invoked):
                    attempt += 1
                    continue
                break
            self.stats.requests += 1
            self.row(write, attempt, _OK, invoked, self._clock(), None)
            self.stats.acknowledged += 1
            break
        self.in_flight = []

    def _send_group(self, writes: list[ItemWrite]) -> None:
        if len({w.key for w in writes}) != len(writes):
            raise ValueError("a BatchWriteItem group must have distinct keys")
        max_attempts = self.settings.backoff.max_attempts
        remaining = writes
        attempt = 1
        while remaining:
            self.in_flight, self.in_flight_attempt = remaining, attempt
            requests = [
                {"DeleteRequest": {"Key": {ITEM_KEY: {"S": w.key}}}} if w.op == "delete"
                else {"PutRequest": {"Item": w.item}}
                for w in remaining
            ]  # fmt: skip
            invoked = self._clock()
            try:
                unprocessed, _ = self.sink.batch_write(self.settings.table, requests, ITEM_KEY)
            except ItemRequestError as exc:
                if self._failed_attempt(remaining, attempt, exc, invoked):
                    attempt += 1
                    continue
                break
            completed = self._clock()
            self.stats.requests += 1
            left = set(unprocessed)
            retry = []
            for write in remaining:
                if write.key in left:
                    self.row(write, attempt, FAIL, invoked, completed,
                             "UnprocessedItems: not written by this BatchWriteItem")  # fmt: skip
                    retry.append(write)
                else:
                    self.row(write, attempt, _OK, invoked, completed, None)
                    self.stats.acknowledged += 1
            remaining = retry
            if remaining:
                if attempt >= max_attempts:
                    self.stats.failed += len(remaining)
                    break
                self._backoff(attempt)
                attempt += 1
        self.in_flight = []

    def _failed_attempt(self, writes: list[ItemWrite], attempt: int, exc: ItemRequestError,
                        invoked: float) -> bool:  # fmt: skip
        """Ledger a request that raised; True once the backoff before sending ``writes`` again
        is over, False when they are given up (counted ``unknown`` or ``failed``)."""
        completed = self._clock()
        self.stats.requests += 1
        for write in writes:
            self.row(write, attempt, exc.status, invoked, completed, str(exc))
        if exc.retryable and attempt < self.settings.backoff.max_attempts:
            self._backoff(attempt)
            return True
        if exc.status == UNKNOWN:
            self.stats.unknown += len(writes)
        else:
            self.stats.failed += len(writes)
        return False

    def _backoff(self, failures: int) -> None:
        self.emit()  # the rows so far are in the ledger while we wait
        delay = self.settings.backoff.delay(failures, self._random())
        if delay > 0:
            self._sleep(delay)

    def interrupted(self, reason: str) -> None:
        """The request in flight was cut off: its writes not yet known written are unknown."""
        now = self._clock()
        for write in self.in_flight:
            self.row(write, self.in_flight_attempt, UNKNOWN, now, now, reason)
        self.stats.unknown += len(self.in_flight)
        self.in_flight = []
        self.emit()

    def not_sent(self, writes: Sequence[ItemWrite], reason: str) -> None:
        now = self._clock()
        for write in writes:
            self.row(write, 1, FAIL, now, now, reason)
        self.stats.failed += len(writes)
        self.emit()


class ItemProducer(BufferedProducer[ItemWrite]):
    """One producer of table writes (one Locust user, or one benchmark loop)."""

    def __init__(
        self,
        producer_id: str,
        renderer: Renderer,
        keyspace: Keyspace,
        sink: ItemSink,
        ledger: LedgerSink,
        settings: ItemSettings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        route: Callable[[], str] | None = None,
        make_writer: Callable[..., ItemWriter] = ItemWriter,
    ) -> None:
        """``random``: the draws of operations and batching (and of backoff jitter);
        ``route``: called as each request begins, pins it (and its retries) to a region and
        returns the region's name for its ledger rows (:class:`loadgen.routing.RoutedSink`);
        ``make_writer``: the writer class (or a partial of it) that sends and ledgers."""
        super().__init__(producer_id, settings, ledger, clock)
        self._render = renderer.render
        self._keyspace = keyspace
        self._random = random
        self._route = route
        self.writer = make_writer(producer_id, sink, ledger, settings, clock=clock, sleep=sleep,
                                  random=random, stats=self.stats)  # fmt: skip
        total = sum(w for _, w in settings.ops)
        cumulative, acc = [], 0.0
        for op, weight in settings.ops:
            if weight > 0:
                acc += weight / total
                cumulative.append((acc, op))
        self._ops = [(1.0 if i == len(cumulative) - 1 else p, op)
                     for i, (p, op) in enumerate(cumulative)]  # fmt: skip

    # ----------------------------------------------------------------- writes

    def _op(self) -> str:
        r = self._random()
        for bound, op in self._ops:
            if r < bound:
                return op
        return self._ops[-1][1]

    def add(self, count: int = 1) -> None:
        """Render ``count`` writes into the buffer (sends nothing)."""
        if count <= 0:
            return
        now = self._clock()
        now_ms = int(now * 1000)
        share = self.settings.batch_share
        first = self._seq + 1
        self._seq += count
        for seq in range(first, first + count):
            key = self._keyspace.next_key()
            pk = str(key)
            trace = f"{self.id}-{seq:09d}"
            op = self._op()
            payload = self._render(key, trace, now_ms)
            item: dict[str, Any] | None = None
            if op != "delete":
                item, commit_ts = item_of(payload, pk, trace, now_ms, self._parsed_commit_ts)
            else:  # rendered too: the same draws, and the same commit timestamp rules
                commit_ts = commit_ts_of_payload(payload, now_ms, self._parsed_commit_ts)
            batched = op != "update" and share > 0 and self._random() < share
            self._buffer.append(ItemWrite(trace, seq, pk, commit_ts, op, batched, item))
        self._buffered_now(now, count)

    # ----------------------------------------------------------------- sending

    def flush(self) -> None:
        """Send everything buffered, request by request (:func:`plan`); ledger every attempt."""
        if self.interrupted:
            return
        writes = self._take_buffer()
        requests = plan(writes, self.settings.group_size)
        for index, request in enumerate(requests):
            if self._route is not None:
                self.writer.region = self._route()
            try:
                self.writer.send(request)
            except BaseException:
                self.interrupted = True
                self.writer.interrupted("interrupted: the run stopped during the request")
                # what this flush had not sent yet goes back: close() ledgers it "not sent"
                rest = [w for r in requests[index + 1:]
                        for w in (r.writes if isinstance(r, Group) else [r.write])]  # fmt: skip
                self._buffer[:0] = rest
                raise

    def _not_sent(self, buffered: list[ItemWrite], reason: str) -> None:
        self.writer.not_sent(buffered, reason)
