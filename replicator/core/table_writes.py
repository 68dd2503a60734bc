"""The BatchWriteItem engine shared by the bootstrap copy and live stream apply (pure).

BatchWriteItem takes at most 25 put or delete requests, each for a different key of one table,
and answers with ``UnprocessedItems``: the requests it did not get to (throttling on a hot
partition, mostly). A throttled or failed request as a whole writes nothing; a request with one
unacceptable item (over 400 KB, a bad attribute) is refused whole with a ValidationException
and says nothing of which item it was. :class:`BatchWriter` turns a sequence of requests into
such calls and deals with each of those answers:

- chunks of up to 25 requests; the keys of one :meth:`BatchWriter.write` must be distinct
  (ValueError otherwise): within a chunk DynamoDB refuses a repeated key, and chunks run
  concurrently, so two writes of one key in one call would race. Squash first (keep the last
  change per key, :mod:`replicator.core.table_apply`), or call ``write`` once per version;
- up to ``max_in_flight`` chunks are sent at the same time (threads; one per chunk in flight);
- unprocessed requests are sent again, alone (never the processed ones), after exponential
  backoff with full jitter (:class:`~replicator.core.putrecords.Backoff`), for at most
  ``backoff.max_attempts`` calls per chunk; what is still unprocessed then is left unwritten
  and the report's ``error`` says how many are left;
- a throttled request, a 5xx (RetryableRequestError) and a request whose outcome is unknown
  (a timeout: UnknownOutcomeError) are sent again within the same bound. Sending again is safe
  because a put carries the full item and a delete is a delete: applying either twice leaves
  the same table;
- an invalid request (InvalidRequestError) is bisected: each half is sent on its own, down to
  the single requests that can never be written, which come back in ``dead`` with the reason.
  Items whose estimated size is over :data:`MAX_ITEM_BYTES` are dead at once, never sent;
- a terminal error (no such table, access denied) stops the write: the chunks not yet written
  stay unwritten and ``error`` holds it;
- ``guard`` (a lease fence's ``check``) runs before every call and is given to the sink to run
  once more at the last moment before the request leaves (calls to it are serialised: a fence
  may renew its lease, which must not happen twice at once). If it raises a ReplicatorError
  nothing more is sent and ``fenced`` holds the error.

Nothing is dropped: every request ends in exactly one of written, ``dead`` or ``unwritten``.

Typical use::

    writer = BatchWriter(sink, "app-items", max_in_flight=4)
    report = writer.write([WriteRequest({"pk": {"S": "42"}}, item), ...], guard=fence.check)
    for request, reason in report.dead: ...      # store with its full data and the reason
    if not report.complete: ...                  # report.unwritten: not acknowledged, retry
    report.raise_if_incomplete()                 # or as an exception

The sink (:class:`TableWriteSink`) is the one seam to DynamoDB: the boto3 adapter is
``replicator.adapters.table.DynamoTableWriter``, a scriptable fake is
:class:`replicator.core.table_fakes.FakeTableSink`. Sleep and random are passed in.
"""

from __future__ import annotations

import json
import random as _random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from json.encoder import encode_basestring_ascii as _quote  # what json.dumps uses
from typing import Any, Protocol

from replicator.core.putrecords import Backoff
from replicator.errors import (
    InvalidRequestError,
    ReplicatorError,
    RetryableRequestError,
    SinkError,
    TerminalRequestError,
)

__all__ = [
    "MAX_BATCH",
    "MAX_ITEM_BYTES",
    "Backoff",
    "BatchWriteReport",
    "BatchWriter",
    "TableWriteSink",
    "UnprocessedLeftError",
    "WriteRequest",
    "item_size",
    "key_id",
]

#: BatchWriteItem's limit on requests per call.
MAX_BATCH = 25
#: DynamoDB's item size limit (attribute names and values, UTF-8).
MAX_ITEM_BYTES = 400 * 1024


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One put or delete, in DynamoDB's wire form (``{"pk": {"S": "42"}}``).

    ``item`` is the full item for a put (it must contain the key's attributes), None for a
    delete of ``key``. ``ref`` is the caller's handle (a change record, a scan position),
    returned untouched in the report.
    """

    key: dict[str, Any]
    item: dict[str, Any] | None
    ref: Any = None

    @property
    def is_delete(self) -> bool:
        return self.item is None

    def wire(self) -> dict[str, Any]:
        """This request as an element of BatchWriteItem's ``RequestItems[table]`` list."""
        if self.item is None:
            return {"DeleteRequest": {"Key": self.key}}
        return {"PutRequest": {"Item": self.item}}


def key_id(key: dict[str, Any]) -> str:
    """A canonical string for a wire-form key (equal keys give equal strings): compact JSON
    with sorted names, ``{"pk":{"S":"42"}}``."""
    if len(key) == 1:  # the common case (a string or number hash key), without json.dumps
        ((name, value),) = key.items()
        if type(value) is dict and len(value) == 1:
            ((kind, v),) = value.items()
            if type(v) is str and (kind == "S" or kind == "N"):
                return f'{{{_quote(name)}:{{"{kind}":{_quote(v)}}}}}'
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"not a wire-form value: {type(value).__name__}")


def item_size(item: dict[str, Any]) -> int:
    """An estimate of a wire-form item's size as DynamoDB counts it against the 400 KB limit:
    attribute names and strings in UTF-8, binary as its bytes, a number about 1 byte per two
    digits plus 1, 1 byte for a boolean or null, 3 bytes of overhead per list or map plus 1
    per element. The service's answer is final (a ValidationException is bisected anyway);
    this only keeps requests certain to fail from being sent."""
    return sum(
        (len(name) if name.isascii() else len(name.encode("utf-8"))) + _value_size(v)
        for name, v in item.items()
    )


def _value_size(value: dict[str, Any]) -> int:
    ((kind, v),) = value.items() if len(value) == 1 else (("?", value),)
    if kind == "S":
        return len(v) if type(v) is str and v.isascii() else len(str(v).encode("utf-8"))
    if kind == "N":
        return len(v) // 2 + 1  # sign and point included: an estimate a byte or two high
    if kind == "B":
        return len(v) if isinstance(v, bytes | bytearray) else len(str(v))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(x).encode("utf-8")) for x in v)
    if kind == "NS":
        return sum(len(x) // 2 + 1 for x in v)
    if kind == "BS":
        return sum(len(x) for x in v)
    if kind == "L":
        return 3 + sum(1 + _value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + _value_size(x) for k, x in v.items())
    return len(json.dumps(value, default=_json_default))


class TableWriteSink(Protocol):
    """One BatchWriteItem call of at most :data:`MAX_BATCH` requests with distinct keys.

    Returns the requests DynamoDB left unprocessed (the same objects as given; an empty list
    when everything was written). Raises RetryableRequestError (throttled, 5xx: nothing
    written), InvalidRequestError (validation: some request in it is unacceptable, nothing
    written), TerminalRequestError (missing table, no permission) or UnknownOutcomeError (may
    or may not be written). ``guard``, when given, is called once more at the last moment
    before the request leaves; if it raises, nothing is sent and its error propagates.
    ``calls`` counts calls made. Must be safe to call from several threads at once."""

    calls: int

    def batch_write(
        self,
        table: str,
        requests: Sequence[WriteRequest],
        guard: Callable[[], object] | None = None,
    ) -> list[WriteRequest]: ...


class UnprocessedLeftError(RetryableRequestError):
    """Requests were still unprocessed (or throttled) when the attempt bound ran out."""


@dataclass(slots=True)
class BatchWriteReport:
    """What became of the requests given to :meth:`BatchWriter.write`.

    Every request is in exactly one of: written (counted), ``dead`` (can never be written,
    with the reason) or ``unwritten`` (not acknowledged: bound exhausted, stopped by a terminal
    error or by the guard; write it again later)."""

    requests: int = 0
    written: int = 0
    calls: int = 0  # BatchWriteItem calls made (including retries and bisection)
    unprocessed_retries: int = 0  # requests sent again because they came back unprocessed
    throttles: int = 0  # calls refused as a whole: throttled, 5xx, unknown outcome
    slept: float = 0.0
    dead: list[tuple[WriteRequest, str]] = field(default_factory=list)
    unwritten: list[WriteRequest] = field(default_factory=list)
    error: SinkError | None = None  # why ``unwritten`` is not empty (bound or terminal error)
    fenced: ReplicatorError | None = None  # what the guard raised to stop the write

    @property
    def complete(self) -> bool:
        """Every request is written or dead."""
        return not self.unwritten

    def raise_if_incomplete(self) -> None:
        """Raise the guard's error or the sink error that left requests unwritten."""
        if self.complete:
            return
        if self.fenced is not None:
            raise self.fenced
        raise self.error or UnprocessedLeftError(
            f"{len(self.unwritten)} of {self.requests} requests unwritten"
        )


class BatchWriter:
    """Writes requests to one table through a :class:`TableWriteSink` (see the module doc).

    ``backoff.max_attempts`` bounds the calls made for one chunk (retries of unprocessed or
    throttled requests included; bisection of an invalid request does not count, it is not a
    failure). ``max_in_flight`` chunks are written concurrently by a thread pool the writer
    owns (created on first use; :meth:`close` stops it); 1 writes in the calling thread.
    """

    def __init__(
        self,
        sink: TableWriteSink,
        table: str,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        max_in_flight: int = 4,
        max_item_bytes: int = MAX_ITEM_BYTES,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.sink = sink
        self.table = table
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.random = random
        self.max_in_flight = max_in_flight
        self.max_item_bytes = max_item_bytes
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def close(self) -> None:
        """Stop the writer's threads (a later write starts them again)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(
        self,
        requests: Sequence[WriteRequest],
        guard: Callable[[], object] | None = None,
    ) -> BatchWriteReport:
        """Write ``requests`` (distinct keys) and report what became of each."""
        seen: set[str] = set()
        for index, r in enumerate(requests):
            kid = key_id(r.key)
            if kid in seen:
                raise ValueError(
                    f"request {index}: key {kid} appears twice in one write (BatchWriteItem "
                    "cannot hold one key twice and chunks run concurrently): squash first"
                )
            seen.add(kid)
        run = _Run(self, guard, BatchWriteReport(requests=len(requests)))
        sendable = []
        for r in requests:
            reason = self._rejection(r)
            if reason is None:
                sendable.append(r)
            else:
                run.report.dead.append((r, reason))
        chunks = [sendable[i : i + MAX_BATCH] for i in range(0, len(sendable), MAX_BATCH)]
        if len(chunks) <= 1 or self.max_in_flight == 1:
            for chunk in chunks:
                run.chunk(chunk)
        else:
            pool = self._executor()
            for future in [pool.submit(run.chunk, chunk) for chunk in chunks]:
                future.result()
        report = run.report
        if report.unwritten and report.error is None and report.fenced is None:
            report.error = UnprocessedLeftError(  # pragma: no cover - every path sets one
                f"{len(report.unwritten)} of {report.requests} requests unwritten"
            )
        return report

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.max_in_flight, thread_name_prefix=f"batch-write-{self.table}"
                )
            return self._pool

    def _rejection(self, r: WriteRequest) -> str | None:
        if not r.key:
            return "invalid: empty key"
        if r.item is not None:
            missing = [k for k in r.key if k not in r.item]
            if missing:
                return f"invalid: the item lacks its key attribute(s) {', '.join(missing)}"
            size = item_size(r.item)
            if size > self.max_item_bytes:
                return (
                    f"too_large: item is about {size} bytes, over DynamoDB's limit of "
                    f"{self.max_item_bytes}"
                )
        return None


class _Run:
    """The state of one :meth:`BatchWriter.write` shared by its chunks' threads."""

    def __init__(
        self, writer: BatchWriter, guard: Callable[[], object] | None, report: BatchWriteReport
    ) -> None:
        self.w = writer
        self.report = report
        self.lock = threading.Lock()
        self.stopped = False
        self._guard = guard
        self._guard_lock = threading.Lock()
        self.guard = None if guard is None else self._locked_guard

    def _locked_guard(self) -> object:
        assert self._guard is not None
        with self._guard_lock:
            return self._guard()

    def _stop(self, *, error: SinkError | None = None, fenced: ReplicatorError | None = None):
        with self.lock:
            self.stopped = True
            if error is not None and self.report.error is None:
                self.report.error = error
            if fenced is not None and self.report.fenced is None:
                self.report.fenced = fenced

    def _add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self.report, name, getattr(self.report, name) + value)

    def chunk(self, chunk: list[WriteRequest]) -> None:
        """Write one chunk to the end: written, dead or unwritten, each request."""
        w = self.w
        pending = list(chunk)  # the requests of the next call
        later: list[list[WriteRequest]] = []  # bisected halves waiting their turn
        failures = 0  # failed calls of this chunk so far: drives backoff and the bound
        while pending:
            if self.stopped:
                self._unwritten(pending, later)
                return
            wait = w.backoff.delay(failures, w.random())
            if wait > 0:
                w.sleep(wait)
                self._add(slept=wait)  # type: ignore[arg-type]
            if self.guard is not None:
                try:
                    self.guard()
                except ReplicatorError as exc:
                    self._stop(fenced=exc)
                    self._unwritten(pending, later)
                    return
            self._add(calls=1)
            try:
                if self.guard is None:
                    left = w.sink.batch_write(w.table, pending)
                else:
                    left = w.sink.batch_write(w.table, pending, guard=self.guard)
            except InvalidRequestError as exc:
                if len(pending) == 1:
                    with self.lock:
                        self.report.dead.append((pending[0], f"invalid: {_describe(exc)}"))
                    pending = later.pop() if later else []
                else:
                    half = len(pending) // 2
                    later.append(pending[half:])
                    pending = pending[:half]
                continue
            except TerminalRequestError as exc:
                self._stop(error=exc)
                self._unwritten(pending, later)
                return
            except SinkError as exc:  # retryable, unknown outcome or any other: back off, again
                failures += 1
                self._add(throttles=1)
                if failures >= w.backoff.max_attempts:
                    self._exhausted(pending, later, exc, failures)
                    return
                continue
            except ReplicatorError as exc:  # the sink's last-moment guard refused: not sent
                self._stop(fenced=exc)
                self._unwritten(pending, later)
                return
            ids = {id(r) for r in pending}
            left = [r for r in left if id(r) in ids]
            self._add(written=len(pending) - len(left))
            if left:
                failures += 1
                self._add(unprocessed_retries=len(left))
                if failures >= w.backoff.max_attempts:
                    exc = UnprocessedLeftError(
                        f"{len(left)} requests still unprocessed after {failures} calls"
                    )
                    self._exhausted(left, later, exc, failures)
                    return
                pending = left
            else:
                pending = later.pop() if later else []

    def _exhausted(
        self,
        pending: list[WriteRequest],
        later: list[list[WriteRequest]],
        exc: SinkError,
        failures: int,
    ) -> None:
        left = len(pending) + sum(len(x) for x in later)
        error = UnprocessedLeftError(
            f"{self.w.table}: {left} requests left unwritten after {failures} failed calls "
            f"(attempt bound {self.w.backoff.max_attempts}); last: {_describe(exc)}",
            exc.code,
        )
        with self.lock:
            if self.report.error is None:
                self.report.error = error
        self._unwritten(pending, later)

    def _unwritten(self, pending: list[WriteRequest], later: list[list[WriteRequest]]) -> None:
        with self.lock:
            self.report.unwritten.extend(pending)
            for part in later:
                self.report.unwritten.extend(part)
        later.clear()


def _describe(exc: SinkError) -> str:
    return f"{exc.code}: {exc.message}" if exc.code else exc.message
