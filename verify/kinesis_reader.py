"""Read a whole Kinesis stream: every shard, open and closed, from the oldest record to the tip.

Shards come from ListShards (paged by NextToken, which must then be sent without StreamName);
parents are read before their children (lineage generation) so per-key order is the stream's.
Each shard is paged with GetRecords (up to 10,000 records a call) from TRIM_HORIZON and is done
when it is closed and its NextShardIterator is None, or open and caught up (an empty page with
MillisBehindLatest 0). Throttling backs off with the passed-in sleep; an expired iterator is
renewed after the last sequence number read. Everything stops at the deadline: the shards not
finished are reported, and the verdict becomes unknown. The reading itself (threads, resuming
later passes) is :mod:`verify.follower`; this module keeps the pieces it shares and
:func:`read_stream`, one pass over one stream.

The API is a :class:`KinesisApi` (a boto3 Kinesis client satisfies it; tests pass a fake).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

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


RAW_BODY = "verify:raw-body"  # the key the untouched answer travels under
_RAW = threading.local()


def _hand_over_body(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """botocore ``before-parse`` handler: in a thread that asked for it (:func:`raw_get_records`),
    a successful JSON answer's body goes to the caller untouched and botocore parses an empty
    document instead. Errors are left to botocore, so they still raise ``ClientError``."""
    if not getattr(_RAW, "wanted", False) or response_dict.get("status_code") != 200:
        return
    content_type = (response_dict.get("headers") or {}).get("content-type") or ""
    if "json" not in content_type:
        return
    customized_response_dict[RAW_BODY] = response_dict["body"]
    response_dict["body"] = b"{}"


def raw_get_records(api: KinesisApi) -> Callable[[str, int], dict[str, Any]] | None:
    """``get(iterator, limit)``: GetRecords on a botocore client with the answer parsed by
    ``json.loads``, its records as on the wire (``Data`` base64-decoded to bytes,
    ``ApproximateArrivalTimestamp`` in epoch seconds); None for an API without botocore's
    event hooks (fakes), which is then called as it is.

    botocore walks every record through its shape model in Python and turns each arrival time
    into a datetime in the local time zone (dateutil's ``tzlocal``, built anew per record): about
    16 us of CPU a record, more than verify's own work on it, under the GIL that verify's store
    thread needs. Only the calls made through the returned function are affected: other users of
    the same client get botocore's parse as always.
    """
    events = getattr(getattr(api, "meta", None), "events", None)
    if events is None or not hasattr(events, "register"):
        return None
    events.register(
        "before-parse.kinesis.GetRecords", _hand_over_body, unique_id="verify-raw-get-records"
    )
    call = api.get_records
    decode = base64.b64decode

    def get(iterator: str, limit: int) -> dict[str, Any]:
        _RAW.wanted = True
        try:
            page = call(ShardIterator=iterator, Limit=limit)
        finally:
            _RAW.wanted = False
        body = page.pop(RAW_BODY, None)
        if body is None:
            return page  # not a JSON answer: botocore parsed it
        parsed = json.loads(body)
        for record in parsed.get("Records") or ():
            record["Data"] = decode(record["Data"])
        return parsed

    return get


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
    max_threads: int = 1,
) -> ReadStats:
    """Read ``stream`` to its tip; connection failures raise :class:`EndpointUnreachable`.

    One pass of a :class:`verify.follower.StreamFollower`. With ``max_threads`` 1 (the default)
    the shards are read one after another, parents before children, while ``on_record`` stores
    the previous pages; more threads read shards concurrently (each shard still in order).
    ``poll_s`` is the least time between two GetRecords on one shard.
    """
    from verify.follower import StreamFollower, catch_up

    follower = StreamFollower(
        api, stream, label=stream, limit=limit, backoff=backoff, min_call_interval_s=poll_s,
        clock=clock, sleep=sleep,
    )  # fmt: skip
    progress = None if on_progress is None else (lambda _label, n: on_progress(n))
    passes = catch_up(
        [(follower, on_record)], deadline=deadline, clock=clock, max_threads=max_threads,
        on_progress=progress,
    )  # fmt: skip
    return passes[stream]
