"""The action-log reference consumer over fakes: exactly once in effect under replays, crashes
and lost answers (an ADD never counts twice), dead letters, all-or-nothing acknowledgement, the
checkpoint only after the writes, fencing. Each result is held against an independent fold of
the log written here (not the consumer's planning)."""

from __future__ import annotations

import json
import random

import pytest

from replicator.core.action_apply import ActionApplier
from replicator.core.action_fakes import FakeActionTable
from replicator.core.action_plan import SEQ_ATTR
from replicator.core.action_update import ChainUpdater
from replicator.core.batch import BatchStatus
from replicator.core.checkpoint import MemoryCheckpointStore
from replicator.core.fence import LeaseFence
from replicator.core.putrecords import Backoff
from replicator.core.records import SourceRecord
from replicator.core.table_writes import BatchWriter
from replicator.errors import (
    DeadLetterError,
    InvalidRequestError,
    RetryableRequestError,
    TerminalRequestError,
)

SHARD = "shardId-000000000000"
TABLE = "items"


class Letters:
    def __init__(self, fail: bool = False) -> None:
        self.letters: list = []
        self.fail = fail

    def put(self, letters) -> None:
        if self.fail:
            raise DeadLetterError("bucket gone")
        self.letters.extend(letters)


class Killed(BaseException):
    """The process dies here (nothing catches it)."""


def rec(seq: int, doc, shard: str = SHARD) -> SourceRecord:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return SourceRecord(shard, str(seq), "g0", data, arrival_ms=1_000 + seq)


def put(pk, **attrs):
    return {"Action": "PutItem", "Data": {"pk": pk, **attrs},
            "commitTimestamp": "2026-01-01T00:00:00.000Z"}  # fmt: skip


def upd(pk, set_=None, add=None):
    data = {"pk": pk}
    if set_:
        data["Set"] = set_
    if add:
        data["Add"] = add
    return {"Action": "UpdateItem", "Data": data}


def delete(pk):
    return {"Action": "DeleteItem", "Data": {"pk": pk}}


def batch(*requests):
    return {"Action": "BatchWrite", "Data": list(requests)}


def fold(docs) -> dict[str, dict]:
    """The table the log implies, in plain JSON (independent of the consumer's code)."""
    table: dict[str, dict] = {}

    def one(kind, data):
        pk = data["pk"]
        if kind == "PutItem":
            table[pk] = dict(data)
        elif kind == "DeleteItem":
            table.pop(pk, None)
        else:
            item = table.setdefault(pk, {"pk": pk})
            if any(not isinstance(item.get(a, 0), int | float) for a in data.get("Add", {})):
                return  # DynamoDB refuses the whole update
            item.update(data.get("Set", {}))
            for a, n in data.get("Add", {}).items():
                item[a] = item.get(a, 0) + n

    for doc in docs:
        if doc["Action"] == "BatchWrite":
            for request in doc["Data"]:
                ((kind, data),) = request.items()
                one(kind, data)
        else:
            one(doc["Action"], doc["Data"])
    return table


def plain(table: FakeActionTable) -> dict[str, dict]:
    """The fake's items in plain JSON, bookkeeping dropped."""

    def value(v):
        ((kind, x),) = v.items()
        if kind == "N":
            return int(x) if x.lstrip("-").isdigit() else float(x)
        if kind == "L":
            return [value(e) for e in x]
        if kind == "M":
            return {k: value(e) for k, e in x.items()}
        if kind == "NULL":
            return None
        return x

    return {
        item["pk"]["S"]: {k: value(v) for k, v in item.items() if not k.startswith("xrh_")}
        for item in table.items(TABLE).values()
    }


def consumer(table=None, checkpoints=None, letters=None, max_attempts=4, **kwargs):
    table = table if table is not None else FakeActionTable()
    backoff = Backoff(base=0.0, max_attempts=max_attempts)
    return ActionApplier(
        stream="actions", table=TABLE, source_region="us-east-1", target_region="us-east-2",
        updater=ChainUpdater(table, TABLE, backoff=backoff, sleep=lambda s: None),
        writer=BatchWriter(table, TABLE, backoff=backoff, sleep=lambda s: None, max_in_flight=2),
        checkpoints=checkpoints if checkpoints is not None else MemoryCheckpointStore(),
        dead_letters=letters if letters is not None else Letters(),
        clock_ms=lambda: 2_000_000, **kwargs,
    )  # fmt: skip


def workload(n: int, keys: int, seed: int, full: float = 1.0) -> list[dict]:
    """Random actions; ``full`` scales the share of puts, deletes and batch writes."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        pk, roll = str(rng.randrange(keys)), rng.random()
        roll = roll * full + (1 - full) * 0.35 if roll < 0.35 else roll
        if roll < 0.1:
            docs.append(delete(pk))
        elif roll < 0.25:
            docs.append(put(pk, v=i, tag=f"t{i}"))
        elif roll < 0.35:
            others = rng.sample(range(keys), 3)
            docs.append(batch(*[{"PutItem": {"pk": str(k), "v": i}} if j else
                                {"DeleteItem": {"pk": str(k)}} for j, k in enumerate(others)]))  # fmt: skip
        elif roll < 0.7:
            docs.append(upd(pk, add={"count": rng.randrange(1, 5), "other": 1}))
        else:
            docs.append(upd(pk, set_={"s": f"x{i}", "f": i / 4}, add={"count": 1}))
    return docs


def test_a_batch_applies_to_the_fold_of_the_log_with_one_write_per_key() -> None:
    docs = workload(300, 20, seed=1)
    table = FakeActionTable()
    store = MemoryCheckpointStore()
    c = consumer(table, store)
    records = [rec(i + 1, d) for i, d in enumerate(docs)]
    result = c.process(SHARD, records)
    assert result.status is BatchStatus.REPLICATED and result.acked == len(records)
    assert plain(table) == fold(docs)
    assert store.rows[SHARD].sequence_number == "300"
    writes = c.metrics.counters
    assert writes["put_requests"] + writes["delete_requests"] + writes["update_requests"] <= 20
    assert all(len(i[SEQ_ATTR]["S"]) == 93 for i in table.items(TABLE).values())


@pytest.mark.parametrize(("seed", "full"), [(2, 0.0), (3, 0.0), (4, 1.0)])
def test_replaying_batches_after_a_crash_before_the_checkpoint_never_doubles_an_add(
    seed, full
) -> None:
    docs = workload(200, 8, seed=seed, full=full)
    records = [rec(i + 1, d) for i, d in enumerate(docs)]
    table = FakeActionTable()
    # First life: batches of 30 applied, but the process dies before any checkpoint is kept.
    first = consumer(table, MemoryCheckpointStore())
    for i in range(0, 150, 30):
        assert first.process(SHARD, records[i : i + 30]).status is BatchStatus.REPLICATED
    # Second life: the whole log replayed from the start, at other batch boundaries.
    second = consumer(table, MemoryCheckpointStore())
    bounds = [0, 7, 61, 62, 140, 200]
    for a, b in zip(bounds, bounds[1:], strict=False):
        assert second.process(SHARD, records[a:b]).status is BatchStatus.REPLICATED
    assert plain(table) == fold(docs)
    if full < 1:  # mostly updates: applying the first life twice would show
        assert fold(docs[:150] + docs) != fold(docs)
        assert second.metrics.counters["ops_already_applied"] > 0


def test_a_replay_from_another_boundary_applies_exactly_the_missing_suffix() -> None:
    docs = [upd("k", add={"n": 1}) for _ in range(10)]
    records = [rec(i + 1, d) for i, d in enumerate(docs)]
    table = FakeActionTable()
    consumer(table).process(SHARD, records[:6])  # applied, checkpoint never kept
    again = consumer(table)
    again.process(SHARD, records[3:10])  # starts inside what was applied
    assert plain(table) == {"k": {"pk": "k", "n": 10}}
    counters = again.metrics.counters
    assert counters["condition_retries"] == 1 and counters["ops_already_applied"] == 3
    assert table.items(TABLE)['{"pk":{"S":"k"}}'][SEQ_ATTR]["S"].endswith("10")


@pytest.mark.parametrize("all_old", [True, False])
def test_a_lost_answer_is_sent_again_without_counting_twice(all_old) -> None:
    table = FakeActionTable(lost_updates={1}, all_old=all_old)
    c = consumer(table)
    result = c.process(SHARD, [rec(1, upd("k", add={"n": 5})), rec(2, upd("k", set_={"s": "a"}))])
    assert result.status is BatchStatus.REPLICATED
    assert plain(table) == {"k": {"pk": "k", "n": 5, "s": "a"}}
    assert table.read_calls == (0 if all_old else 1)


def test_set_after_add_and_add_after_set_fold_into_one_update() -> None:
    table = FakeActionTable()
    table.items(TABLE)['{"pk":{"S":"k"}}'] = {"pk": {"S": "k"}, "a": {"N": "100"}}
    docs = [upd("k", add={"a": 1, "b": 2}), upd("k", set_={"a": 7}), upd("k", add={"a": 3}),
            upd("k", add={"b": 1})]  # fmt: skip
    c = consumer(table)
    c.process(SHARD, [rec(i + 1, d) for i, d in enumerate(docs)])
    assert plain(table) == {"k": {"pk": "k", "a": 10, "b": 3}}
    assert table.update_calls == 1


def test_ops_before_the_last_put_or_delete_are_dropped_and_later_updates_folded_in() -> None:
    docs = [upd("k", add={"n": 1}), put("k", n=10, s="p"), upd("k", add={"n": 2}),
            delete("j"), upd("j", add={"m": 4})]  # fmt: skip
    table = FakeActionTable()
    c = consumer(table)
    c.process(SHARD, [rec(i + 1, d) for i, d in enumerate(docs)])
    assert plain(table) == fold(docs)
    assert table.update_calls == 0 and table.calls == 1  # one BatchWriteItem for both keys


def test_unprocessed_items_are_sent_again_until_written() -> None:
    table = FakeActionTable(unprocessed=lambda r, call: call <= 2 and r.key["pk"]["S"] in "135")
    docs = [put(str(k), v=k) for k in range(8)]
    c = consumer(table)
    assert c.process(SHARD, [rec(i + 1, d) for i, d in enumerate(docs)]).status is (
        BatchStatus.REPLICATED
    )
    assert plain(table) == fold(docs)
    assert c.metrics.counters["unprocessed_retries"] == 6


def test_writes_left_unwritten_fail_the_batch_and_nothing_is_checkpointed() -> None:
    store = MemoryCheckpointStore()
    table = FakeActionTable(unprocessed=lambda r, call: True)
    c = consumer(table, store, max_attempts=3)
    result = c.process(SHARD, [rec(1, put("a")), rec(2, upd("b", add={"n": 1}))])
    assert result.status is BatchStatus.FAILED and result.acked == 0
    assert result.failed_from == "1" and SHARD not in store.rows


def test_a_throttled_update_is_retried_and_a_terminal_error_fails_the_batch() -> None:
    table = FakeActionTable(fail_updates={1: RetryableRequestError("slow down", "Throttling")})
    c = consumer(table)
    assert c.process(SHARD, [rec(1, upd("k", add={"n": 1}))]).status is BatchStatus.REPLICATED
    assert plain(table) == {"k": {"pk": "k", "n": 1}}
    store = MemoryCheckpointStore()
    broken = FakeActionTable(fail_updates={1: TerminalRequestError("no table", "ResourceNotFound")})
    result = consumer(broken, store).process(SHARD, [rec(1, upd("k", add={"n": 1}))])
    assert result.status is BatchStatus.FAILED and not store.rows


def test_the_checkpoint_is_written_only_after_every_write_was_acknowledged() -> None:
    order: list[str] = []

    class Store(MemoryCheckpointStore):
        def advance(self, checkpoint):
            order.append(f"checkpoint {checkpoint.sequence_number}")
            return super().advance(checkpoint)

    class Table(FakeActionTable):
        def update(self, table, request, guard=None):
            super().update(table, request, guard)
            order.append("update")

        def batch_write(self, table, requests, guard=None):
            left = super().batch_write(table, requests, guard)
            order.append("batch_write")
            return left

    c = consumer(Table(), Store())
    c.process(
        SHARD, [rec(1, put("a")), rec(2, upd("b", add={"n": 1})), rec(3, upd("c", add={"n": 1}))]
    )
    assert order[-1] == "checkpoint 3" and sorted(order[:-1]) == ["batch_write", "update", "update"]


def test_malformed_records_are_dead_lettered_with_their_data_and_do_not_block() -> None:
    letters = Letters()
    table = FakeActionTable()
    records = [rec(1, b"\xffnot json"), rec(2, {"Action": "Scan"}), rec(3, upd("k", add={"n": 1})),
               rec(4, b'{"Action": "PutItem", "Data": {"pk": "z", "big": 1e999}}')]  # fmt: skip
    c = consumer(table, letters=letters)
    result = c.process(SHARD, records)
    assert result.status is BatchStatus.REPLICATED and result.acked == 4
    assert [d.record.data for d in letters.letters] == [records[0].data, records[1].data,
                                                         records[3].data]  # fmt: skip
    assert all(d.reason == "malformed" for d in letters.letters)
    assert "'Action' must be one of" in letters.letters[1].detail
    assert plain(table) == {"k": {"pk": "k", "n": 1}}


def test_an_add_to_a_string_is_dead_lettered_and_the_rest_of_the_chain_applies() -> None:
    letters = Letters()
    table = FakeActionTable()
    table.items(TABLE)['{"pk":{"S":"k"}}'] = {"pk": {"S": "k"}, "s": {"S": "text"}}
    docs = [upd("k", add={"n": 1}), upd("k", add={"s": 1}), upd("k", add={"n": 2}),
            upd("j", set_={"t": "x"}), upd("j", add={"t": 1})]  # fmt: skip
    c = consumer(table, letters=letters)
    assert c.process(SHARD, [rec(i + 1, d) for i, d in enumerate(docs)]).status is (
        BatchStatus.REPLICATED
    )
    assert plain(table) == {"k": {"pk": "k", "s": "text", "n": 3}, "j": {"pk": "j", "t": "x"}}
    assert sorted(d.record.sequence_number for d in letters.letters) == ["2", "5"]


def test_a_dead_letter_sink_that_fails_fails_the_batch() -> None:
    store = MemoryCheckpointStore()
    c = consumer(FakeActionTable(), store, letters=Letters(fail=True))
    assert c.process(SHARD, [rec(1, b"nope")]).status is BatchStatus.FAILED
    assert not store.rows


def test_a_lost_lease_stops_every_write() -> None:
    now = [0]
    fence = LeaseFence(SHARD, counter=3, expires_at_ms=1_000, duration_ms=1_000, guard_ms=500,
                       renew=lambda at, seen: None, clock_ms=lambda: now[0])  # fmt: skip
    now[0] = 900  # too little lease left: renewal fails, the lease was taken
    table = FakeActionTable()
    store = MemoryCheckpointStore()
    result = consumer(table, store).process(
        SHARD, [rec(1, put("a")), rec(2, upd("b", add={"n": 1}))], fence=fence
    )
    assert result.status is BatchStatus.LEASE_LOST
    assert table.calls == 0 and table.update_calls == 0 and not store.rows


def test_a_crash_mid_batch_then_a_replay_leaves_the_fold() -> None:
    docs = [upd("a", add={"n": 1}), put("b", v=1), upd("a", add={"n": 2}), upd("c", add={"m": 1})]
    records = [rec(i + 1, d) for i, d in enumerate(docs)]
    table = FakeActionTable(crash_on_write=None)
    consumer(table).process(SHARD, records[:1])  # applied, checkpoint lost
    table.crash_on_write = Killed()
    store = MemoryCheckpointStore()
    with pytest.raises(Killed):
        consumer(table, store).process(SHARD, records)
    assert not store.rows
    consumer(table, store).process(SHARD, records)
    assert plain(table) == fold(docs)


def test_an_invalid_combined_update_is_split_so_only_the_op_at_fault_is_dead() -> None:
    class Picky(FakeActionTable):
        def update(self, table, request, guard=None):
            if "bad" in request.set and len(request.set) + len(request.add) > 1:
                raise InvalidRequestError("item too large", "ValidationException")
            if "bad" in request.set:
                raise InvalidRequestError("item too large", "ValidationException")
            super().update(table, request, guard)

    letters = Letters()
    table = Picky()
    docs = [upd("k", add={"n": 1}), upd("k", set_={"bad": "x"}), upd("k", add={"n": 1})]
    c = consumer(table, letters=letters)
    assert c.process(SHARD, [rec(i + 1, d) for i, d in enumerate(docs)]).status is (
        BatchStatus.REPLICATED
    )
    assert plain(table) == {"k": {"pk": "k", "n": 2}}
    assert [d.record.sequence_number for d in letters.letters] == ["2"]


def test_positions_order_across_a_reshard() -> None:
    from replicator.core.action_plan import applied_seq

    parent = applied_seq("shardId-000000000000", "99999999999")
    child = applied_seq("shardId-000000000002", "1")
    assert parent < child
    assert applied_seq(SHARD, "9") < applied_seq(SHARD, "10")
