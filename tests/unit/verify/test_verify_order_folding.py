"""The order check looks only at keys the store flagged while reading (order_suspects); these
compare it with a brute-force reading of the rule on random copies, whichever side is read
first, so a key the flagging missed would show up as a wrong count."""

from __future__ import annotations

import random

import pytest
from verify_planting import T0, Planted

from verify.checks import check_reordered, tally
from verify.model import StoreSide
from verify.reconcile import reconcile
from verify.store import Store

SRC, TGT = StoreSide.SOURCE, StoreSide.TARGET


def random_copies(rng: random.Random, n: int) -> list[int]:
    """Target copies of records 0..n-1: in order, with swaps, resends and stray duplicates."""
    copies = list(range(n))
    for _ in range(rng.randrange(3)):
        i, j = rng.randrange(n), rng.randrange(n)
        copies[i], copies[j] = copies[j], copies[i]
    for _ in range(rng.randrange(3)):
        start = rng.randrange(len(copies))
        copies += copies[start : start + rng.randrange(1, 4)]  # a resent suffix piece
    if rng.random() < 0.3:
        copies.insert(rng.randrange(len(copies) + 1), rng.randrange(n))
    return copies


def expected(copies_by_key: dict[int, list[int]]) -> tuple[int, int]:
    """(reordered, healed) by the rule: last copies in source order; first copies informational."""
    reordered = healed = 0
    for copies in copies_by_key.values():
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for position, record in enumerate(copies):
            first.setdefault(record, position)
            last[record] = position

        def inverted(order: dict[int, int]) -> set[int]:
            out, high = set(), -1
            for record in sorted(order, key=order.get):
                if record < high:
                    out.add(record)
                high = max(high, record)
            return out

        by_last = inverted(last)
        reordered += len(by_last)
        healed += len(inverted(first) - by_last)
    return reordered, healed


def plant(planted: Planted, side: StoreSide, copies_by_key: dict[int, list[int]]) -> None:
    for key, copies in copies_by_key.items():
        records = range(max(copies) + 1) if side is SRC else copies
        for record in records:
            arrival = T0 + record if side is SRC else T0 + 100
            planted.put(side, f"k{key}-{record}", key, arrival=arrival)
    planted.store.flush()


@pytest.mark.parametrize("source_first", [True, False])
def test_order_check_matches_the_rule_on_random_copies(tmp_path, source_first):
    rng = random.Random(5 if source_first else 6)
    for case in range(40):
        store = Store(tmp_path / f"{case}.sqlite")
        planted = Planted(store)
        copies_by_key = {key: random_copies(rng, rng.randrange(1, 7)) for key in range(4)}
        for side in (SRC, TGT) if source_first else (TGT, SRC):
            plant(planted, side, copies_by_key)
        db = planted.done()
        found = check_reordered(db, tallied=tally(db))
        assert (found.count, found.details["healed_by_later_copy"]) == expected(copies_by_key), (
            copies_by_key
        )
        store.close()


def test_target_read_before_source_still_finds_a_swap(planted):
    for trace in ["a-1", "a-3", "a-2"]:
        planted.put(TGT, trace, 42, arrival=T0 + 10)
    planted.store.flush()
    for i, trace in enumerate(["a-1", "a-2", "a-3"]):
        planted.put(SRC, trace, 42, arrival=T0 + i)
    result = reconcile(planted.done())
    reordered = result.anomalies["reordered"]
    assert reordered.count == 1
    assert reordered.examples[0]["trace"] == "a-2"
    assert result.lag.overall["max"] == 10
