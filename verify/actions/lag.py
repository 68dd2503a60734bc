"""The consumers' lag over time, from the run directory's ``consumer-lag.jsonl``.

Each consumer appends about once a second, per shard it reads, ``{"ts_ms", "consumer",
"shard_id", "millis_behind_latest", "applied_arrival_ms"}`` (:data:`xrh.action_log.LAG_FILE`).
The lines go into the store's ``lag`` table as they are read (memory flat however long the
run), and the report takes from it, per consumer: percentiles of ``millis_behind_latest`` and
a series over time (per bucket, the largest lag of any shard and the mean), a few hundred
points at most. The report's ``lag_ms`` is the lazy consumer's (region B's): how far behind the
log the second region's table was. No file is a note, not an error: the consumers may not
record their lag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from verify.actions.store import ActionStore
from xrh.action_log import CONSUMERS, LAG_FILE

LAG_KEYS = ("p50", "p90", "p99", "max")
MAX_POINTS = 300
BAD_LINE_EXAMPLES = 5


def _rows(path: Path, bad: list[str], counter: list[int]) -> Any:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                row = (str(doc["consumer"]), int(doc["ts_ms"]), doc.get("shard_id"),
                       None if doc.get("millis_behind_latest") is None
                       else int(doc["millis_behind_latest"]),
                       None if doc.get("applied_arrival_ms") is None
                       else int(doc["applied_arrival_ms"]))  # fmt: skip
            except (ValueError, KeyError, TypeError) as exc:
                counter[0] += 1
                if len(bad) < BAD_LINE_EXAMPLES:
                    bad.append(f"line {number}: {type(exc).__name__}: {exc}")
                continue
            yield row


def load_lag(store: ActionStore, run_path: Path) -> dict[str, Any]:
    """Read ``consumer-lag.jsonl`` into the store; what was found, for ``details``."""
    path = Path(run_path) / LAG_FILE
    if not path.exists():
        return {"file": False, "note": f"no {LAG_FILE} in the run directory: the consumers' "
                "lag over time was not recorded"}  # fmt: skip
    bad: list[str] = []
    counter = [0]
    n = store.add_lag_rows(_rows(path, bad, counter))
    found: dict[str, Any] = {"file": True, "samples": n, "unreadable_lines": counter[0]}
    if bad:
        found["unreadable_examples"] = bad
    return found


def _percentile(store: ActionStore, consumer: str, n: int, fraction: float) -> int | None:
    if n == 0:
        return None
    offset = min(n - 1, max(0, int(round(fraction * n + 0.5)) - 1))
    row = store.db.execute(
        "SELECT behind_ms FROM lag WHERE consumer = ? AND behind_ms IS NOT NULL "
        "ORDER BY behind_ms LIMIT 1 OFFSET ?",
        (consumer, offset),
    ).fetchone()
    return row[0] if row else None


def consumer_summary(store: ActionStore, consumer: str) -> dict[str, Any]:
    """Percentiles of one consumer's ``millis_behind_latest`` and its last sample's time."""
    n, shards, first, last = store.db.execute(
        "SELECT COUNT(behind_ms), COUNT(DISTINCT shard), MIN(ts_ms), MAX(ts_ms) FROM lag "
        "WHERE consumer = ?",
        (consumer,),
    ).fetchone()
    summary: dict[str, Any] = {
        "samples": n, "shards": shards, "first_ts_ms": first, "last_ts_ms": last,
        "writes_region": CONSUMERS.get(consumer, "?").upper(),
    }  # fmt: skip
    for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        summary[name] = _percentile(store, consumer, n, fraction)
    summary["max"] = store.db.execute(
        "SELECT MAX(behind_ms) FROM lag WHERE consumer = ?", (consumer,)
    ).fetchone()[0]
    return summary


def lag_over_time(store: ActionStore) -> dict[str, Any]:
    """Per consumer, per time bucket: the largest lag of any shard and the mean."""
    first, last = store.db.execute("SELECT MIN(ts_ms), MAX(ts_ms) FROM lag").fetchone()
    if first is None:
        return {"bucket_ms": None, "start_ms": None, "series": {}}
    bucket = max(1000, -(-(last - first + 1) // MAX_POINTS))
    bucket = -(-bucket // 1000) * 1000
    series: dict[str, list[dict[str, Any]]] = {}
    for consumer, t, worst, mean in store.db.execute(
        "SELECT consumer, (ts_ms - ?1) / ?2 AS b, MAX(behind_ms), AVG(behind_ms) FROM lag "
        "GROUP BY consumer, b ORDER BY consumer, b",
        (first, bucket),
    ):
        series.setdefault(consumer, []).append(
            {
                "t_ms": first + t * bucket,
                "max": worst,
                "avg": None if mean is None else round(mean, 1),
            }  # fmt: skip
        )
    return {"bucket_ms": bucket, "start_ms": first, "series": series}


def lag_report(store: ActionStore, found: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``lag_ms`` (the lazy consumer's, else the slowest one's) and where it came from, and
    fills ``found`` with the per-consumer summaries and the series over time."""
    empty = {k: None for k in LAG_KEYS}
    if not found.get("file"):
        return empty, found["note"]
    consumers = [r[0] for r in store.db.execute("SELECT DISTINCT consumer FROM lag ORDER BY 1")]
    found["consumers"] = {c: consumer_summary(store, c) for c in consumers}
    found["over_time"] = lag_over_time(store)
    measured = {c: s for c, s in found["consumers"].items() if s["samples"]}
    if not measured:
        return empty, f"{LAG_FILE} holds no lag sample"
    chosen = "lazy" if "lazy" in measured else max(measured, key=lambda c: measured[c]["max"])
    summary = measured[chosen]
    return (
        {k: summary[k] for k in LAG_KEYS},
        f"{LAG_FILE}: the {chosen} consumer's millis_behind_latest over {summary['samples']} "
        f"sample(s) of {summary['shards']} shard(s) (how far behind the actions stream it "
        f"applied to region {summary['writes_region']})",
    )
