"""Replication lag: target first arrival minus source arrival (and minus commit timestamp),
as nearest-rank percentiles overall and per source shard, and over time; plus produced versus
replicated rate. All in SQL window functions over ``src_id`` / ``tgt_id``."""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import dataclass, field
from typing import Any

MAX_BUCKETS = 120
_NICE_MS = (1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000)
QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))


@dataclass(frozen=True, slots=True)
class LagResult:
    overall: dict[str, int | None]
    from_commit: dict[str, int | None]
    per_shard: list[dict[str, Any]] = field(default_factory=list)
    over_time: list[dict[str, Any]] = field(default_factory=list)
    rates: list[dict[str, Any]] = field(default_factory=list)
    bucket_ms: int = 1000


_JOIN = "FROM src_id s JOIN tgt_id t ON t.ident = s.ident"


def _ranks(n: int) -> list[tuple[str, int]]:
    return [(name, max(1, -(-n * int(q * 100) // 100))) for name, q in QUANTILES]


def _stream_percentiles(rows: Any, n: int) -> dict[str, int | None]:
    """Nearest-rank percentiles from a (value, count) histogram streamed in value order."""
    out: dict[str, int | None] = {"p50": None, "p90": None, "p99": None, "max": None}
    targets = _ranks(n)
    cumulative = 0
    for value, count in rows:
        cumulative += count
        while targets and cumulative >= targets[0][1]:
            out[targets.pop(0)[0]] = value
        out["max"] = value
    return out


def _percentiles(db: sqlite3.Connection, expr: str) -> dict[str, int | None]:
    """The histogram has one row per distinct lag in ms: bounded by the lag, not the run."""
    hist = db.execute(
        f"SELECT {expr} AS v, COUNT(*) {_JOIN} WHERE v IS NOT NULL GROUP BY v ORDER BY v"
    ).fetchall()
    return _stream_percentiles(hist, sum(c for _, c in hist))


def _per_shard(db: sqlite3.Connection, expr: str) -> list[dict[str, Any]]:
    """One pass: (shard, value, count) in shard then value order, cut into shards."""
    rows = db.execute(
        f"""SELECT s.shard, {expr} AS v, COUNT(*) {_JOIN} WHERE v IS NOT NULL
            GROUP BY s.shard, v ORDER BY s.shard, v"""
    )
    out = []
    for shard, group in itertools.groupby(rows, key=lambda row: row[0]):
        hist = [(v, c) for _, v, c in group]
        n = sum(c for _, c in hist)
        out.append({"shard": shard, "records": n, **_stream_percentiles(hist, n)})
    return out


def _bucket_ms(span_ms: int) -> int:
    for nice in _NICE_MS:
        if span_ms / nice <= MAX_BUCKETS:
            return nice
    return -(-span_ms // MAX_BUCKETS)


def compute_lag(db: sqlite3.Connection) -> LagResult:
    lag = "t.arrival_ms - s.arrival_ms"
    overall = _percentiles(db, lag)
    from_commit = _percentiles(db, "t.arrival_ms - s.commit_ts")
    per_shard = _per_shard(db, lag)
    lo, hi = db.execute(
        """SELECT MIN(m), MAX(m) FROM (SELECT MIN(arrival_ms) AS m FROM src_id
           UNION ALL SELECT MAX(arrival_ms) FROM src_id UNION ALL SELECT MIN(arrival_ms) FROM tgt_id
           UNION ALL SELECT MAX(arrival_ms) FROM tgt_id)"""
    ).fetchone()
    if lo is None:
        return LagResult(overall, from_commit, per_shard)
    bucket = _bucket_ms(int(hi - lo) + 1)
    over_time = [
        {"t_ms": lo + b * bucket, "records": n, "avg": round(avg, 1), "max": mx}
        for b, n, avg, mx in db.execute(
            f"""SELECT (s.arrival_ms - ?) / ? AS b, COUNT(*), AVG({lag}), MAX({lag})
                {_JOIN} GROUP BY b ORDER BY b""",
            (lo, bucket),
        )
    ]
    produced = dict(
        db.execute("SELECT (arrival_ms - ?) / ? AS b, SUM(n) FROM src_id GROUP BY b", (lo, bucket))
    )
    replicated = dict(
        db.execute("SELECT (arrival_ms - ?) / ? AS b, SUM(n) FROM tgt_id GROUP BY b", (lo, bucket))
    )
    rates = [
        {
            "t_ms": lo + b * bucket,
            "produced_per_s": round(produced.get(b, 0) * 1000 / bucket, 1),
            "replicated_per_s": round(replicated.get(b, 0) * 1000 / bucket, 1),
        }
        for b in range(int((hi - lo) // bucket) + 1)
    ]
    return LagResult(overall, from_commit, per_shard, over_time, rates, bucket)
