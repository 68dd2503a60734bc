"""Lag percentiles (nearest rank), per shard, over time, and rates."""

from __future__ import annotations

from verify_planting import T0

from verify.lag import caught_up_after, compute_lag
from verify.model import StoreSide


def test_percentiles_overall_and_per_shard(planted):
    for i in range(100):
        shard = "shardId-a" if i % 2 else "shardId-b"
        planted.both(f"p-{i}", i, arrival=T0 + i * 100, lag=i + 1, shard=shard, commit=T0)
    lag = compute_lag(planted.done())
    assert lag.overall == {"p50": 50, "p90": 90, "p99": 99, "max": 100}
    by_shard = {row["shard"]: row for row in lag.per_shard}
    assert by_shard["shardId-a"]["max"] == 100 and by_shard["shardId-b"]["max"] == 99
    assert by_shard["shardId-a"]["records"] == 50
    assert lag.from_commit["max"] == 99 * 100 + 100


def test_over_time_shows_a_stall(planted):
    for i in range(60):
        lag = 20_000 - i * 1000 if 10 <= i < 20 else 10
        planted.both(f"p-{i}", i, arrival=T0 + i * 1000, lag=max(lag, 10))
    lag = compute_lag(planted.done())
    assert lag.bucket_ms == 1000
    worst = max(lag.over_time, key=lambda b: b["max"])
    assert worst["t_ms"] == T0 + 10_000
    assert sum(r["produced_per_s"] for r in lag.rates) == 60


def test_empty_store_has_no_lag(planted):
    lag = compute_lag(planted.done())
    assert lag.overall["p50"] is None and lag.over_time == []


def test_lag_uses_first_copies_and_rates_count_each_copy_when_it_arrived(planted):
    from verify.model import StoreSide

    planted.put(StoreSide.SOURCE, "p-1", 1, arrival=T0)
    planted.put(StoreSide.TARGET, "p-1", 1, arrival=T0 + 100)
    planted.put(StoreSide.TARGET, "p-1", 1, arrival=T0 + 5000)  # a later duplicate
    lag = compute_lag(planted.done())
    assert lag.overall == {"p50": 100, "p90": 100, "p99": 100, "max": 100}
    assert [r["t_ms"] for r in lag.rates if r["replicated_per_s"]] == [T0, T0 + 5000]
    assert [r["t_ms"] for r in lag.rates if r["produced_per_s"]] == [T0]


def test_recovery_is_when_the_backlog_of_the_fault_cleared(planted):
    for i in range(10):
        lag = 4_000 if i == 5 else 10  # record 5 waited out an outage
        planted.both(f"r-{i}", i, arrival=T0 + i * 100, lag=lag, commit=T0)
    planted.put(StoreSide.SOURCE, "r-late", 1, arrival=T0 + 2_000, commit=T0)  # after the step
    db = planted.done()
    assert caught_up_after(db, T0 + 1_000) == 3.5  # r-5 reached the target at T0 + 4500
    assert caught_up_after(db, T0 - 1) is None
