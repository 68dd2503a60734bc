"""Replication lag: target first arrival minus source arrival (and minus commit timestamp),
as nearest-rank percentiles overall and per source shard, and over time (by source arrival);
plus produced versus replicated rate (copies by their arrival). All from the small histogram
tables the store fills while reading, so the cost does not grow with the run."""

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


def _percentiles(db: sqlite3.Connection, sql: str) -> dict[str, int | None]:
    """The histogram has one row per distinct lag in ms: bounded by the lag, not the run."""
    hist = db.execute(sql).fetchall()
    return _stream_percentiles(hist, sum(c for _, c in hist))


def _per_shard(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """The (shard, lag) histogram is stored in that order: cut it into shards."""
    rows = db.execute("SELECT shard, v, n FROM lag_hist ORDER BY shard, v")
    out = []
    for shard, group in itertools.groupby(rows, key=lambda row: row[0]):
        hist = [(v, c) for _, v, c in group]
        n = sum(c for _, c in hist)
        out.append({"shard": shard, "records": n, **_stream_percentiles(hist, n)})
    return out


def _bucket_ms(span_ms: int) -> int:
    """Whole seconds, so buckets are sums of the per-second rows kept while reading."""
    for nice in _NICE_MS:
        if span_ms / nice <= MAX_BUCKETS:
            return nice
    return -(-span_ms // (MAX_BUCKETS * 1000)) * 1000


def compute_lag(db: sqlite3.Connection) -> LagResult:
    """From the histograms and per-second rows the store kept while reading (:mod:`verify.schema`):
    no pass over the records. Buckets start on a whole second."""
    overall = _percentiles(db, "SELECT v, SUM(n) FROM lag_hist GROUP BY v ORDER BY v")
    from_commit = _percentiles(db, "SELECT v, n FROM commit_hist ORDER BY v")
    per_shard = _per_shard(db)
    lo, hi = db.execute("SELECT MIN(lo), MAX(hi) FROM rates").fetchone()
    if lo is None:
        return LagResult(overall, from_commit, per_shard)
    lo -= lo % 1000
    bucket = _bucket_ms(int(hi - lo) + 1)
    seconds = bucket // 1000
    first = lo // 1000
    over_time = [
        {"t_ms": lo + b * bucket, "records": n, "avg": round(total / n, 1), "max": mx}
        for b, n, total, mx in db.execute(
            """SELECT (sec - ?) / ? AS b, SUM(n), SUM(total), MAX(mx) FROM lag_time
               GROUP BY b ORDER BY b""",
            (first, seconds),
        )
    ]
    per_side = {
        side: dict(
            db.execute(
                "SELECT (sec - ?) / ? AS b, SUM(n) FROM rates WHERE side = ? GROUP BY b",
                (first, seconds, side),
            )
        )
        for side in ("src", "tgt")
    }
    produced, replicated = per_side["src"], per_side["tgt"]
    rates = [
        {
            "t_ms": lo + b * bucket,
            "produced_per_s": round(produced.get(b, 0) * 1000 / bucket, 1),
            "replicated_per_s": round(replicated.get(b, 0) * 1000 / bucket, 1),
        }
        for b in range(int((hi - lo) // bucket) + 1)
    ]
    return LagResult(overall, from_commit, per_shard, over_time, rates, bucket)


def caught_up_after(db: sqlite3.Connection, at_ms: int) -> float | None:
    """Seconds from ``at_ms`` (a drill's last fault step) until the target held every record
    of this run that had reached its source by then: how long the backlog took to clear."""
    row = db.execute(
        """SELECT MAX(t_arr) FROM ids INDEXED BY ids_times
           WHERE s_n IS NOT NULL AND own IS 1 AND s_arr <= ? AND t_arr IS NOT NULL""",
        (at_ms,),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return round(max(0, row[0] - at_ms) / 1000, 3)
