"""Read a whole Kinesis stream: every shard, open and closed, from the oldest record to the tip.

Shards come from ListShards (paged by NextToken, which must then be sent without StreamName);
parents are read before their children (lineage generation) so per-key order is the stream's.
Each shard is paged with GetRecords (up to 10,000 records a call) from TRIM_HORIZON and is done
when it is closed and its NextShardIterator is None, or open and caught up (an empty page with
MillisBehindLatest 0). Throttling backs off with the passed-in sleep; an expired iterator is
renewed after the last sequence number read. Everything stops at the deadline: the shards not
finished are reported, and the verdict becomes unknown.

The API is a :class:`KinesisApi` (a boto3 Kinesis client satisfies it; tests pass a fake).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from verify.errors import EndpointUnreachable
from verify.model import StreamRecord

THROTTLE_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException"}
)
EXPIRED_CODE = "ExpiredIteratorException"


class KinesisApi(Protocol):
    def list_shards(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_records(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ShardInfo:
    shard_id: str
    parent_id: str | None
    adjacent_parent_id: str | None
    generation: int
    closed: bool


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 0.2
    cap_s: float = 5.0

    def delay(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * (2 ** min(attempt, 20)))


@dataclass(slots=True)
class ReadStats:
    stream: str
    shards: int = 0
    records: int = 0
    calls: int = 0
    throttles: int = 0
    expired_iterators: int = 0
    seconds: float = 0.0
    unfinished: list[str] = field(default_factory=list)
    per_shard: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.unfinished

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "shards": self.shards,
            "records": self.records,
            "calls": self.calls,
            "throttles": self.throttles,
            "expired_iterators": self.expired_iterators,
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
            "unfinished_shards": self.unfinished,
            "records_per_shard": self.per_shard,
        }


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def is_connection_error(exc: BaseException) -> bool:
    """botocore's connection failures (refused, closed, timed out) or the builtin ones."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError
    except ImportError:  # pragma: no cover - botocore is a dependency
        return False
    return isinstance(exc, BotoConnectionError | HTTPClientError)


def arrival_ms(value: Any) -> int:
    if isinstance(value, datetime):
        return int(round(value.timestamp() * 1000))
    return int(round(float(value) * 1000))  # the wire form: epoch seconds


def list_shards(api: KinesisApi, stream: str) -> list[ShardInfo]:
    """Every shard (closed and open), parents before children."""
    raw: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        page = api.list_shards(**kwargs)
        raw.extend(page.get("Shards", []))
        token = page.get("NextToken")
        if not token:
            break
        kwargs = {"NextToken": token}
    by_id = {s["ShardId"]: s for s in raw}
    generations: dict[str, int] = {}

    def generation(shard_id: str, depth: int = 0) -> int:
        if shard_id in generations:
            return generations[shard_id]
        shard = by_id.get(shard_id)
        if shard is None or depth > len(by_id):
            return -1  # a parent past retention: treat as before everything
        parents = [shard.get("ParentShardId"), shard.get("AdjacentParentShardId")]
        gen = 1 + max([generation(p, depth + 1) for p in parents if p] or [-1])
        generations[shard_id] = gen
        return gen

    shards = [
        ShardInfo(
            s["ShardId"],
            s.get("ParentShardId"),
            s.get("AdjacentParentShardId"),
            generation(s["ShardId"]),
            "EndingSequenceNumber" in s.get("SequenceNumberRange", {}),
        )
        for s in raw
    ]
    return sorted(shards, key=lambda s: (s.generation, s.shard_id))


def read_stream(
    api: KinesisApi,
    stream: str,
    on_record: Callable[[StreamRecord], None],
    *,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    limit: int = 10_000,
    backoff: Backoff = Backoff(),  # noqa: B008 - frozen value
    poll_s: float = 0.0,
    on_progress: Callable[[int], None] | None = None,
) -> ReadStats:
    """Read ``stream`` to its tip; connection failures raise :class:`EndpointUnreachable`."""
    stats = ReadStats(stream)
    started = clock()
    try:
        shards = list_shards(api, stream)
        stats.shards = len(shards)
        for index, shard in enumerate(shards):
            if clock() >= deadline:
                stats.unfinished.extend(s.shard_id for s in shards[index:])
                break
            if not _read_shard(
                api, stream, shard, on_record, stats, deadline, clock, sleep, limit, backoff,
                poll_s, on_progress,
            ):  # fmt: skip
                stats.unfinished.extend(s.shard_id for s in shards[index:])
                break
    except Exception as exc:
        if is_connection_error(exc):
            raise EndpointUnreachable(f"stream {stream}: endpoint not reachable ({exc})") from exc
        raise
    stats.seconds = clock() - started
    return stats


def _read_shard(
    api: KinesisApi,
    stream: str,
    shard: ShardInfo,
    on_record: Callable[[StreamRecord], None],
    stats: ReadStats,
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    limit: int,
    backoff: Backoff,
    poll_s: float,
    on_progress: Callable[[int], None] | None,
) -> bool:
    """True when the shard was read to its end (closed) or its tip (open)."""
    last_seq: str | None = None
    iterator = _iterator(api, stream, shard.shard_id, last_seq)
    stats.calls += 1
    throttled = 0
    count = 0
    while True:
        if clock() >= deadline:
            return False
        try:
            page = api.get_records(ShardIterator=iterator, Limit=limit)
            stats.calls += 1
        except Exception as exc:
            code = error_code(exc)
            if code in THROTTLE_CODES:
                stats.throttles += 1
                sleep(backoff.delay(throttled))
                throttled += 1
                continue
            if code == EXPIRED_CODE:
                stats.expired_iterators += 1
                iterator = _iterator(api, stream, shard.shard_id, last_seq)
                continue
            raise
        throttled = 0
        records = page.get("Records", [])
        for r in records:
            on_record(
                StreamRecord(
                    shard.shard_id,
                    shard.generation,
                    r["SequenceNumber"],
                    r["PartitionKey"],
                    bytes(r["Data"]),
                    arrival_ms(r["ApproximateArrivalTimestamp"]),
                )
            )
            last_seq = r["SequenceNumber"]
        count += len(records)
        stats.records += len(records)
        stats.per_shard[shard.shard_id] = count
        if records and on_progress is not None:
            on_progress(len(records))
        iterator = page.get("NextShardIterator")
        if iterator is None:
            return True
        if not records and page.get("MillisBehindLatest", 0) == 0:
            return True
        if not records and poll_s:
            sleep(poll_s)


def _iterator(api: KinesisApi, stream: str, shard_id: str, after: str | None) -> str:
    kwargs: dict[str, Any] = {"StreamName": stream, "ShardId": shard_id}
    if after is None:
        kwargs["ShardIteratorType"] = "TRIM_HORIZON"
    else:
        kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
    return api.get_shard_iterator(**kwargs)["ShardIterator"]
