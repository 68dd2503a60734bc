"""The active-active judge over a store filled by hand: winner selection (ties by region, ties
within a region matched by trace, unknown writes allowed to win, deletes without a stamp
ignored) and each check catching a planted fault (diverged, stale, lost, resurrected, phantom,
ping-pong loop versus resend), plus conflicts and their resolution."""

from __future__ import annotations

import json
from typing import Any

from verify.active.checks import judge
from verify.active.staging import lag_details, parse_record
from verify.active.store import ActiveStore, item_row
from verify.active.winners import (
    DELETED,
    OLDER,
    PHANTOM,
    RESURRECTED,
    UNKNOWN_WIN,
    WINNER,
    Version,
    Winner,
    classify,
    judge_key,
)
from verify.model import StreamRecord
from xrh.active_active import Stamp

A, B = "us-east-1", "us-east-2"
REGIONS = {"a": A, "b": B}


def item(pk: str, ts: int, region: str, trace: str | None, **values: Any) -> dict[str, Any]:
    out = {"pk": {"S": pk}, "last_update_timestamp": {"N": str(ts)},
           "last_updater_region": {"S": region}, "xrh_applied": {"S": "x"}}  # fmt: skip
    if trace:
        out["trace"] = {"S": trace}
    out.update({k: {"S": str(v)} for k, v in values.items()})
    return out


def tomb(pk: str, ts: int, region: str) -> dict[str, Any]:
    return {**item(pk, ts, region, None), "xrh_deleted": {"BOOL": True}}


class Run:
    """A store with a ledger and both tables; :meth:`judge` compares and judges."""

    def __init__(self) -> None:
        self.store = ActiveStore(":memory:")
        self.ledger: list[tuple] = []
        self.tables: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        self.n = 0

    def write(self, pk: str, region: str, ts: int | None, op: str = "put",
              status: str = "ok", invoked: int = 0) -> str:  # fmt: skip
        self.n += 1
        trace = f"run/w0u1-{self.n:09d}"
        self.ledger.append((trace, pk, region, op, status, ts, invoked, invoked + 5))
        return trace

    def both(self, it: dict[str, Any]) -> None:
        self.tables["a"].append(it)
        self.tables["b"].append(it)

    def judge(self) -> Any:
        self.store.add_ledger(self.ledger)
        self.store.build_winners()
        for side, items in self.tables.items():
            self.store.add_stamped(side, [item_row(i) for i in items])
        self.store.compare()
        return judge(self.store, REGIONS, own_prefix="run/")


def counts(judgement: Any) -> dict[str, int]:
    return {k: a.count for k, a in judgement.anomalies.items() if a.count}


def test_classify_rules():
    w = Winner(Stamp(10, B), 1, frozenset({"put"}), "t1")
    known = lambda s, tomb, trace: "ok" if s.ts <= 10 else "unknown"  # noqa: E731
    assert classify(Version(Stamp(10, B), False, "t1"), w, known) == WINNER
    assert classify(Version(Stamp(9, A), False, "t0"), w, known) == OLDER
    assert classify(Version(None), w, known) == OLDER
    assert classify(Version(Stamp(12, A), False, "t9"), w, known) == UNKNOWN_WIN
    assert classify(Version(Stamp(10, B), False, "t1"), w, lambda *_: None) == WINNER
    assert classify(Version(Stamp(10, B), False, "zz"), w, lambda *_: None) == PHANTOM
    d = Winner(Stamp(11, A), 1, frozenset({"delete"}))
    assert classify(Version(None), d, known) == DELETED
    assert classify(Version(Stamp(9, A), True), d, known) == DELETED
    assert classify(Version(Stamp(9, A), False, "t0"), d, known) == RESURRECTED
    assert judge_key({"A": WINNER, "B": OLDER}, w).anomalies == (("stale", "B"),)
    assert judge_key({"A": OLDER, "B": OLDER}, w).anomalies == (("lost", None),)
    assert judge_key({"A": DELETED, "B": DELETED}, d).settled


def test_valid_run_with_ties_unknown_winner_and_tombstone():
    run = Run()
    # Two regions in the same millisecond: (100, us-east-2) beats (100, us-east-1).
    run.write("k1", A, 100)
    t_b = run.write("k1", B, 100)
    run.both(item("k1", 100, B, t_b, v="b"))
    # Two writes in one region with one stamp (whole seconds): either may win, by trace.
    run.write("k2", A, 2000)
    t2 = run.write("k2", A, 2000)
    run.both(item("k2", 2000, A, t2, v="second"))
    # An unknown write above the acknowledged maximum may win.
    run.write("k3", A, 100)
    t3 = run.write("k3", B, 150, status="unknown")
    run.both(item("k3", 150, B, t3))
    # A delete (stamp t + 1 of what it removed); the tombstone in A, nothing in B: equal.
    run.write("k4", A, 100)
    run.write("k4", B, 101, op="delete")
    run.write("k4", A, None, op="delete")  # found nothing: did nothing
    run.tables["a"].append(tomb("k4", 101, B))
    judgement = run.judge()
    assert counts(judgement) == {}, {k: a.examples for k, a in judgement.anomalies.items()}
    assert judgement.details["keys_judged"] == 4
    conflicts = judgement.details["conflicts"]  # k3's B write is unknown, k4's A delete void
    assert (conflicts["generated"], conflicts["conflicted_keys"], conflicts["resolved"]) == (
        2,
        2,
        2,
    )
    assert judgement.anomalies["looped"].details["note"].startswith("does not apply")


def test_equal_timestamp_tie_won_by_the_wrong_region_is_stale_and_diverged():
    run = Run()
    t_a = run.write("k1", A, 100)
    t_b = run.write("k1", B, 100)
    run.tables["a"].append(item("k1", 100, A, t_a, v="a"))  # a bare-timestamp `<` kept A's
    run.tables["b"].append(item("k1", 100, B, t_b, v="b"))
    judgement = run.judge()
    assert counts(judgement) == {"diverged": 1, "stale": 1}
    (stale,) = judgement.anomalies["stale"].examples
    assert stale["table"] == "A" and stale["winner"]["trace"] == t_b
    assert stale["stamps_found"] == {"A": [100, A], "B": [100, B]}
    (div,) = judgement.anomalies["diverged"].examples
    assert div["A"]["item"]["v"] == "a" and div["B"]["item"]["v"] == "b"
    assert judgement.details["conflicts"]["resolved"] == 0


def test_resurrected_delete_lost_and_phantom():
    run = Run()
    t1 = run.write("k1", A, 100)
    run.write("k1", B, 101, op="delete", invoked=5000)
    run.tables["a"].append(tomb("k1", 101, B))
    run.tables["b"].append(item("k1", 100, A, t1))  # a real delete let the old put back
    t2 = run.write("k2", A, 100)
    run.write("k2", B, 200, invoked=5000)  # acknowledged, in neither table
    run.both(item("k2", 100, A, t2))
    t3 = run.write("k3", A, 100)
    run.tables["a"].append(item("k3", 100, A, t3))
    run.tables["b"].append(item("k3", 999, B, "run/nobody-1"))  # no write has this stamp
    judgement = run.judge()
    assert counts(judgement) == {"resurrected": 1, "lost": 1, "phantom": 1, "diverged": 2}
    (res,) = judgement.anomalies["resurrected"].examples
    assert res["key"] == {"pk": "k1"} and res["table"] == "B"
    assert res["winner"]["ops"] == ["delete"] and res["A"]["tombstone"] is True
    (lost,) = judgement.anomalies["lost"].examples
    assert lost["key"] == {"pk": "k2"} and lost["winner"]["stamp"] == [200, B]
    (phantom,) = judgement.anomalies["phantom"].examples
    assert phantom["key"] == {"pk": "k3"} and phantom["stamps_found"]["B"] == [999, B]


def test_foreign_keys_are_counted_not_judged():
    run = Run()
    run.both(item("x", 5, A, "otherrun/w0u1-1"))
    run.tables["b"].append(item("y", 5, A, "run/w0u9-1"))  # this run's trace, no ledger row
    run.write("k", A, 1)
    judgement = run.judge()
    assert judgement.details["foreign_keys"] == 1
    assert counts(judgement) == {"phantom": 1, "diverged": 1, "lost": 1}


def staged(side: str, seq: int, pk: str, origin: str, stamp: list, src: tuple, created: int,
           arrival: int) -> tuple:  # fmt: skip
    doc = {"pk": pk, "origin": origin, "stamp": stamp,
           "image": item(pk, stamp[0], stamp[1], f"run/t-{pk}-{stamp[0]}"),
           "source": {"shard": src[0], "seq": src[1], "created_ms": created}}  # fmt: skip
    record = StreamRecord("shardId-0", 0, str(seq), pk, json.dumps(doc).encode(), arrival)
    return parse_record(side, record)


def test_ping_pong_loop_and_forwarded_twice_versus_resend_and_lag():
    store = ActiveStore(":memory:")
    store.add_staging([
        staged("b", 1, "k1", A, [100, A], ("s0", "1"), 1000, 1040),  # A -> B, fine
        staged("b", 2, "k1", A, [100, A], ("s0", "1"), 1000, 1090),  # the same, resent
        staged("a", 1, "k2", B, [100, B], ("s9", "7"), 2000, 2010),  # B -> A, fine
    ])  # fmt: skip
    found = judge(store, REGIONS).anomalies["ping_pong"]
    assert found.count == 0 and found.details["resends"] == 1
    store.add_staging([
        staged("b", 3, "k2", B, [100, B], ("s1", "3"), 2000, 2050),  # B's own change came back
        staged("b", 4, "k1", A, [100, A], ("s0", "5"), 3000, 3020),  # k1's change again
        parse_record("b", StreamRecord("shardId-0", 0, "5", "bad", b"not json", 4000)),
    ])  # fmt: skip
    found = judge(store, REGIONS).anomalies["ping_pong"]
    assert found.count == 2
    assert found.details["origin_is_destination"] == 1 and found.details["forwarded_twice"] == 1
    reasons = {e["reason"]: e for e in found.examples}
    assert reasons["origin_is_destination"]["direction"] == "a->b"
    assert reasons["forwarded_twice"]["sources"] == 2
    lag, source, overall = lag_details(store.db, {"file": False})
    per = lag["forwarding"]["per_direction"]
    assert per["a->b"]["samples"] == 4 and per["a->b"]["max"] == 90
    assert per["b->a"]["max"] == 10 and overall["max"] == 90 and "a->b" in source
    assert judge(store, REGIONS).anomalies["ping_pong"].count == 2  # the malformed one: no loop


def test_equal_tombstones_of_two_deletes_are_not_ping_pong_but_a_returned_one_is():
    """Whole-second stamps: two deletes of two versions with one stamp leave the same tombstone,
    forwarded from two source positions: two changes, not a loop. A tombstone stamped by the
    region whose staging stream holds it came back, whatever its origin says."""

    def tombstone(side: str, seq: int, origin: str, stamp: list, src: tuple) -> tuple:
        doc = {"pk": "k", "origin": origin, "stamp": stamp, "image": tomb("k", *stamp),
               "source": {"shard": src[0], "seq": src[1], "created_ms": 1000}}  # fmt: skip
        record = StreamRecord("shardId-0", 0, str(seq), "k", json.dumps(doc).encode(), 1010)
        return parse_record(side, record)

    store = ActiveStore(":memory:")
    store.add_staging([tombstone("b", 1, A, [1001, A], ("s0", "1")),
                       tombstone("b", 2, A, [1001, A], ("s0", "9"))])  # fmt: skip
    assert judge(store, REGIONS).anomalies["ping_pong"].count == 0
    store.add_staging([tombstone("b", 3, A, [2001, B], ("s0", "12"))])  # B's own delete, back
    found = judge(store, REGIONS).anomalies["ping_pong"]
    assert found.count == 1 and found.examples[0]["reason"] == "origin_is_destination"


def test_a_delete_whose_answer_was_lost_may_have_left_its_tombstone():
    """Its stamp never reached the ledger: a tombstone one past a version of the key, made by the
    region of that unknown delete, is a possible outcome, not a phantom; without such a delete
    it is one."""
    run = Run()
    run.write("k1", A, 100)
    run.write("k1", B, None, op="delete", status="unknown")
    run.both(tomb("k1", 101, B))
    judgement = run.judge()
    assert counts(judgement) == {}, {k: a.examples for k, a in judgement.anomalies.items()}
    planted = Run()
    planted.write("k1", A, 100)
    planted.write("k1", A, None, op="delete", status="unknown")  # in A: not B's tombstone
    planted.both(tomb("k1", 101, B))
    assert counts(planted.judge()).get("phantom") == 2
