"""Checkpoint-ahead: claims against what the target held at claim time; late records."""

from __future__ import annotations

from verify_planting import T0

from verify.model import StoreSide
from verify.watermarks import check_checkpoint_ahead

SRC, TGT = StoreSide.SOURCE, StoreSide.TARGET


def plant_copy(planted, n=10, lag=100):
    # record i: committed and in the source at T0 + 10*i, in the target lag ms later
    for i in range(n):
        planted.both(f"p-{i}", i, arrival=T0 + 10 * i, commit=T0 + 10 * i, lag=lag)


def test_true_claims_pass(planted):
    plant_copy(planted)
    # at T0+150, records arrived by T0+50 are in the target (arrival+100 <= 150)
    planted.store.add_claim(T0 + 150, T0 + 50, "r1", "claims.jsonl")
    planted.store.add_claim(T0 + 1000, T0 + 90, "r1", "claims.jsonl")
    ahead = check_checkpoint_ahead(planted.done())
    assert ahead.count == 0
    assert ahead.details["claims_checked"] == 2


def test_claim_ahead_of_the_target_is_caught_with_the_missing_record(planted):
    plant_copy(planted)
    # at T0+150 the target holds records up to T0+50, but the claim says T0+80
    planted.store.add_claim(T0 + 150, T0 + 80, "r1", "claims.jsonl")
    ahead = check_checkpoint_ahead(planted.done())
    assert ahead.count == 1
    (example,) = ahead.examples
    assert example["trace"] == "p-6"  # commit T0+60: the oldest record missing at T0+150
    assert example["records_missing_at_claim"] == 3  # p-6, p-7, p-8
    assert example["record"]["target_arrival_ms"] == T0 + 160


def test_tolerance_forgives_clock_skew_up_to_its_size(planted):
    plant_copy(planted)
    planted.store.add_claim(T0 + 150, T0 + 60, "r1", "claims.jsonl")
    db = planted.done()
    assert check_checkpoint_ahead(db, tolerance_ms=0).count == 1
    assert check_checkpoint_ahead(db, tolerance_ms=10).count == 0


def test_record_never_copied_makes_later_claims_ahead(planted):
    plant_copy(planted)
    planted.put(SRC, "p-lost", 99, arrival=T0 + 5, commit=T0 + 5)
    planted.store.add_claim(T0 + 10_000, T0 + 90, "r1", "final-checkpoint")
    ahead = check_checkpoint_ahead(planted.done())
    assert ahead.count == 1
    assert ahead.examples[0]["trace"] == "p-lost"
    assert "never reached the target" in ahead.examples[0]["explanation"]


def test_record_reaching_the_source_after_the_claim_is_late_not_ahead(planted):
    plant_copy(planted)
    # committed at T0+20 but written to the source only at T0+500, after the claim at T0+300
    planted.both("p-slow", 77, arrival=T0 + 500, commit=T0 + 20, lag=5)
    planted.store.add_claim(T0 + 300, T0 + 90, "r1", "claims.jsonl")
    ahead = check_checkpoint_ahead(planted.done())
    assert ahead.count == 0
    assert ahead.details["late_records"] == 1
    assert ahead.details["late_examples"][0]["trace"] == "p-slow"


def test_many_claims_are_checked_in_one_sweep(planted):
    plant_copy(planted, n=200, lag=50)
    for t in range(0, 2000, 7):
        planted.store.add_claim(T0 + t, T0 + t - 50, "r1", "claims.jsonl")
    planted.store.add_claim(T0 + 1000, T0 + 1000, "bad", "claims.jsonl")
    ahead = check_checkpoint_ahead(planted.done())
    assert ahead.count == 1
    assert ahead.examples[0]["replicator_id"] == "bad"
