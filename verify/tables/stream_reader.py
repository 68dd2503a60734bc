"""Read a DynamoDB table's stream (DynamoDB Streams): every shard, parents before children.

The stream is the source's own history: which versions of each key existed and in what order.
verify needs it to tell a stale target (it holds a version A had earlier) from a diverged one
(it holds a version A never had), and to see that every acknowledged write reached A.

Shards come from DescribeStream, paged by ``ExclusiveStartShardId``; a shard is read only after
its parent is finished, so a key's changes arrive in its order (each change of a key is in one
shard at a time). Each shard is read from TRIM_HORIZON with GetRecords until it ends
(``NextShardIterator`` absent: a closed shard read to its end) or, open, until it is caught up
(``empty_pages`` empty pages in a row: AWS may answer empty before the end, moto never does).
A reader keeps each shard's position, so a later :meth:`TableStreamReader.read` resumes there
(verify reads again while it waits for the target to settle). Throttling backs off with the
passed-in sleep; an expired iterator is renewed after the last sequence number read; a trimmed
position (``TrimmedDataAccessException``: older than 24 hours) restarts at the trim horizon and
is counted, because the history before it is gone. Everything stops at the deadline; the
shards not finished are named.

Sequence numbers are compared as integers (AWS: up to 40 digits; moto: small integers), so
:func:`order_key` pads them to a fixed width after the shard's generation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from verify.errors import EndpointUnreachable
from verify.kinesis_reader import THROTTLE_CODES, Backoff, error_code, is_connection_error
from verify.model import hash64
from verify.table_reader import canonical_json, key_json

EXPIRED_CODE = "ExpiredIteratorException"
TRIMMED_CODE = "TrimmedDataAccessException"
PAGE_LIMIT = 1000  # GetRecords' maximum
SEQ_DIGITS = 40


class StreamsApi(Protocol):
    def describe_stream(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_records(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Change:
    """One stream record: which key changed, how, and which write's version it holds."""

    shard: str
    generation: int
    sequence_number: str
    event: str  # INSERT | MODIFY | REMOVE
    key: str  # canonical JSON of the key attributes (as verify.table_reader.key_json)
    new_trace: str | None
    old_trace: str | None
    new_hash: int | None  # hash64 of the NewImage's canonical JSON: the item as written
    approx_ms: int | None

    @property
    def order(self) -> str:
        return order_key(self.generation, self.sequence_number)


def order_key(generation: int, sequence_number: str) -> str:
    """Text that sorts as (generation, integer sequence number)."""
    return f"{generation:04d}:{int(sequence_number):0{SEQ_DIGITS}d}"


@dataclass(slots=True)
class _Shard:
    shard_id: str
    parent_id: str | None
    closed: bool
    generation: int = 0
    last_seq: str | None = None
    done: bool = False
    changes: int = 0


@dataclass(slots=True)
class StreamStats:
    stream_arn: str
    shards: int = 0
    changes: int = 0
    calls: int = 0
    throttles: int = 0
    expired_iterators: int = 0
    trimmed: int = 0
    passes: int = 0
    seconds: float = 0.0
    unfinished: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unfinished

    def to_json(self) -> dict[str, Any]:
        return {
            "stream_arn": self.stream_arn,
            "shards": self.shards,
            "changes": self.changes,
            "calls": self.calls,
            "throttles": self.throttles,
            "expired_iterators": self.expired_iterators,
            "trimmed": self.trimmed,
            "passes": self.passes,
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
            "unfinished_shards": self.unfinished,
        }


def _image_trace(image: dict[str, Any] | None, trace_attr: str) -> str | None:
    value = (image or {}).get(trace_attr)
    return value.get("S") if isinstance(value, dict) else None


def _approx_ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(round(value.timestamp() * 1000))
    return int(round(float(value) * 1000))


def to_change(
    record: dict[str, Any], shard: str, generation: int, key_names: tuple[str, ...],
    trace_attr: str = "trace",
) -> Change:  # fmt: skip
    """A GetRecords record as a :class:`Change` (its ``awsRegion`` is ignored: moto always
    says us-east-1; the region is the configuration's)."""
    body = record.get("dynamodb", {})
    new = body.get("NewImage")
    return Change(
        shard=shard,
        generation=generation,
        sequence_number=str(body["SequenceNumber"]),
        event=str(record.get("eventName", "")),
        key=key_json(body.get("Keys") or {}, key_names),
        new_trace=_image_trace(new, trace_attr),
        old_trace=_image_trace(body.get("OldImage"), trace_attr),
        new_hash=None if new is None else hash64(canonical_json(new).encode()),
        approx_ms=_approx_ms(body.get("ApproximateCreationDateTime")),
    )


class TableStreamReader:
    """Reads one stream; call :meth:`read` again to resume where each shard stopped."""

    def __init__(
        self,
        api: StreamsApi,
        stream_arn: str,
        key_names: tuple[str, ...],
        *,
        trace_attr: str = "trace",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        backoff: Backoff = Backoff(),  # noqa: B008 - frozen value
        empty_pages: int = 3,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        self.api = api
        self.stream_arn = stream_arn
        self.key_names = key_names
        self.trace_attr = trace_attr
        self.clock = clock
        self.sleep = sleep
        self.backoff = backoff
        self.empty_pages = max(1, empty_pages)
        self.page_limit = page_limit
        self.shards: dict[str, _Shard] = {}
        self.stats = StreamStats(stream_arn)

    def read(self, on_changes: Callable[[list[Change]], None], deadline: float) -> StreamStats:
        """One pass: every shard to its end (closed) or caught up (open), within the deadline."""
        started = time.perf_counter()
        try:
            self._describe(deadline)
            self.stats.unfinished = []
            for shard in self._ordered():
                if shard.done:
                    continue
                parent = self.shards.get(shard.parent_id or "")
                if (parent is not None and not parent.done) or self.clock() >= deadline:
                    self.stats.unfinished.append(shard.shard_id)
                    continue
                if not self._read_shard(shard, on_changes, deadline):
                    self.stats.unfinished.append(shard.shard_id)
        except Exception as exc:
            if is_connection_error(exc):
                raise EndpointUnreachable(
                    f"stream {self.stream_arn}: endpoint not reachable ({exc})"
                ) from exc
            raise
        finally:
            self.stats.passes += 1
            self.stats.seconds += time.perf_counter() - started
        return self.stats

    # ------------------------------------------------------------------ internals

    def _call(self, method: Callable[..., dict[str, Any]], deadline: float, **kwargs: Any) -> Any:
        """One API call, throttling backed off until the deadline (then None)."""
        attempt = 0
        while True:
            try:
                self.stats.calls += 1
                return method(**kwargs)
            except Exception as exc:
                if error_code(exc) not in THROTTLE_CODES:
                    raise
                self.stats.throttles += 1
                if self.clock() >= deadline:
                    return None
                self.sleep(self.backoff.delay(attempt))
                attempt += 1

    def _describe(self, deadline: float) -> None:
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
        for _ in range(100_000):  # pages of up to 100 shards
            answer = self._call(self.api.describe_stream, deadline, **kwargs)
            if answer is None:
                return
            description = answer.get("StreamDescription", {})
            for raw in description.get("Shards", []):
                sid = raw["ShardId"]
                closed = "EndingSequenceNumber" in raw.get("SequenceNumberRange", {})
                known = self.shards.get(sid)
                if known is None:
                    self.shards[sid] = _Shard(sid, raw.get("ParentShardId"), closed)
                else:
                    known.closed = known.closed or closed
            last = description.get("LastEvaluatedShardId")
            if not last:
                break
            kwargs["ExclusiveStartShardId"] = last
        for shard in self.shards.values():
            shard.generation = self._generation(shard)
        self.stats.shards = len(self.shards)

    def _generation(self, shard: _Shard) -> int:
        depth, seen, parent = 0, {shard.shard_id}, shard.parent_id
        while parent in self.shards and parent not in seen:
            seen.add(parent)
            depth += 1
            parent = self.shards[parent].parent_id
        return depth

    def _ordered(self) -> list[_Shard]:
        return sorted(self.shards.values(), key=lambda s: (s.generation, s.shard_id))

    def _iterator(self, shard: _Shard, deadline: float, *, from_start: bool = False) -> Any:
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard.shard_id}
        if shard.last_seq is None or from_start:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["SequenceNumber"] = shard.last_seq
        try:
            answer = self._call(self.api.get_shard_iterator, deadline, **kwargs)
        except Exception as exc:
            if error_code(exc) != TRIMMED_CODE or from_start:
                raise
            self.stats.trimmed += 1
            return self._iterator(shard, deadline, from_start=True)
        return None if answer is None else answer.get("ShardIterator")

    def _read_shard(
        self, shard: _Shard, on_changes: Callable[[list[Change]], None], deadline: float
    ) -> bool:
        """True when the shard is finished (closed) or caught up (open) in this pass."""
        iterator = self._iterator(shard, deadline)  # None: throttled up to the deadline
        empties = 0
        while iterator is not None:
            if self.clock() >= deadline:
                return False
            try:
                page = self._call(
                    self.api.get_records, deadline, ShardIterator=iterator, Limit=self.page_limit
                )
            except Exception as exc:
                code = error_code(exc)
                if code == EXPIRED_CODE:
                    self.stats.expired_iterators += 1
                elif code == TRIMMED_CODE:
                    self.stats.trimmed += 1
                    shard.last_seq = None  # what followed our position is gone: the horizon
                else:
                    raise
                iterator = self._iterator(shard, deadline)
                continue
            if page is None:
                return False
            records = page.get("Records", [])
            if records:
                empties = 0
                batch = [
                    to_change(r, shard.shard_id, shard.generation, self.key_names,
                              self.trace_attr)
                    for r in records
                ]  # fmt: skip
                shard.last_seq = batch[-1].sequence_number
                shard.changes += len(batch)
                self.stats.changes += len(batch)
                on_changes(batch)
            else:
                empties += 1
            iterator = page.get("NextShardIterator")
            if iterator is None:
                shard.done = True
                return True
            if not records and not shard.closed and empties >= self.empty_pages:
                return True  # open and caught up: resume here next pass
        return False
