"""The action-log proof of concept reproduced (``--behaviour sample``) over fakes: it checkpoints
before it writes (killed in between, the batch is lost), a replay counts an ADD twice, failures
and malformed records are only logged. The reference consumer, in the same scenario, loses
nothing: the contrast is what verify is there to catch."""

from __future__ import annotations

import json

import pytest

from replicator.core.action_fakes import FakeActionTable
from replicator.core.action_sample import SampleActionConsumer
from replicator.core.batch import BatchStatus
from replicator.core.checkpoint import MemoryCheckpointStore
from replicator.core.records import SourceRecord
from replicator.errors import RetryableRequestError

SHARD = "shardId-000000000000"


class Killed(BaseException):
    """The process dies here."""


def rec(seq: int, doc) -> SourceRecord:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return SourceRecord(SHARD, str(seq), "g0", data, arrival_ms=seq)


def add(pk: str, n: int) -> dict:
    return {"Action": "UpdateItem", "Data": {"pk": pk, "Add": {"n": n}}}


def counter(table: FakeActionTable, pk: str) -> int | None:
    item = table.items("items").get(json.dumps({"pk": {"S": pk}}, separators=(",", ":")))
    return None if item is None else int(item["n"]["N"])


def sample(table, store, events=None):
    def log(event, **fields):
        if events is not None:
            events.append((event, fields))

    return SampleActionConsumer(
        stream="actions", table="items", sink=table, checkpoints=store, log=log
    )


def resume(store: MemoryCheckpointStore, records: list[SourceRecord]) -> list[SourceRecord]:
    """What the poller reads after a restart: the records after the shard's checkpoint."""
    row = store.rows.get(SHARD)
    after = int(row.sequence_number) if row is not None else 0
    return [r for r in records if int(r.sequence_number) > after]


def test_killed_between_its_checkpoint_and_its_writes_the_batch_is_lost() -> None:
    records = [rec(1, add("k", 1)), rec(2, add("k", 2)), rec(3, add("j", 5))]
    table = FakeActionTable(crash_on_write=Killed())
    store = MemoryCheckpointStore()
    with pytest.raises(Killed):
        sample(table, store).process(SHARD, records)
    assert store.rows[SHARD].sequence_number == "3"  # acknowledged before anything was written
    assert resume(store, records) == []  # the restarted consumer never sees them again
    assert counter(table, "k") is None and counter(table, "j") is None


def test_the_reference_consumer_killed_at_the_same_point_loses_nothing() -> None:
    from test_action_apply import consumer  # the reference consumer over the same fakes

    records = [rec(1, add("k", 1)), rec(2, add("k", 2)), rec(3, add("j", 5))]
    table = FakeActionTable(crash_on_write=Killed())
    store = MemoryCheckpointStore()
    with pytest.raises(Killed):
        consumer(table, store).process(SHARD, records)
    assert SHARD not in store.rows
    consumer(table, store).process(SHARD, resume(store, records))
    assert (counter(table, "k"), counter(table, "j")) == (3, 5)


def test_its_replayed_add_counts_twice() -> None:
    records = [rec(1, add("k", 1))]
    table = FakeActionTable()
    sample(table, MemoryCheckpointStore()).process(SHARD, records)
    sample(table, MemoryCheckpointStore()).process(SHARD, records)  # a replay (checkpoint lost)
    assert counter(table, "k") == 2


def test_failures_and_malformed_records_are_logged_and_lost() -> None:
    events: list = []
    table = FakeActionTable(fail_updates={1: RetryableRequestError("throttled", "Throttling")},
                            unprocessed=lambda r, call: r.key["pk"]["S"] == "b")  # fmt: skip
    store = MemoryCheckpointStore()
    records = [
        rec(1, add("k", 1)),
        rec(2, b"not json"),
        rec(
            3,
            {"Action": "BatchWrite", "Data": [{"PutItem": {"pk": "a"}}, {"PutItem": {"pk": "b"}}]},
        ),
        rec(4, {"Action": "PutItem", "Data": {"pk": "c", "v": 1}}),
        rec(5, {"Action": "DeleteItem", "Data": {"pk": "c"}}),
    ]
    c = sample(table, store, events)
    result = c.process(SHARD, records)
    assert result.status is BatchStatus.REPLICATED and store.rows[SHARD].sequence_number == "5"
    assert counter(table, "k") is None  # the throttled update is never sent again
    assert sorted(k for k in table.items("items")) == ['{"pk":{"S":"a"}}']
    counters = c.metrics.counters
    assert (counters["actions_lost"], counters["malformed_lost"], counters["unprocessed_lost"]) == (
        1,
        1,
        1,
    )
    assert {e for e, _ in events} >= {"action_failed", "malformed_action", "unprocessed_items"}
