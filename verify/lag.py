"""Replication lag: target first arrival minus source arrival (and minus commit timestamp),
as nearest-rank percentiles overall and per source shard, and over time; plus produced versus
replicated rate. All in SQL window functions over ``src_id`` / ``tgt_id``."""

from __future__ import annotations

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


def _percentiles(db: sqlite3.Connection, column: str, group: str | None) -> list[tuple]:
    part = f"PARTITION BY {group}" if group else ""
    g = group or "NULL"
    return db.execute(
        f"""WITH r AS (
              SELECT {g} AS g, v, ROW_NUMBER() OVER ({part} ORDER BY v) AS rn,
                     COUNT(*) OVER ({part}) AS n
              FROM (SELECT s.shard AS shard, {column} AS v
                    FROM src_id s JOIN tgt_id t ON t.ident = s.ident WHERE {column} IS NOT NULL))
            SELECT g, n,
              MAX(CASE WHEN rn = MAX(1, (50 * n + 99) / 100) THEN v END),
              MAX(CASE WHEN rn = MAX(1, (90 * n + 99) / 100) THEN v END),
              MAX(CASE WHEN rn = MAX(1, (99 * n + 99) / 100) THEN v END),
              MAX(v)
            FROM r GROUP BY g ORDER BY g"""
    ).fetchall()


def _as_dict(row: tuple | None) -> dict[str, int | None]:
    if row is None:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    return {"p50": row[2], "p90": row[3], "p99": row[4], "max": row[5]}


def _bucket_ms(span_ms: int) -> int:
    for nice in _NICE_MS:
        if span_ms / nice <= MAX_BUCKETS:
            return nice
    return -(-span_ms // MAX_BUCKETS)


def compute_lag(db: sqlite3.Connection) -> LagResult:
    lag = "t.arrival_ms - s.arrival_ms"
    overall = _percentiles(db, lag, None)
    from_commit = _percentiles(db, "t.arrival_ms - s.commit_ts", None)
    per_shard = [
        {"shard": g, "records": n, "p50": p50, "p90": p90, "p99": p99, "max": mx}
        for g, n, p50, p90, p99, mx in _percentiles(db, lag, "shard")
    ]
    lo, hi = db.execute(
        """SELECT MIN(m), MAX(m) FROM (SELECT MIN(arrival_ms) AS m FROM src
           UNION ALL SELECT MAX(arrival_ms) FROM src UNION ALL SELECT MIN(arrival_ms) FROM tgt
           UNION ALL SELECT MAX(arrival_ms) FROM tgt)"""
    ).fetchone()
    if lo is None:
        return LagResult(_as_dict(None), _as_dict(None), per_shard)
    bucket = _bucket_ms(int(hi - lo) + 1)
    over_time = [
        {"t_ms": lo + b * bucket, "records": n, "avg": round(avg, 1), "max": mx}
        for b, n, avg, mx in db.execute(
            f"""SELECT (s.arrival_ms - ?) / ? AS b, COUNT(*), AVG({lag}), MAX({lag})
                FROM src_id s JOIN tgt_id t ON t.ident = s.ident GROUP BY b ORDER BY b""",
            (lo, bucket),
        )
    ]
    produced = dict(
        db.execute("SELECT (arrival_ms - ?) / ? AS b, COUNT(*) FROM src GROUP BY b", (lo, bucket))
    )
    replicated = dict(
        db.execute("SELECT (arrival_ms - ?) / ? AS b, COUNT(*) FROM tgt GROUP BY b", (lo, bucket))
    )
    rates = [
        {
            "t_ms": lo + b * bucket,
            "produced_per_s": round(produced.get(b, 0) * 1000 / bucket, 1),
            "replicated_per_s": round(replicated.get(b, 0) * 1000 / bucket, 1),
        }
        for b in range(int((hi - lo) // bucket) + 1)
    ]
    return LagResult(
        _as_dict(overall[0] if overall else None),
        _as_dict(from_commit[0] if from_commit else None),
        per_shard,
        over_time,
        rates,
        bucket,
    )
