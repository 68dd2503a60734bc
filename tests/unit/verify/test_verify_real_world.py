"""Verdicts under what real streams do and the embedded endpoint never did: producers' resends in
the source itself, runs sharing a stream, records written to region B after a failover, and
records that loop back into their own region. Each test plants the situation in a store."""

from __future__ import annotations

import pytest
from verify_planting import T0, Planted

from verify.model import StoreSide, Verdict
from verify.reconcile import decide, reconcile
from verify.store import Store

SRC, TGT = StoreSide.SOURCE, StoreSide.TARGET


def kinds(result) -> dict[str, int]:
    return {k: a.count for k, a in result.anomalies.items() if a.count}


# ---------------------------------------------------------------- resends in the source


def resent_source(planted: Planted) -> None:
    """The producer's resend rule: a1 failed, a2 succeeded, so a1, a2 went again."""
    for trace in ("a2", "a1"):
        planted.ledger(trace, 42, commit=T0)
    planted.ledger("a2", 42, commit=T0)  # the second, acknowledged attempt of a2
    for i, trace in enumerate(["a2", "a1", "a2"]):
        planted.put(SRC, trace, 42, arrival=T0 + i, commit=T0)


def test_byte_exact_copy_of_a_source_holding_resends_is_valid(planted):
    resent_source(planted)
    for i, trace in enumerate(["a2", "a1", "a2"]):
        planted.put(TGT, trace, 42, arrival=T0 + 100 + i, commit=T0)
    result = reconcile(planted.done())
    assert kinds(result) == {}
    assert decide(result.anomalies).verdict is Verdict.VALID


def test_target_that_drops_the_last_resend_is_reordered_and_stale(planted):
    resent_source(planted)
    for i, trace in enumerate(["a2", "a1"]):  # the last a2 dropped: the key ends on a1
        planted.put(TGT, trace, 42, arrival=T0 + 100 + i, commit=T0)
    result = reconcile(planted.done())
    found = kinds(result)
    assert found["reordered"] == 1
    assert found["stale"] == 1
    stale = result.anomalies["stale"].examples[0]
    assert stale["partition_key"] == "42"
    assert stale["source_final"]["trace"] == "a2"
    assert stale["target_final"]["trace"] == "a1"
    assert decide(result.anomalies).verdict is Verdict.INVALID


def test_key_whose_last_record_is_lost_ends_stale(planted):
    for i, trace in enumerate(["b1", "b2"]):
        planted.ledger(trace, 7, commit=T0 + i)
        planted.put(SRC, trace, 7, arrival=T0 + i, commit=T0)
    planted.put(TGT, "b1", 7, arrival=T0 + 50, commit=T0)
    found = kinds(reconcile(planted.done()))
    assert found == {"lost": 1, "stale": 1}


def test_clean_keys_are_never_stale(planted):
    for i in range(30):
        trace = f"c{i}"
        planted.ledger(trace, i % 4, commit=T0 + i)
        planted.both(trace, i % 4, arrival=T0 + i, commit=T0)
    assert kinds(reconcile(planted.done())) == {}


# ---------------------------------------------------------------- runs sharing a stream


@pytest.fixture
def run2(tmp_path):
    store = Store(tmp_path / "verify.sqlite", own_prefix="run2/")
    yield Planted(store)
    store.close()


def test_other_runs_records_are_foreign_and_never_raise_an_anomaly(run2):
    # run 1 wrote these earlier; its replicator lost one, duplicated one and swapped two
    run2.put(SRC, "run1/lu1-1", 5, arrival=T0, commit=T0)
    run2.put(SRC, "run1/lu1-2", 5, arrival=T0 + 1, commit=T0)
    run2.put(SRC, "run1/lu1-3", 5, arrival=T0 + 2, commit=T0)
    run2.put(SRC, "run1/lu1-4", 6, arrival=T0 + 3, commit=T0)
    run2.put(TGT, "run1/lu1-2", 5, arrival=T0 + 10, commit=T0)
    run2.put(TGT, "run1/lu1-1", 5, arrival=T0 + 11, commit=T0)
    run2.put(TGT, "run1/lu1-4", 6, arrival=T0 + 12, commit=T0)
    run2.put(TGT, "run1/lu1-4", 6, arrival=T0 + 13, commit=T0)
    run2.put(TGT, "run1/lu1-9", 6, arrival=T0 + 14, commit=T0)  # another run's record, target only
    for i in range(5):  # this run: clean
        trace = f"run2/lu1-{i}"
        run2.ledger(trace, 5, commit=T0 + 100 + i)
        run2.both(trace, 5, arrival=T0 + 100 + i, commit=T0)
    result = reconcile(run2.done())
    assert kinds(result) == {}
    assert decide(result.anomalies).verdict is Verdict.VALID
    assert result.foreign["records"] == 5
    assert result.foreign["source_only"] == 1
    assert result.foreign["target_only"] == 1


def test_a_lost_record_of_this_run_is_not_hidden_by_another_runs_twin(run2):
    # same key and same payload apart from the trace: with run-less traces these collided
    run2.put(SRC, "run1/lu1-000000001", 5, arrival=T0, commit=T0)
    run2.put(TGT, "run1/lu1-000000001", 5, arrival=T0 + 10, commit=T0)
    run2.ledger("run2/lu1-000000001", 5)
    run2.put(SRC, "run2/lu1-000000001", 5, arrival=T0 + 100, commit=T0)
    result = reconcile(run2.done())
    assert kinds(result) == {"lost": 1, "stale": 1}
    assert result.anomalies["lost"].examples[0]["trace"] == "run2/lu1-000000001"
    assert result.anomalies["diverged"].count == 0


def test_a_record_nobody_wrote_appearing_in_the_target_is_still_phantom(run2):
    run2.ledger("run2/lu1-1", 5)
    run2.both("run2/lu1-1", 5, arrival=T0, commit=T0)
    run2.put(TGT, "", 5, arrival=T0 + 20, data=b"garbage without a trace")
    assert kinds(reconcile(run2.done())) == {"phantom": 1}


# ---------------------------------------------------------------- direction from the ledger


def test_record_written_to_b_and_lost_on_the_way_to_a_is_lost(planted):
    planted.ledger("a-1", 1, origin="a")
    planted.ledger("b-1", 2, origin="b")
    planted.ledger("b-2", 3, origin="b")
    planted.read("a", "a-1", 1, arrival=T0)
    planted.read("b", "a-1", 1, arrival=T0 + 10)
    planted.read("b", "b-1", 2, arrival=T0 + 20)
    planted.read("a", "b-1", 2, arrival=T0 + 30)
    planted.read("b", "b-2", 3, arrival=T0 + 40)  # written to B, never copied to A
    result = reconcile(planted.done())
    assert kinds(result) == {"lost": 1, "stale": 1}
    (example,) = result.anomalies["lost"].examples
    assert example["trace"] == "b-2"
    assert result.counts["source_records"] == 3 and result.counts["target_records"] == 2
    assert result.lag.overall["max"] == 10


def test_order_is_judged_within_each_origin(planted):
    # key 9 written to A (x1, x2) then, after a failover, to B (y1, y2); each copied in order
    for trace, origin in (("x1", "a"), ("x2", "a"), ("y1", "b"), ("y2", "b")):
        planted.ledger(trace, 9, origin=origin)
    planted.read("a", "x1", 9, arrival=T0)
    planted.read("a", "x2", 9, arrival=T0 + 1)
    planted.read("b", "y1", 9, arrival=T0 + 5)
    planted.read("b", "x1", 9, arrival=T0 + 6)
    planted.read("b", "y2", 9, arrival=T0 + 7)
    planted.read("b", "x2", 9, arrival=T0 + 8)
    planted.read("a", "y1", 9, arrival=T0 + 10)
    planted.read("a", "y2", 9, arrival=T0 + 11)
    assert kinds(reconcile(planted.done())) == {}


# ---------------------------------------------------------------- loops


def test_record_that_comes_back_into_its_own_region_is_looped(planted):
    planted.ledger("l-1", 4)
    planted.ledger("l-2", 4)
    planted.read("a", "l-1", 4, arrival=T0)
    planted.read("a", "l-2", 4, arrival=T0 + 1)
    planted.read("b", "l-1", 4, arrival=T0 + 10)
    planted.read("b", "l-2", 4, arrival=T0 + 11)
    planted.read("a", "l-1", 4, arrival=T0 + 20)  # A -> B -> A
    result = reconcile(planted.done())
    assert kinds(result)["looped"] == 1
    (example,) = result.anomalies["looped"].examples
    assert example["trace"] == "l-1"
    assert example["copies_in_origin"] == 2 and example["producer_writes"] == 1
    assert decide(result.anomalies).verdict is Verdict.INVALID


def test_producer_resends_are_not_loops(planted):
    resent_source(planted)
    for i, trace in enumerate(["a2", "a1", "a2"]):
        planted.put(TGT, trace, 42, arrival=T0 + 100 + i, commit=T0)
    assert reconcile(planted.done()).anomalies["looped"].count == 0
