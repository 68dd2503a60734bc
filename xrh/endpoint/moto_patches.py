"""Corrections to moto 5.x applied inside each embedded endpoint process, never in the caller.

moto is the embedded default, so its defects would become the harness's. Measured on moto 5.x
(REFERENCE.md, "moto"):

- ``Shard.put_record`` finds the next sequence number by listing every key of the shard and is
  not safe under concurrent requests: 8 writer threads on one shard lost 68 of 8,000
  acknowledged records, and the write rate fell by two thirds as a shard filled. Here each shard
  gets a lock and an O(1) counter.
- ``Shard.get_records`` scans the shard from its first record on every call (O(n) per page);
  here a sorted list of sequence numbers is bisected.
- Resharding moves the parent's records into the children, giving them new sequence numbers;
  on AWS the parent keeps its records (closed, with an ending sequence number) and consumers
  read parents before children. Here split and merge leave the parent's records in place, and
  new records are routed only to open shards.
- A closed shard read to its end keeps returning an iterator; AWS returns
  ``NextShardIterator: null`` there, which is how consumers know a parent is finished.
- Every PutRecord(s) also records CloudWatch metric data that is never read and grows without
  bound; it is skipped.
- DynamoDB conditional writes check and write without a lock, so two concurrent conditional
  writes can both succeed (lease takes, checkpoints). Writes are serialised per process.
- DynamoDB Streams keeps every shard iterator it ever handed out (one per GetRecords, about
  1.85 KB each: a poller reading an idle shard five times a second grows the endpoint by about
  33 MB an hour) and never expires them. On AWS an iterator expires 15 minutes after it was
  handed out; here too, and reading one gives ExpiredIteratorException as AWS answers, which
  readers handle by asking for a new one after their checkpoint.
- moto 5.2's generic response serializer walks every member of the ``AttributeValue`` shape
  (ten of them) for every attribute of every item, through its alias lookups: about 0.75 ms of
  server time per item of four attributes. A parallel Scan of 30,000 items (4 segments) took
  9.8 s over HTTP (about 3,000 items/s) and DynamoDB Streams GetRecords 13.5 s for the same
  30,000 changes. Linear, not quadratic, but it made verify and the bootstrap copy crawl. Here
  an ``AttributeValue`` given as a plain dict is written in one step, with the same conversions
  the generic path applies (strings, base64 for binaries, nested maps and lists); anything
  else still takes the generic path. Measured after: the same Scan in 2.2 s (moto's own
  sorting and copying of the table per page remain) and GetRecords in 4.3 s.
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from collections.abc import Callable
from typing import Any

_PATCHED = False
_STATE_LOCK = threading.Lock()


class _ShardIndex:
    """Per-shard lock, next sequence number and sorted sequence numbers."""

    __slots__ = ("lock", "seqs", "next_seq")

    def __init__(self, records: dict[int, Any]) -> None:
        self.lock = threading.Lock()
        self.seqs: list[int] = sorted(records)
        self.next_seq = (self.seqs[-1] + 1) if self.seqs else 1


class _ShardClosed(Exception):
    """The shard closed (reshard) after the record was routed to it."""


def _index(shard: Any) -> _ShardIndex:
    index = shard.__dict__.get("_xrh_index")
    if index is None:
        with _STATE_LOCK:
            index = shard.__dict__.get("_xrh_index")
            if index is None:
                index = _ShardIndex(shard.records)
                shard.__dict__["_xrh_index"] = index
    return index


def apply() -> None:
    """Patch moto's classes in this process (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    _patch_kinesis()
    _patch_dynamodb()
    _patch_attribute_values()
    _patch_stream_iterators()
    _PATCHED = True


def _patch_kinesis() -> None:
    from moto.kinesis import models
    from moto.kinesis.exceptions import InvalidArgumentError
    from moto.kinesis.utils import decompose_shard_iterator

    Shard, Stream, Record = models.Shard, models.Stream, models.Record

    def put_record(self: Any, partition_key: str, data: str, explicit_hash_key: str) -> str:
        index = _index(self)
        with index.lock:
            if not self.is_open:
                raise _ShardClosed(self.shard_id)
            seq = index.next_seq
            index.next_seq = seq + 1
            self.records[seq] = Record(partition_key, data, seq, explicit_hash_key)
            index.seqs.append(seq)
        return str(seq)

    def get_records(self: Any, last_sequence_id: str, limit: int | None) -> tuple[list, int, int]:
        index = _index(self)
        last = int(last_sequence_id)
        with index.lock:
            start = bisect.bisect_right(index.seqs, last)
            chosen = [self.records[s] for s in index.seqs[start : start + (limit or 10000)]]
            newest = self.records[index.seqs[-1]] if index.seqs else None
        if not chosen:
            return [], last, 0
        behind = int((newest.created_at - chosen[-1].created_at) * 1000) if newest else 0
        return chosen, chosen[-1].sequence_number, max(behind, 0)

    def get_min_sequence_number(self: Any) -> int:
        index = _index(self)
        with index.lock:
            return index.seqs[0] if index.seqs else 0

    def get_max_sequence_number(self: Any) -> int:
        index = _index(self)
        with index.lock:
            return index.seqs[-1] if index.seqs else 0

    def get_sequence_number_at(self: Any, at_timestamp: float) -> int:
        index = _index(self)
        with index.lock:
            seqs = list(index.seqs)
        # Arrival times increase with sequence numbers: bisect on them as well.
        lo, hi = 0, len(seqs)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.records[seqs[mid]].created_at < at_timestamp:
                lo = mid + 1
            else:
                hi = mid
        return seqs[lo - 1] if lo else 0

    def _next_shard_number(self: Any) -> int:
        return max(s._shard_id for s in self.shards.values()) + 1

    def split_shard(self: Any, shard_to_split: str, new_starting_hash_key: str) -> None:
        split_at = int(new_starting_hash_key)
        shard = self.shards[shard_to_split]
        if not shard.starting_hash < split_at < shard.ending_hash:
            raise InvalidArgumentError(
                message=f"NewStartingHashKey {split_at} is not inside shard {shard_to_split}'s hash range"
            )
        if not shard.is_open:
            raise InvalidArgumentError(
                message=f"Shard {shard.shard_id} in stream {self.stream_name} has already been merged or split"
            )
        number = _next_shard_number(self)
        left = Shard(number, shard.starting_hash, split_at - 1, parent=shard.shard_id)
        right = Shard(number + 1, split_at, shard.ending_hash, parent=shard.shard_id)
        with _index(shard).lock:  # no put lands in the parent after it is closed
            shard.is_open = False
        self.shards[left.shard_id] = left
        self.shards[right.shard_id] = right

    def merge_shards(self: Any, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
        first, second = self.shards[shard_to_merge], self.shards[adjacent_shard_to_merge]
        if first.ending_hash + 1 == second.starting_hash:
            low, high = first, second
        elif second.ending_hash + 1 == first.starting_hash:
            low, high = second, first
        else:
            raise InvalidArgumentError(adjacent_shard_to_merge)
        if not (first.is_open and second.is_open):
            raise InvalidArgumentError(message="both shards must be open to merge")
        merged = Shard(
            _next_shard_number(self),
            low.starting_hash,
            high.ending_hash,
            parent=first.shard_id,
            adjacent_parent=second.shard_id,
        )
        for parent in (first, second):
            with _index(parent).lock:
                parent.is_open = False
        self.shards[merged.shard_id] = merged

    def get_shard_for_key(self: Any, partition_key: str, explicit_hash_key: str) -> Any:
        if not isinstance(partition_key, str) or len(partition_key) > 256:
            raise InvalidArgumentError("partition_key")
        if explicit_hash_key:
            key = int(explicit_hash_key)
            if key >= 2**128:
                raise InvalidArgumentError("explicit_hash_key")
        else:
            key = int(models.md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
        for shard in list(self.shards.values()):
            if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
                return shard
        return None

    def stream_put_record(self: Any, partition_key: str, explicit_hash_key: str, data: str) -> Any:
        # A reshard may close the routed shard between routing and writing: route again.
        for _ in range(5):
            shard = self.get_shard_for_key(partition_key, explicit_hash_key)
            try:
                sequence_number = shard.put_record(partition_key, data, explicit_hash_key)
            except _ShardClosed:
                continue
            from moto.awslambda.utils import get_backend

            for arn, esm in self.lambda_event_source_mappings.items():
                get_backend(self.account_id, arn.split(":")[3]).send_kinesis_message(
                    function_name=esm.function_arn,
                    kinesis_stream=self.arn,
                    kinesis_data=data,
                    kinesis_shard_id=shard.shard_id,
                    kinesis_partition_key=partition_key,
                    kinesis_sequence_number=sequence_number,
                )
            return sequence_number, shard.shard_id
        raise InvalidArgumentError("no open shard took the record during a reshard")

    backend_get_records = models.KinesisBackend.get_records

    def get_records_closed_aware(
        self: Any, stream_arn: Any, shard_iterator: str, limit: Any
    ) -> Any:
        next_iterator, records, behind = backend_get_records(
            self, stream_arn, shard_iterator, limit
        )
        stream_name, shard_id, last = decompose_shard_iterator(next_iterator)
        shard = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name).get_shard(
            shard_id
        )
        if not shard.is_open and int(last) >= shard.get_max_sequence_number():
            return None, records, behind  # as AWS: a closed shard read to its end
        return next_iterator, records, behind

    Shard.put_record = put_record
    Shard.get_records = get_records
    Shard.get_min_sequence_number = get_min_sequence_number
    Shard.get_max_sequence_number = get_max_sequence_number
    Shard.get_sequence_number_at = get_sequence_number_at
    Stream.split_shard = split_shard
    Stream.merge_shards = merge_shards
    Stream.get_shard_for_key = get_shard_for_key
    Stream.put_record = stream_put_record
    models.KinesisBackend.get_records = get_records_closed_aware
    models.KinesisBackend._send_stream_metrics = lambda self, *a, **k: None


def _patch_dynamodb() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()

    def serialised(method: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(self, *args, **kwargs)

        wrapper.__name__ = method.__name__
        wrapper.__doc__ = method.__doc__
        return wrapper

    DynamoDBBackend.update_item = one_insert_per_update(DynamoDBBackend.update_item)
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        setattr(DynamoDBBackend, name, serialised(getattr(DynamoDBBackend, name)))


def one_insert_per_update(update_item: Callable[..., Any]) -> Callable[..., Any]:
    """An UpdateItem that creates its item writes one INSERT (its final image) to the table's
    stream, as on AWS. moto first puts an item holding only the key, which streams an INSERT of
    its own: a change that never happened, without any of the item's attributes (a replicator
    reading it sees an item it cannot order or apply). That record is never added (not removed
    afterwards: a reader could have read it in between), so sequence numbers stay positions."""

    def wrapper(self: Any, table_name: str, key: Any, *args: Any, **kwargs: Any) -> Any:
        shard = self.get_table(table_name).stream_shard
        if shard is None:
            return update_item(self, table_name, key, *args, **kwargs)
        add, adds = shard.add, [0]

        def first_insert_skipped(old: Any, new: Any) -> None:
            adds[0] += 1
            if adds[0] == 1 and old is None:
                return  # moto's key-only put of the item this update creates
            add(old, new)

        shard.add = first_insert_skipped  # writes are serialised per region: no other adds
        try:
            return update_item(self, table_name, key, *args, **kwargs)
        finally:
            del shard.add

    wrapper.__name__ = update_item.__name__
    wrapper.__doc__ = update_item.__doc__
    return wrapper


# AttributeValue members whose values are strings, string lists, binaries, binary lists,
# booleans, and the two containers (DynamoDB and DynamoDB Streams share the shape's name).
_AV_STRING, _AV_STRINGS = frozenset({"S", "N"}), frozenset({"SS", "NS"})
_AV_KEYS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})


def attribute_value_wire(serializer: Any, value: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON of one ``AttributeValue`` as moto's generic serializer writes it, or None when
    ``value`` is not a plain dict of known members (the caller falls back to the generic
    path). ``serializer`` supplies the base64 conversion, so binaries come out the same."""
    if not isinstance(value, dict) or not value or not value.keys() <= _AV_KEYS:
        return None
    out: dict[str, Any] = {}
    for name, member in value.items():
        if member is None:
            continue
        if name in _AV_STRING:
            out[name] = str(member) if member not in ([], {}) else member
        elif name in _AV_STRINGS:
            out[name] = [str(v) for v in member]
        elif name == "B":
            out[name] = serializer._base64(member)
        elif name == "BS":
            out[name] = [serializer._base64(v) for v in member]
        elif name == "M":
            converted = {}
            for k, v in member.items():
                wire = attribute_value_wire(serializer, v)
                if wire is None:
                    return None
                converted[k] = wire
            out[name] = converted
        elif name == "L":
            items = [attribute_value_wire(serializer, v) for v in member]
            if any(i is None for i in items):
                return None
            out[name] = items
        else:  # BOOL, NULL
            out[name] = member
    return out


def fast_attribute_values(cls: type) -> Any:
    """``cls._serialize_type_structure`` with the one-step ``AttributeValue``."""
    generic = cls._serialize_type_structure

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue":
            wire = attribute_value_wire(self, value)
            if wire is not None:
                self._default_serialize(serialized, wire, shape, key)
                return
        generic(self, serialized, value, shape, key)

    serialize_structure.__doc__ = generic.__doc__
    return serialize_structure


def _patch_attribute_values() -> None:
    from moto.core import serialize

    cls = serialize.BaseJSONSerializer
    cls._serialize_type_structure = fast_attribute_values(cls)


#: DynamoDB Streams shard iterators expire this long after they were handed out (AWS).
ITERATOR_TTL_S = 15 * 60


class ExpiringIterators(dict):
    """moto's ``shard_iterators`` map, forgetting each iterator ``ttl_s`` after it was stored
    (the oldest are dropped as new ones come, so the map holds at most ``ttl_s`` of them)."""

    def __init__(self, ttl_s: float = ITERATOR_TTL_S, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.ttl_s = ttl_s
        self.clock = clock
        self._born: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __setitem__(self, key: str, value: Any) -> None:
        now = self.clock()
        with self._lock:
            while self._born:
                oldest, born = next(iter(self._born.items()))
                if now - born < self.ttl_s:
                    break
                del self._born[oldest]
                super().pop(oldest, None)
            self._born[key] = now
            super().__setitem__(key, value)


def expired_iterator_error() -> Exception:
    from moto.core.exceptions import JsonRESTError

    return JsonRESTError(
        "ExpiredIteratorException", "Iterator expired: more than 15 minutes old, or unknown"
    )


def expiring_get_records(get_records: Callable[..., Any]) -> Callable[..., Any]:
    """GetRecords of an iterator the map no longer holds answers as AWS does, not with a 500."""

    def wrapper(self: Any, iterator_arn: str, limit: int) -> Any:
        if iterator_arn not in self.shard_iterators:
            raise expired_iterator_error()
        return get_records(self, iterator_arn, limit)

    wrapper.__name__ = get_records.__name__
    return wrapper


def _patch_stream_iterators() -> None:
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    init = DynamoDBStreamsBackend.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.shard_iterators = ExpiringIterators()

    DynamoDBStreamsBackend.__init__ = __init__
    DynamoDBStreamsBackend.get_records = expiring_get_records(DynamoDBStreamsBackend.get_records)
