"""The fold of the actions log, over small in-memory logs: what each action does to an item,
the log's order, malformed records, and what the checks keep per key."""

from __future__ import annotations

import json

from test_action_support import Log, folded

from verify.actions.fold import fold
from verify.actions.items import expected_row, key_of, table_row
from verify.actions.store import order_of

TS = "2021-11-10T00:48:30.123Z"


def test_put_replaces_update_sets_and_adds_delete_removes():
    log = Log()
    log.put("k1", a=1, b="x")
    log.put("k1", c=2)  # replaces: a and b are gone
    log.update("k1", set={"d": "y"}, add={"c": 5, "n": 3})  # n absent: starts at 0
    t_upd = log.update("k2", add={"n": -2})  # creates {pk}
    log.put("k3", a=1)
    log.delete("k3")
    folded_items = folded(log.store())
    assert folded_items["k1"] == {
        "pk": "k1",
        "c": 7,
        "d": "y",
        "n": 3,
        "trace": "run/w0u1-000000003",
        "commitTimestamp": TS,
    }
    assert folded_items["k2"] == {"pk": "k2", "n": -2, "trace": t_upd, "commitTimestamp": TS}
    assert "k3" not in folded_items


def test_batch_write_is_its_puts_and_deletes_in_order():
    log = Log()
    log.put("k1", a=1)
    t = log.add(
        "BatchWrite",
        [
            {"PutItem": {"pk": "k2", "v": 2}},
            {"DeleteItem": {"pk": "k1"}},
            {"PutItem": {"pk": "k3", "v": 3.5}},
        ],
    )
    items = folded(log.store())
    assert set(items) == {"k2", "k3"}
    assert items["k3"] == {"pk": "k3", "v": 3.5, "trace": t, "commitTimestamp": TS}


def test_order_is_generation_then_integer_sequence_number():
    assert order_of(0, "s", "9") < order_of(0, "s", "10")
    assert order_of(0, "s", "99999999999999999999") < order_of(1, "a", "1")
    assert order_of(0, "s0", "1") != order_of(0, "s1", "1")
    log = Log()
    log.seq = 8
    log.put("k", v="parent-9")
    log.put("k", v="parent-10")  # "10" sorts after "9" only as an integer
    log.seq = -1
    log.add("PutItem", {"pk": "k", "v": "child"}, shard="shardId-000000000001", generation=1)
    log.seq = 10
    log.update("k", set={"w": 1})  # still on the parent shard, before the child's record
    # records reach the store out of order (a child read first): the fold sorts them
    log.records = [log.records[2], log.records[3], log.records[0], log.records[1]]
    assert folded(log.store())["k"]["v"] == "child"
    assert "w" not in folded(log.store())["k"]


def test_malformed_records_are_counted_and_kept_never_folded():
    log = Log()
    log.put("k1", a=1)
    log.raw(b"not json")
    log.raw(json.dumps({"Action": "Explode", "Data": {}, "trace": "run/w0u1-x"}).encode())
    log.add("UpdateItem", {"pk": "k1"})  # neither Set nor Add
    store = log.store()
    rows = store.db.execute("SELECT trace, error FROM malformed ORDER BY ord").fetchall()
    assert [r[0] for r in rows] == [None, "run/w0u1-x", "run/w0u1-000000002"]
    assert "not JSON" in rows[0][1] and "'Action' must be one of" in rows[1][1]
    assert folded(store) == {
        "k1": {"pk": "k1", "a": 1, "trace": "run/w0u1-000000001", "commitTimestamp": TS}
    }


def test_add_to_a_string_is_refused_whole_and_counted():
    log = Log()
    log.put("k", s="text", n=1)
    log.update("k", set={"x": 1}, add={"s": 1})
    store = log.store()
    stats = fold(store)  # again: a fold can be run twice
    assert stats.refused == 1 and stats.ops == 2 and stats.items == 1
    assert folded(store)["k"] == {
        "pk": "k",
        "s": "text",
        "n": 1,
        "trace": "run/w0u1-000000001",
        "commitTimestamp": TS,
    }


def test_states_and_add_epochs_are_kept_for_the_checks():
    log = Log()
    log.put("k", n=1)
    log.update("k", add={"n": 2})
    log.update("k", set={"n": 10})  # a new epoch for n
    log.update("k", add={"n": 4})
    log.update("k", add={"n": 5})
    store = log.store()
    key = key_of("k")
    states = store.db.execute(
        "SELECT hash, last FROM states WHERE key = ? ORDER BY ord", (key,)
    ).fetchall()
    assert [s[1] for s in states] == [0, 0, 0, 0, 1]
    assert len({s[0] for s in states}) == 5
    current = store.db.execute(
        "SELECT d.delta FROM adds AS d JOIN add_epochs AS e USING (key, attr, epoch) "
        "WHERE key = ? ORDER BY d.ord",
        (key,),
    ).fetchall()
    assert [r[0] for r in current] == ["4", "5"]


def test_table_items_hash_like_the_fold_without_bookkeeping_and_number_forms():
    item = {"pk": "k", "n": 10, "f": 1.5, "m": {"x": [1, "a"]}, "t": True, "z": None}
    wire = {
        "pk": {"S": "k"},
        "n": {"N": "10.0"},
        "f": {"N": "1.50"},
        "m": {"M": {"x": {"L": [{"N": "1E+0"}, {"S": "a"}]}}},
        "t": {"BOOL": True},
        "z": {"NULL": True},
        "xrh_applied_seq": {"S": "123"},
    }
    assert table_row(wire)[:3] == expected_row(item)[:3]
    assert table_row({**wire, "n": {"N": "11"}})[1] != expected_row(item)[1]


def test_records_of_two_shards_with_the_same_sequence_number_are_both_folded():
    log = Log()
    log.put("k1", a=1)
    log.seq = 0  # moto numbers every shard 1, 2, ...
    log.add("PutItem", {"pk": "k2", "a": 2}, shard="shardId-000000000001")
    store = log.store()
    assert store.count("actions") == 2
    assert set(folded(store)) == {"k1", "k2"}
