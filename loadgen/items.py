"""The item producer of the ``dynamodb`` pipeline: table writes instead of stream records.

Plain Python (no locust), driven by the same loop as the Kinesis producer
(:func:`loadgen.producers.step`, :class:`~loadgen.producers.ProducerLoop`): it has the same
``settings.batch_size``, ``settings.linger_s``, ``buffered``, ``add(n)``, ``due()``,
``flush()``, ``linger_left()``, ``close()``, ``closed``, ``id`` and ``stats``.

A write: a key from the keyspace (``pk`` = ``str(key)``); the template rendered to JSON and
then to a DynamoDB item (numbers N, floats kept exact as Decimal text, strings S, booleans
BOOL, null NULL, objects M, arrays L), with ``trace`` (``<producer>-<seq:09d>``, gap-free per
producer) and ``commitTimestamp`` (the template's, or the write's time in the default form if
the template has none): :data:`xrh.contracts.ITEM_TRACE`, :data:`~xrh.contracts.ITEM_COMMIT_TS`.
Its operation is drawn by ``--ops`` weights:

- ``put``: PutItem, or a BatchWriteItem PutRequest for a share ``--batch-writes`` of puts;
- ``update``: UpdateItem ``SET`` every rendered attribute, trace and commitTimestamp, and
  ``ADD writes :one``: an update of the existing item, or a new one if there is none;
- ``delete``: DeleteItem, or a BatchWriteItem DeleteRequest for the same share.

Order: :func:`plan` turns a flush's writes into requests. Batched writes gather in a group of at
most 25 with distinct keys (BatchWriteItem refuses duplicates, and the unprocessed items map back
to their writes by key); the group is sent when full, at the end of the flush, or as soon as a
later write (batched or not) touches one of its keys, so a producer's writes of one key reach
the table in their ``seq`` order.

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

import json
import random as _random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from loadgen.dynamodb_sink import FAIL, UNKNOWN, ItemRequestError
from loadgen.errors import LoadgenUsageError
from loadgen.keyspace import Keyspace
from loadgen.ledger import LedgerSink
from loadgen.producers import ProducerStats
from loadgen.templates import Renderer
from replicator.core.putrecords import Backoff
from xrh.contracts import ITEM_COMMIT_TS, ITEM_KEY, ITEM_TRACE, Op, iso_ms, parse_iso_ms

OPS = tuple(op.value for op in Op)  # put, update, delete
DEFAULT_OPS = (("put", 60.0), ("update", 30.0), ("delete", 10.0))
DEFAULT_OPS_TEXT = "put=60,update=30,delete=10"
MAX_GROUP = 25  # BatchWriteItem: at most 25 requests
#: the counter every UpdateItem adds one to (so an update is visibly an update)
WRITES_ATTRIBUTE = "writes"
_OK = "ok"
_OP_NAME = {"put": "PutItem", "update": "UpdateItem", "delete": "DeleteItem"}


def parse_ops(text: str | None, option: str = "--ops") -> tuple[tuple[str, float], ...]:
    """``put=60,update=30,delete=10`` as ((op, weight), ...); LoadgenUsageError if wrong."""
    if text is None or not str(text).strip():
        return DEFAULT_OPS
    weights: dict[str, float] = {}
    for part in str(text).split(","):
        name, sep, value = part.strip().partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise LoadgenUsageError(f"{option} {text!r}: {part.strip()!r} is not OP=WEIGHT "
                                    f"(e.g. {DEFAULT_OPS_TEXT})")  # fmt: skip
        if name not in OPS:
            raise LoadgenUsageError(
                f"{option} {text!r}: unknown operation {name!r}; choose from {', '.join(OPS)}"
            )
        if name in weights:
            raise LoadgenUsageError(f"{option} {text!r}: {name} is given twice")
        try:
            weight = float(value)
        except ValueError:
            raise LoadgenUsageError(
                f"{option} {text!r}: the weight of {name}, {value.strip()!r}, is not a number"
            ) from None
        if not weight >= 0 or weight == float("inf"):
            raise LoadgenUsageError(
                f"{option} {text!r}: the weight of {name} must be a finite number >= 0"
            )
        weights[name] = weight
    if not any(weights.values()):
        raise LoadgenUsageError(f"{option} {text!r}: at least one weight must be above 0")
    return tuple((op, weights[op]) for op in OPS if op in weights)


def ops_text(ops: Sequence[tuple[str, float]]) -> str:
    return ",".join(f"{op}={weight:g}" for op, weight in ops)


# ------------------------------------------------------------------ JSON -> DynamoDB item


def attribute(value: Any) -> dict[str, Any]:
    """One JSON value (``json.loads(..., parse_float=Decimal)``) as a DynamoDB attribute."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is bool:
        return {"BOOL": value}
    if kind is int or kind is Decimal:
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if kind is dict:
        return {"M": {k: attribute(v) for k, v in value.items()}}
    if kind is list:
        return {"L": [attribute(v) for v in value]}
    if kind is float:  # NaN / Infinity: DynamoDB refuses them, the write is ledgered "fail"
        return {"N": repr(value)}
    raise TypeError(f"cannot store a {kind.__name__} in DynamoDB")


def rendered_item(payload: str, pk: str) -> dict[str, dict[str, Any]]:
    """The rendered JSON object as a DynamoDB item with ``pk``: the keyspace key always wins
    over a ``pk`` the template may render."""
    data = json.loads(payload, parse_float=Decimal)
    item = {k: attribute(v) for k, v in data.items()}
    item[ITEM_KEY] = {"S": pk}
    return item


_COMMIT_TS = re.compile(r'"commitTimestamp"\s*:\s*"([^"]*)"')


def item_of(payload: str, pk: str, trace: str, now_ms: int,
            commit_ts_of: Callable[[str], int | None] | None = None,
            ) -> tuple[dict[str, Any], int | None]:  # fmt: skip
    """The item of a rendered payload, with ``trace`` and ``commitTimestamp`` (the write's
    time in the default form if the template has none), and the ledger's commit_ts."""
    item = rendered_item(payload, pk)
    item[ITEM_TRACE] = {"S": trace}
    match = _COMMIT_TS.search(payload)
    if match is None:
        item[ITEM_COMMIT_TS] = {"S": iso_ms(now_ms)}
        return item, now_ms
    return item, (commit_ts_of or _parse_ts)(match.group(1))


def _parse_ts(text: str) -> int | None:
    try:
        return parse_iso_ms(text)
    except ValueError:
        return None


class ItemWrite(NamedTuple):
    """One write (a named tuple: built once per write, on the hot path)."""

    trace: str
    seq: int
    key: str  # pk
    commit_ts: int | None
    op: str  # put | update | delete
    batched: bool  # sent in a BatchWriteItem (puts and deletes only)
    item: dict[str, Any] | None  # the item (put, update); None for a delete


class Single(NamedTuple):
    write: ItemWrite


class Group(NamedTuple):
    writes: list[ItemWrite]


Request = Single | Group


def plan(writes: Sequence[ItemWrite], group_size: int = MAX_GROUP) -> list[Request]:
    """Requests for ``writes`` in order: batched writes in groups of distinct keys (at most
    ``group_size``), a group sent before any later write of one of its keys."""
    out: list[Request] = []
    group: list[ItemWrite] = []
    keys: set[str] = set()
    for write in writes:
        if write.key in keys:
            out.append(Group(group))
            group, keys = [], set()
        if write.batched:
            group.append(write)
            keys.add(write.key)
            if len(group) >= group_size:
                out.append(Group(group))
                group, keys = [], set()
        else:
            out.append(Single(write))
    if group:
        out.append(Group(group))
    return out


# ------------------------------------------------------------------ sending


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
        self._rows: list[tuple] = []
        self._update_cache: dict[tuple[str, ...], tuple[str, dict[str, str]]] = {}
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
        self._rows.append(
            (write.trace, self.id, write.seq, attempt, self.settings.pipeline, self.region,
             self.settings.table, write.key, write.key, write.commit_ts, write.op, status,
             None, None, int(invoked * 1000), int(completed * 1000), error)
        )  # fmt: skip

    def emit(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            self.ledger.write(rows)

    # ----------------------------------------------------------------- requests

    def send(self, request: Request) -> None:
        if isinstance(request, Group):
            self._send_group(request.writes)
        else:
            self._send_single(request.write)
        self.emit()

    def _single_call(self, write: ItemWrite) -> None:
        table, sink = self.settings.table, self.sink
        if write.op == "put":
            sink.put_item(table, write.item)
        elif write.op == "delete":
            sink.delete_item(table, {ITEM_KEY: {"S": write.key}})
        else:
            expression, names, values = self.update_parts(write.item or {})
            sink.update_item(table, {ITEM_KEY: {"S": write.key}}, expression, names, values)

    def update_parts(self, item: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
        """``SET #a0 = :a0, ... ADD #w :one`` (names as placeholders: ``key`` and many other
        attribute names are reserved words); the expression is cached per attribute list."""
        # (a template's own "writes" is left to the counter: one path cannot be SET and ADDed)
        fields = tuple(name for name in item if name != ITEM_KEY and name != WRITES_ATTRIBUTE)
        cached = self._update_cache.get(fields)
        if cached is None:
            names = {f"#a{i}": name for i, name in enumerate(fields)}
            names["#w"] = WRITES_ATTRIBUTE
            sets = ", ".join(f"#a{i} = :a{i}" for i in range(len(fields)))
            expression = (f"SET {sets} " if sets else "") + "ADD #w :one"
            cached = self._update_cache[fields] = (expression, names)
        values = {f":a{i}": item[name] for i, name in enumerate(fields)}
        values[":one"] = {"N": "1"}
        return cached[0], cached[1], values

    def _send_single(self, write: ItemWrite) -> None:
        max_attempts = self.settings.backoff.max_attempts
        attempt = 1
        while True:
            self.in_flight, self.in_flight_attempt = [write], attempt
            invoked = self._clock()
            try:
                self._single_call(write)
            except ItemRequestError as exc:
                completed = self._clock()
                self.stats.requests += 1
                self.row(write, attempt, exc.status, invoked, completed, str(exc))
                if exc.retryable and attempt < max_attempts:
                    self._backoff(attempt)
                    attempt += 1
                    continue
                if exc.status == UNKNOWN:
                    self.stats.unknown += 1
                else:
                    self.stats.failed += 1
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
                completed = self._clock()
                self.stats.requests += 1
                for write in remaining:
                    self.row(write, attempt, exc.status, invoked, completed, str(exc))
                if exc.retryable and attempt < max_attempts:
                    self._backoff(attempt)
                    attempt += 1
                    continue
                if exc.status == UNKNOWN:
                    self.stats.unknown += len(remaining)
                else:
                    self.stats.failed += len(remaining)
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


class ItemProducer:
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
    ) -> None:
        """``random``: the draws of operations and batching (and of backoff jitter);
        ``route``: called as each request begins, pins it (and its retries) to a region and
        returns the region's name for its ledger rows (:class:`loadgen.routing.RoutedSink`)."""
        self.id = producer_id
        self.settings = settings
        self._render = renderer.render
        self._keyspace = keyspace
        self._ledger = ledger
        self._clock = clock
        self._random = random
        self._route = route
        self.stats = ProducerStats()
        self.writer = ItemWriter(producer_id, sink, ledger, settings, clock=clock, sleep=sleep,
                                 random=random, stats=self.stats)  # fmt: skip
        total = sum(w for _, w in settings.ops)
        cumulative, acc = [], 0.0
        for op, weight in settings.ops:
            if weight > 0:
                acc += weight / total
                cumulative.append((acc, op))
        self._ops = [(1.0 if i == len(cumulative) - 1 else p, op)
                     for i, (p, op) in enumerate(cumulative)]  # fmt: skip
        self._buffer: list[ItemWrite] = []
        self._oldest: float | None = None
        self._seq = 0
        self._ts_cache: tuple[str, int | None] = ("", None)
        self.closed = False
        self.interrupted = False
        ledger.register(producer_id)

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
                item, commit_ts = item_of(payload, pk, trace, now_ms, self._commit_ts)
            else:  # rendered too: the same draws, and the same commit timestamp rules
                match = _COMMIT_TS.search(payload)
                commit_ts = self._commit_ts(match.group(1)) if match else now_ms
            batched = op != "update" and share > 0 and self._random() < share
            self._buffer.append(ItemWrite(trace, seq, pk, commit_ts, op, batched, item))
        if self._oldest is None:
            self._oldest = now
        self.stats.records += count

    def _commit_ts(self, text: str) -> int | None:
        """Epoch ms of the rendered commitTimestamp (None if it is not ISO-8601, as the
        Kinesis producer ledgers it); cached, as many writes share one."""
        if text == self._ts_cache[0]:
            return self._ts_cache[1]
        value = _parse_ts(text)
        self._ts_cache = (text, value)
        return value

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def due(self) -> bool:
        if len(self._buffer) >= self.settings.batch_size:
            return True
        return self._oldest is not None and self._clock() - self._oldest >= self.settings.linger_s

    def linger_left(self) -> float:
        if self._oldest is None:
            return self.settings.linger_s
        return max(0.0, self.settings.linger_s - (self._clock() - self._oldest))

    # ----------------------------------------------------------------- sending

    def flush(self) -> None:
        """Send everything buffered, request by request (:func:`plan`); ledger every attempt."""
        if self.interrupted:
            return
        writes, self._buffer, self._oldest = self._buffer, [], None
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

    def close(self) -> None:
        """Send what is buffered and tell the ledger this producer's final batch is in; after
        an interrupted request nothing more is sent: one ``fail`` row each, "not sent"."""
        if self.closed:
            return
        try:
            if not self.interrupted:
                self.flush()
        finally:
            try:
                buffered, self._buffer, self._oldest = self._buffer, [], None
                if buffered:
                    self.writer.not_sent(buffered, "not sent: the run stopped before it was sent")
            finally:
                self.closed = True
                self._ledger.final(self.id)
