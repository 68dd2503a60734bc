"""The active-active producer over two fake regional tables behind the real routed sink: region
weights and the hot set's share, stamps per region (skew, whole seconds, re-stamped on a retry),
deletes ledgered with the delete stamp of what ALL_OLD returned (or NULL), updates that clear
the tombstone flag, and every write ledgered with the region it went to."""

from __future__ import annotations

import random
import re
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from loadgen.active import ActiveItemWriter, ConflictKeyspace, RegionChooser, active_producer
from loadgen.active_options import ActiveOptions, parse_clock_skew, parse_region_weights
from loadgen.dynamodb_sink import ItemRequestError, RoutedItemSink
from loadgen.item_writes import parse_ops
from loadgen.items import ItemSettings
from loadgen.keyspace import KeyspaceSpec
from loadgen.ledger import LedgerWriter
from loadgen.routing import WriteTarget
from loadgen.templates import DEFAULT_TEMPLATE, compile_template
from xrh.active_active import STAMP_REGION, STAMP_TS, TOMBSTONE
from xrh.config import Side, parse_config

CONFIG = parse_config(["--endpoint-url", "http://127.0.0.1:9", "--pipeline", "active-active"],
                      environ={})  # fmt: skip
A, B = CONFIG.region_a, CONFIG.region_b
T0 = 1_700_000_000.123


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class RegionTable:
    """One region's items table behind the item sink interface. ``script``: answers in order,
    an exception to raise or None (carry the call out). Calls are kept as (op, key, item)."""

    def __init__(self, script=()) -> None:
        self.script = list(script)
        self.items: dict[str, dict] = {}
        self.calls: list[tuple[str, str, dict | None]] = []

    def _answer(self) -> None:
        answer = self.script.pop(0) if self.script else None
        if isinstance(answer, BaseException):
            raise answer

    def put_item(self, table, item):
        self.calls.append(("put", item["pk"]["S"], item))
        self._answer()
        self.items[item["pk"]["S"]] = dict(item)
        return 100

    def update_item(self, table, key, expression, names, values):
        pk = key["pk"]["S"]
        match = re.fullmatch(r"SET (.*) REMOVE (#\w+)", expression)
        assert match, expression  # plain SET ... REMOVE: no condition, no ADD
        sets = dict(part.split(" = ") for part in match.group(1).split(", "))
        sets = {names[name]: values[value] for name, value in sets.items()}
        self.calls.append(("update", pk, sets))
        self._answer()
        current = {**self.items.get(pk, {"pk": {"S": pk}}), **sets}
        current.pop(names[match.group(2)], None)
        self.items[pk] = current
        return 100

    def delete_item(self, table, key):
        raise AssertionError("an active-active delete asks for ALL_OLD")

    def delete_item_old(self, table, key):
        pk = key["pk"]["S"]
        self.calls.append(("delete", pk, None))
        self._answer()
        return self.items.pop(pk, None), 50

    def batch_write(self, table, requests, key_name):
        raise AssertionError("no BatchWriteItem in the active-active pipeline")


def make(tmp_path: Path, tables: dict[Side, RegionTable], *, ops="put=50,update=35,delete=15",
         keys: int = 1000, seed: int = 1, clock: Clock | None = None, **active):  # fmt: skip
    clock = clock or Clock()
    ledger = LedgerWriter(tmp_path / "ledger.sqlite")
    rng = random.Random(seed)
    settings = ItemSettings(f"{CONFIG.prefix}-items", A, pipeline="active-active",
                            batch_size=100, linger_s=0.5, ops=parse_ops(ops), batch_share=0.0)  # fmt: skip
    sink = RoutedItemSink(tables, WriteTarget(CONFIG))
    producer = active_producer(
        "run/lu1", compile_template(DEFAULT_TEMPLATE).bind(rng=rng, producer="run/lu1"),
        KeyspaceSpec(size=keys).build(rng), sink, ledger, settings, rng,
        ActiveOptions(**active), CONFIG, clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    return producer, ledger


def rows(path: Path) -> list[dict]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM ledger ORDER BY rowid")]
    finally:
        db.close()


def run(producer, ledger, n: int) -> list[dict]:
    producer.add(n)
    producer.close()
    ledger.close()
    return rows(ledger.path)


def test_region_weights_and_the_hot_sets_share_are_respected(tmp_path):
    tables = {Side.A: RegionTable(), Side.B: RegionTable()}
    producer, ledger = make(tmp_path, tables, keys=10_000, conflict_keys=10, conflict_share=0.5,
                            region_weights=parse_region_weights("a=1,b=3"))  # fmt: skip
    got = run(producer, ledger, 4000)
    assert len(got) == 4000 and {r["status"] for r in got} == {"ok"}
    regions = Counter(r["region"] for r in got)
    assert abs(regions[B] / 4000 - 0.75) < 0.03, regions
    hot = sum(int(r["key"]) < 10 for r in got)
    assert abs(hot / 4000 - 0.5) < 0.03, hot  # (the keyspace's 10 of 10,000 add ~0.05%)
    hot_regions = {(r["key"], r["region"]) for r in got if int(r["key"]) < 10}
    assert len(hot_regions) == 20  # every hot key written from both regions: conflicts
    ops = Counter(r["op"] for r in got)
    assert abs(ops["put"] / 4000 - 0.5) < 0.03 and abs(ops["delete"] / 4000 - 0.15) < 0.03


def test_a_region_of_weight_zero_gets_nothing_and_no_hot_set_means_the_keyspace():
    rng = random.Random(3)
    choose = RegionChooser(parse_region_weights("b=1"), rng)
    assert {choose() for _ in range(200)} == {Side.B}
    keys = ConflictKeyspace(KeyspaceSpec(size=1000).build(rng), 0, 0.9, rng)
    assert sum(keys.next_key() < 5 for _ in range(2000)) < 40  # uniform: about 10
    with pytest.raises(ValueError, match="hot set of 11 keys"):
        ConflictKeyspace(KeyspaceSpec(size=10).build(rng), 11, 0.5, rng)


@pytest.mark.parametrize(
    ("resolution", "skew", "stamp_a", "stamp_b"),
    [
        ("ms", "b=+500", 1_700_000_000_123, 1_700_000_000_623),
        ("ms", "a=-200,b=+1500", 1_699_999_999_923, 1_700_000_001_623),
        ("s", "b=+500", 1_700_000_000_000, 1_700_000_000_000),  # a tie at whole seconds
        ("s", "a=-200,b=+1500", 1_699_999_999_000, 1_700_000_001_000),
    ],
)
def test_stamps_carry_the_regions_skew_at_the_resolution(tmp_path, resolution, skew, stamp_a,
                                                         stamp_b):  # fmt: skip
    tables = {Side.A: RegionTable(), Side.B: RegionTable()}
    producer, ledger = make(tmp_path, tables, ops="put=1,update=1", keys=50,
                            timestamp_resolution=resolution, clock_skew_ms=parse_clock_skew(skew))  # fmt: skip
    got = run(producer, ledger, 200)
    expected = {A: stamp_a, B: stamp_b}
    assert {r["region"] for r in got} == {A, B}
    for row in got:
        assert row["commit_ts"] == expected[row["region"]], row
    for side, region in ((Side.A, A), (Side.B, B)):
        assert tables[side].calls
        for _, _, item in tables[side].calls:
            assert item[STAMP_TS] == {"N": str(expected[region])}
            assert item[STAMP_REGION] == {"S": region}


def test_a_retried_write_is_stamped_again_when_it_is_sent(tmp_path):
    throttle = ItemRequestError("fail", "ThrottlingException", "slow down", retryable=True)
    tables = {Side.A: RegionTable([throttle]), Side.B: RegionTable()}
    clock = Clock()
    producer, ledger = make(tmp_path, tables, ops="put=1", clock=clock,
                            region_weights=parse_region_weights("a=1"))  # fmt: skip
    got = run(producer, ledger, 1)
    assert [(r["attempt"], r["status"]) for r in got] == [(1, "fail"), (2, "ok")]
    assert got[0]["commit_ts"] == int(T0 * 1000) < got[1]["commit_ts"] == int(clock.t * 1000)
    (item,) = tables[Side.A].items.values()
    assert item[STAMP_TS] == {"N": str(got[1]["commit_ts"])}


def test_deletes_are_ledgered_with_the_delete_stamp_of_what_they_removed_or_null(tmp_path):
    table = RegionTable()
    table.items["0"] = {"pk": {"S": "0"}, STAMP_TS: {"N": "5000"}, STAMP_REGION: {"S": B}}
    table.items["1"] = {"pk": {"S": "1"}, "other": {"S": "no stamp"}}
    tables = {Side.A: table, Side.B: RegionTable()}
    producer, ledger = make(tmp_path, tables, ops="delete=1", keys=3, conflict_keys=0,
                            region_weights=parse_region_weights("a=1"))  # fmt: skip
    got = run(producer, ledger, 30)
    assert {r["op"] for r in got} == {"delete"} and {r["region"] for r in got} == {A}
    first = {}
    for row in got:
        first.setdefault(row["key"], row["commit_ts"])
    assert first == {"0": 5001, "1": 1, "2": None}  # (5000, B) -> (5001, A); unstamped: ZERO
    assert all(r["commit_ts"] is None for r in got if r["key"] == "2")
    assert sum(r["commit_ts"] is not None for r in got) == 2  # later ones removed nothing
    assert not table.items


def test_a_delete_whose_answer_was_lost_is_unknown_with_no_stamp(tmp_path):
    lost = ItemRequestError("unknown", "ReadTimeoutError", "read timed out")
    table = RegionTable([lost])
    table.items["0"] = {"pk": {"S": "0"}, STAMP_TS: {"N": "5000"}, STAMP_REGION: {"S": A}}
    producer, ledger = make(tmp_path, {Side.A: table, Side.B: RegionTable()}, ops="delete=1",
                            keys=1, conflict_keys=1,
                            region_weights=parse_region_weights("a=1"))  # fmt: skip
    (row,) = run(producer, ledger, 1)
    assert (row["status"], row["commit_ts"]) == ("unknown", None)


def test_updates_set_some_attributes_and_the_stamp_and_remove_the_tombstone(tmp_path):
    tombstone = {"pk": {"S": "0"}, STAMP_TS: {"N": "5000"}, STAMP_REGION: {"S": B},
                 TOMBSTONE: {"BOOL": True}}  # fmt: skip
    template = '{"key": {{key}}, "x": 1, "y": 2, "z": 3, "xrh_deleted": true}'
    table = RegionTable()
    table.items["0"] = dict(tombstone)
    ledger = LedgerWriter(tmp_path / "ledger.sqlite")
    rng = random.Random(4)
    settings = ItemSettings("t-items", A, pipeline="active-active", ops=parse_ops("update=1"),
                            batch_share=0.0)  # fmt: skip
    producer = active_producer(
        "run/lu1", compile_template(template).bind(rng=rng, producer="run/lu1"),
        KeyspaceSpec(size=1).build(rng), RoutedItemSink({Side.A: table, Side.B: RegionTable()},
        WriteTarget(CONFIG)), ledger, settings, rng,
        ActiveOptions(conflict_keys=1, region_weights=parse_region_weights("a=1")), CONFIG,
    )  # fmt: skip
    got = run(producer, ledger, 40)
    assert {r["op"] for r in got} == {"update"} and len(got) == 40
    item = table.items["0"]
    assert TOMBSTONE not in item  # the update brought the deleted key back
    assert item[STAMP_REGION] == {"S": A} and int(item[STAMP_TS]["N"]) == got[-1]["commit_ts"]
    assert item["trace"] == {"S": got[-1]["trace"]} and "commitTimestamp" in item
    # some attributes, not all: each update SET a subset of x, y, z
    subsets = {frozenset(k for k in ("x", "y", "z") if k in i) for _, _, i in table.calls}
    assert len(subsets) > 2, subsets


def test_every_write_is_ledgered_with_the_region_it_went_to(tmp_path):
    tables = {Side.A: RegionTable(), Side.B: RegionTable()}
    producer, ledger = make(tmp_path, tables, keys=20, conflict_keys=5, seed=9)
    got = run(producer, ledger, 600)
    assert {r["pipeline"] for r in got} == {"active-active"}
    assert {r["target"] for r in got} == {f"{CONFIG.prefix}-items"}
    assert all(r["partition_key"] == r["key"] for r in got)
    sent = {A: Counter(), B: Counter()}
    for side, region in ((Side.A, A), (Side.B, B)):
        for op, key, _ in tables[side].calls:
            sent[region][(op, key)] += 1
    ledgered = {A: Counter(), B: Counter()}
    for row in got:
        ledgered[row["region"]][(row["op"], row["key"])] += 1
    assert ledgered == sent and sum(ledgered[A].values()) and sum(ledgered[B].values())
    # what each region's table holds is the last write the ledger sent it for the key
    for side, region in ((Side.A, A), (Side.B, B)):
        last = {}
        for row in got:
            if row["region"] == region:
                last[row["key"]] = row
        for key, row in last.items():
            item = tables[side].items.get(key)
            if row["op"] == "delete":
                assert item is None, (key, item)
            else:
                assert item["trace"] == {"S": row["trace"]}
                assert item[STAMP_TS] == {"N": str(row["commit_ts"])}


def test_the_writer_refuses_batches_and_a_wrong_resolution(tmp_path):
    ledger = LedgerWriter(tmp_path / "ledger.sqlite")
    settings = ItemSettings("t-items", A, pipeline="active-active", batch_share=0.0)
    with pytest.raises(ValueError, match="resolution 'us'"):
        ActiveItemWriter("p", RegionTable(), ledger, settings, skew_ms={}, resolution="us")
    writer = ActiveItemWriter("p", RegionTable(), ledger, settings, skew_ms={}, resolution="s")
    with pytest.raises(ValueError, match="no BatchWriteItem"):
        writer._send_group([])
    ledger.close()
