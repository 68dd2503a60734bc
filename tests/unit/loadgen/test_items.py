"""The dynamodb pipeline's item producer against a fake table: op mix, typed items, batching
with distinct keys, retries of throttles and UnprocessedItems, unknown never resent, one ledger
row per attempt."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from loadgen.dynamodb_sink import ItemRequestError, classify
from loadgen.item_writes import Group, ItemWrite, Single, attribute, parse_ops, plan
from loadgen.items import ItemProducer, ItemSettings
from loadgen.keyspace import KeyspaceSpec
from loadgen.ledger import LedgerWriter
from loadgen.producers import Pacer, ProducerLoop
from loadgen.templates import DEFAULT_TEMPLATE, compile_template
from xrh.contracts import parse_iso_ms


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def throttle() -> ItemRequestError:
    return ItemRequestError("fail", "ProvisionedThroughputExceededException", "slow down",
                            retryable=True)  # fmt: skip


def lost() -> ItemRequestError:
    return ItemRequestError("unknown", "ReadTimeoutError", "read timed out")


class FakeTable:
    """An in-memory table behind the producer's sink interface. ``script`` answers calls in
    order: an exception to raise, a set of keys to leave unprocessed (BatchWriteItem), or None
    (carry it out). Every call is recorded as (operation, [keys])."""

    def __init__(self, script=()) -> None:
        self.script = list(script)
        self.items: dict[str, dict] = {}
        self.calls: list[tuple[str, list[str]]] = []

    def _next(self):
        return self.script.pop(0) if self.script else None

    def _apply(self, op: str, key: str, item=None, update=None) -> None:
        if op == "put":
            self.items[key] = dict(item)
        elif op == "delete":
            self.items.pop(key, None)
        else:
            expression, names, values = update
            current = self.items.setdefault(key, {"pk": {"S": key}})
            for name, placeholder in ((n, n.replace("#", ":")) for n in names if n != "#w"):
                current[names[name]] = values[placeholder]
            current["writes"] = {"N": str(int(current.get("writes", {"N": "0"})["N"]) + 1)}

    def _single(self, name: str, op: str, key: str, **kw) -> int:
        self.calls.append((name, [key]))
        answer = self._next()
        if isinstance(answer, BaseException):
            raise answer
        self._apply(op, key, **kw)
        return 100

    def put_item(self, table, item):
        return self._single("PutItem", "put", item["pk"]["S"], item=item)

    def update_item(self, table, key, expression, names, values):
        assert expression.startswith("SET ") and expression.endswith("ADD #w :one")
        return self._single("UpdateItem", "update", key["pk"]["S"],
                            update=(expression, names, values))  # fmt: skip

    def delete_item(self, table, key):
        return self._single("DeleteItem", "delete", key["pk"]["S"])

    def batch_write(self, table, requests, key_name):
        keys = [r["PutRequest"]["Item"]["pk"]["S"] if "PutRequest" in r
                else r["DeleteRequest"]["Key"]["pk"]["S"] for r in requests]  # fmt: skip
        assert len(set(keys)) == len(keys) <= 25, keys
        self.calls.append(("BatchWriteItem", keys))
        answer = self._next()
        if isinstance(answer, BaseException):
            raise answer
        unprocessed = set(answer or ())
        for key, request in zip(keys, requests, strict=True):
            if key in unprocessed:
                continue
            if "PutRequest" in request:
                self._apply("put", key, item=request["PutRequest"]["Item"])
            else:
                self._apply("delete", key)
        return [k for k in keys if k in unprocessed], 500


def make(tmp_path: Path, table: FakeTable, *, keys: int = 50, ops="put=60,update=30,delete=10",
         share: float = 0.25, template: str = DEFAULT_TEMPLATE, batch: int = 100, seed: int = 1):  # fmt: skip
    clock = Clock()
    writer = LedgerWriter(tmp_path / "ledger.sqlite")
    rng = random.Random(seed)
    settings = ItemSettings("t-items", "us-east-1", batch_size=batch, linger_s=0.5,
                            ops=parse_ops(ops), batch_share=share)  # fmt: skip
    producer = ItemProducer(
        "run/lu1",
        compile_template(template).bind(rng=rng, producer="run/lu1"),
        KeyspaceSpec(size=keys).build(rng),
        table,
        writer,
        settings,
        clock=clock,
        sleep=clock.sleep,
        random=rng.random,
    )
    return producer, writer, clock


def rows(path: Path) -> list[dict]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM ledger ORDER BY rowid")]
    finally:
        db.close()


def test_op_mix_follows_the_weights_and_the_batched_share(tmp_path):
    producer, writer, _ = make(tmp_path, FakeTable())
    producer.add(20_000)
    buffered = producer._buffer
    ops = Counter(w.op for w in buffered)
    assert abs(ops["put"] / 20_000 - 0.6) < 0.02
    assert abs(ops["update"] / 20_000 - 0.3) < 0.02
    assert abs(ops["delete"] / 20_000 - 0.1) < 0.02
    batchable = [w for w in buffered if w.op != "update"]
    assert abs(sum(w.batched for w in batchable) / len(batchable) - 0.25) < 0.02
    assert not any(w.batched for w in buffered if w.op == "update")
    # traces gap-free per producer
    assert [w.seq for w in buffered] == list(range(1, 20_001))
    assert buffered[41].trace == "run/lu1-000000042"
    producer.interrupted = True  # close without sending 20,000 writes
    producer.close()
    writer.close()


def test_a_weight_of_zero_never_draws_that_op(tmp_path):
    producer, writer, _ = make(tmp_path, FakeTable(), ops="put=1,delete=0")
    producer.add(500)
    assert {w.op for w in producer._buffer} == {"put"}
    producer.interrupted = True
    producer.close()
    writer.close()


def test_template_rendered_to_typed_attributes_with_trace_and_commit_timestamp(tmp_path):
    template = ('{"n": {{random.number(5)}}, "f": 1.25, "s": "x{{random.number(3)}}", '
                '"b": true, "z": null, "m": {"a": [1, "two", false, {"k": 0.1}]}, '
                '"key": {{key}}, "pk": "template-pk"}')  # fmt: skip
    table = FakeTable()
    producer, writer, clock = make(tmp_path, table, ops="put=1", share=0, template=template)
    producer.add(1)
    producer.close()
    writer.close()
    (item,) = table.items.values()
    pk = item["pk"]["S"]
    assert pk == item["key"]["N"]  # the keyspace key wins over the template's pk
    assert item["n"]["N"].isdigit() and item["f"] == {"N": "1.25"}
    assert item["s"]["S"].startswith("x") and item["b"] == {"BOOL": True}
    assert item["z"] == {"NULL": True}
    assert item["m"] == {"M": {"a": {"L": [{"N": "1"}, {"S": "two"}, {"BOOL": False},
                                           {"M": {"k": {"N": "0.1"}}}]}}}  # fmt: skip
    assert item["trace"] == {"S": "run/lu1-000000001"}
    # no commitTimestamp in the template: the write's time, ISO-8601 with milliseconds
    assert parse_iso_ms(item["commitTimestamp"]["S"]) == int(clock.t * 1000)
    (row,) = rows(tmp_path / "ledger.sqlite")
    assert row["commit_ts"] == int(clock.t * 1000)


def test_attribute_keeps_decimal_text_exact():
    assert attribute(Decimal("0.1000000000000000055511151231257827")) == {
        "N": "0.1000000000000000055511151231257827"
    }
    assert attribute([]) == {"L": []} and attribute({}) == {"M": {}}


def test_ledger_rows_of_every_op_and_the_table_matches_the_last_write_per_key(tmp_path):
    table = FakeTable()
    producer, writer, _ = make(tmp_path, table, keys=20)
    for _ in range(10):
        producer.add(30)
        producer.flush()
    producer.close()
    summary = writer.close()
    got = rows(summary.path)
    assert summary.complete and len(got) == 300
    for r in got:
        assert r["status"] == "ok" and r["attempt"] == 1 and r["pipeline"] == "dynamodb"
        assert r["target"] == "t-items" and r["region"] == "us-east-1"
        assert r["partition_key"] == r["key"] and r["shard_id"] is None
        assert r["sequence_number"] is None and r["error"] is None
        assert r["commit_ts"] and r["invoked_at"] <= r["completed_at"]
    assert {r["op"] for r in got} == {"put", "update", "delete"}
    last: dict[str, dict] = {}
    for r in sorted(got, key=lambda r: r["seq"]):  # one producer: seq order is table order
        last[r["key"]] = r
    for key, r in last.items():
        if r["op"] == "delete":
            assert key not in table.items
        else:
            assert table.items[key]["trace"]["S"] == r["trace"]
    updated = [key for key, r in last.items() if r["op"] == "update"]
    assert updated and all(int(table.items[key]["writes"]["N"]) >= 1 for key in updated)


def test_plan_groups_distinct_keys_and_keeps_each_keys_order():
    def w(seq: int, key: str, batched: bool) -> ItemWrite:
        return ItemWrite(f"p-{seq}", seq, key, 0, "put", batched, {})

    writes = [w(1, "a", True), w(2, "b", True), w(3, "c", False), w(4, "a", True),
              w(5, "d", True), w(6, "d", False)]  # fmt: skip
    requests = plan(writes, group_size=25)
    assert requests == [
        Single(writes[2]),  # c: no conflict, goes before the open group
        Group([writes[0], writes[1]]),  # a again at seq 4: the group goes first
        Group([writes[3], writes[4]]),  # d again (unbatched) at seq 6
        Single(writes[5]),
    ]
    many = plan([w(i, str(i), True) for i in range(60)], group_size=25)
    assert [len(r.writes) for r in many] == [25, 25, 10]


def test_batch_groups_have_distinct_keys_and_per_key_order_holds(tmp_path):
    table = FakeTable()
    producer, writer, _ = make(tmp_path, table, keys=3, ops="put=1,delete=1", share=1.0)
    producer.add(200)
    producer.close()
    got = rows(writer.close().path)
    assert {c[0] for c in table.calls} == {"BatchWriteItem"}  # (FakeTable asserts distinct)
    seen: dict[str, int] = {}
    for r in got:  # rows in request order: each key's writes go out in seq order
        assert seen.get(r["key"], 0) < r["seq"]
        seen[r["key"]] = r["seq"]
    assert sorted(r["seq"] for r in got) == list(range(1, 201))
    assert max(len(keys) for _, keys in table.calls) == 3  # three keys: groups of at most 3


def test_unprocessed_items_are_retried_alone_and_ledgered(tmp_path):
    table = FakeTable()
    producer, writer, clock = make(tmp_path, table, keys=1000, ops="put=1", share=1.0)
    producer.add(10)
    first = [w.key for w in producer._buffer]
    table.script = [{first[2], first[7]}, {first[7]}, None]
    start = clock.t
    producer.close()
    got = rows(writer.close().path)
    assert [len(keys) for _, keys in table.calls] == [10, 2, 1]
    assert table.calls[1][1] == [first[2], first[7]] and table.calls[2][1] == [first[7]]
    assert clock.t > start  # backed off between attempts
    by_key: dict[str, list] = {}
    for r in got:
        by_key.setdefault(r["key"], []).append((r["attempt"], r["status"]))
    assert by_key[first[7]] == [(1, "fail"), (2, "fail"), (3, "ok")]
    assert by_key[first[2]] == [(1, "fail"), (2, "ok")]
    assert by_key[first[0]] == [(1, "ok")]
    assert all("UnprocessedItems" in r["error"] for r in got if r["status"] == "fail")
    assert set(table.items) == set(first)
    assert producer.stats.acknowledged == 10 and producer.stats.failed == 0


def test_unprocessed_items_retries_are_bounded(tmp_path):
    table = FakeTable()
    producer, writer, _ = make(tmp_path, table, keys=1000, ops="put=1", share=1.0)
    producer.add(3)
    keys = {w.key for w in producer._buffer}
    table.script = [set(keys)] * 100
    producer.close()
    got = rows(writer.close().path)
    attempts = producer.settings.backoff.max_attempts
    assert len(table.calls) == attempts and len(got) == 3 * attempts
    assert producer.stats.failed == 3 and not table.items


def test_throttles_are_retried_each_attempt_a_row(tmp_path):
    table = FakeTable([throttle(), throttle()])
    producer, writer, _ = make(tmp_path, table, keys=1000, ops="put=1", share=0)
    producer.add(2)
    producer.close()
    got = rows(writer.close().path)
    assert [(r["seq"], r["attempt"], r["status"]) for r in got] == [
        (1, 1, "fail"), (1, 2, "fail"), (1, 3, "ok"), (2, 1, "ok")]  # fmt: skip
    assert got[0]["error"].startswith("ProvisionedThroughputExceededException")
    assert len(table.calls) == 4 and len(table.items) == len({r["key"] for r in got})


def test_a_throttled_batch_is_sent_again_whole(tmp_path):
    table = FakeTable([throttle()])
    producer, writer, _ = make(tmp_path, table, keys=1000, ops="delete=1", share=1.0)
    producer.add(4)
    producer.close()
    got = rows(writer.close().path)
    assert [len(k) for _, k in table.calls] == [4, 4]
    assert Counter((r["attempt"], r["status"], r["op"]) for r in got) == {
        (1, "fail", "delete"): 4, (2, "ok", "delete"): 4}  # fmt: skip


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_unknown_is_never_resent(tmp_path, share):
    table = FakeTable([lost()])
    producer, writer, _ = make(tmp_path, table, keys=1000, ops="put=1", share=share)
    producer.add(3)
    producer.close()
    got = rows(writer.close().path)
    if share:
        assert len(table.calls) == 1
        assert [r["status"] for r in got] == ["unknown"] * 3
    else:  # the first PutItem is unknown, the others go on
        assert len(table.calls) == 3
        assert [r["status"] for r in got] == ["unknown", "ok", "ok"]
    assert all(r["attempt"] == 1 for r in got)
    assert producer.stats.unknown == (3 if share else 1)


def test_a_request_cut_off_is_unknown_and_the_rest_not_sent(tmp_path):
    table = FakeTable([None, KeyboardInterrupt()])
    producer, writer, _ = make(tmp_path, table, keys=1000, ops="put=1", share=0)
    producer.add(5)
    with pytest.raises(KeyboardInterrupt):
        producer.flush()
    producer.close()
    summary = writer.close()
    got = rows(summary.path)
    assert summary.complete
    assert [(r["seq"], r["status"]) for r in got] == [
        (1, "ok"), (2, "unknown"), (3, "fail"), (4, "fail"), (5, "fail")]  # fmt: skip
    assert "interrupted" in got[1]["error"] and "not sent" in got[2]["error"]
    assert len(table.calls) == 2


def test_commit_timestamp_from_the_template_is_ledgered(tmp_path):
    table = FakeTable()
    producer, writer, _ = make(tmp_path, table, keys=1000, ops="put=1,update=1", share=0)
    producer.add(4)
    producer.close()
    got = rows(writer.close().path)
    for r in got:
        item = table.items[r["key"]]
        assert parse_iso_ms(item["commitTimestamp"]["S"]) == r["commit_ts"]
        assert item["trace"]["S"] == r["trace"]


def test_the_driving_loop_runs_an_item_producer(tmp_path):
    table = FakeTable()
    producer, writer, clock = make(tmp_path, table, keys=1000, batch=10)
    loop = ProducerLoop(producer, Pacer(None))
    for _ in range(5):
        assert loop.turn()
    loop.close()
    summary = writer.close()
    assert producer.closed and summary.complete
    assert summary.by_status == {"ok": producer.stats.records} and producer.stats.records >= 50


def test_classify_separates_not_written_from_may_be_written():
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ParamValidationError,
        ReadTimeoutError,
    )

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "PutItem")  # fmt: skip

    cases = {
        "throttle": (client_error("ProvisionedThroughputExceededException", 400), "fail", True),
        "throttling": (client_error("ThrottlingException", 400), "fail", True),
        "validation": (client_error("ValidationException", 400), "fail", False),
        "no table": (client_error("ResourceNotFoundException", 400), "fail", False),
        "500": (client_error("InternalServerError", 500), "unknown", False),
        "503": (client_error("ServiceUnavailable", 503), "unknown", False),
        "connect": (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "fail", True),
        "connect timeout": (ConnectTimeoutError(endpoint_url="http://x"), "fail", True),
        "read timeout": (ReadTimeoutError(endpoint_url="http://x"), "unknown", False),
        "dropped": (ConnectionClosedError(endpoint_url="http://x"), "unknown", False),
        "params": (ParamValidationError(report="bad"), "fail", False),
        "other": (RuntimeError("?"), "unknown", False),
    }
    for name, (exc, status, retryable) in cases.items():
        got = classify(exc)
        assert (got.status, got.retryable) == (status, retryable), name


def test_update_sets_every_attribute_through_placeholders_and_adds_to_writes(tmp_path):
    producer, writer, _ = make(tmp_path, FakeTable())
    item = {"pk": {"S": "1"}, "key": {"N": "1"}, "writes": {"N": "5"}, "trace": {"S": "t"}}
    expression, names, values = producer.writer.update_parts(item)
    assert expression == "SET #a0 = :a0, #a1 = :a1 ADD #w :one"  # "key" is a reserved word
    assert names == {"#a0": "key", "#a1": "trace", "#w": "writes"}
    assert values == {":a0": {"N": "1"}, ":a1": {"S": "t"}, ":one": {"N": "1"}}
    producer.close()
    writer.close()
