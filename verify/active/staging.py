"""Both regions' ``{prefix}-staging`` streams: ping-pong, resends and forwarding lag.

Region X's staging stream carries the other region's changes to X: it is the direction
"other -> X". Each record (format: :mod:`xrh.active_active`) is parsed into the store's
``staging`` table; a record that is not that JSON is kept with its error (counted in details,
shown with examples: no applier can apply it, and the tables' comparison shows what it cost).

Ping-pong (loop prevention broken), per direction:

- a record whose ``origin``, or whose stamp's region, is the region whose staging stream
  holds it: a change went back to the region it was made in;
- one change (key, stamp and image, with its writer's trace) found with two different
  ``source`` positions: it was forwarded, applied, and forwarded again. Two *different*
  changes may share a stamp (two writes of one key in one region in the same millisecond, or
  second), so the image tells them apart. Tombstones carry no trace: two deletes of versions
  with equal stamps leave identical tombstones, so they are judged by the first rule only.

Records with the same ``source`` are resends of one change (a retried PutRecords): counted,
never an anomaly. Lag per direction: the record's arrival (ApproximateArrivalTimestamp) minus
``source.created_ms`` (when the change entered its table's stream).
"""

from __future__ import annotations

import json
from typing import Any

from verify.actions.items import table_item
from verify.checks import EXAMPLES
from verify.model import StreamRecord, hash64
from verify.table_reader import canonical_json

DIRECTIONS = {"a": "b->a", "b": "a->b"}  # staging stream's side -> the direction it carries
LAG_KEYS = ("p50", "p90", "p99", "max")
MAX_POINTS = 300


def parse_record(side: str, record: StreamRecord) -> tuple:
    """One staging record as a ``staging`` row; unparseable ones keep their error."""
    base = (side, record.shard_id, record.sequence_number)
    try:
        doc = json.loads(record.data)
        image = doc["image"]
        ts, region = doc["stamp"]
        source = doc["source"]
        trace = image.get("trace", {}).get("S") if isinstance(image, dict) else None
        image_hash = hash64(canonical_json(table_item(image)).encode())
        return (*base, str(doc["pk"]), str(doc["origin"]), int(ts), str(region), image_hash,
                trace, str(source["shard"]), str(source["seq"]),
                None if source.get("created_ms") is None else int(source["created_ms"]),
                record.arrival_ms, None)  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return (*base, record.partition_key, None, None, None, None, None, None, None, None,
                record.arrival_ms, f"{type(exc).__name__}: {exc}")  # fmt: skip


_LOOPED = """SELECT side, shard, seq, pk, origin, ts, region, trace, src_shard, src_seq
FROM staging WHERE error IS NULL AND side = ? AND (origin = ? OR region = ?)
ORDER BY shard, seq"""
_TWICE = """SELECT side, pk, ts, region, image_hash, COUNT(*) AS records,
    COUNT(DISTINCT src_shard || '#' || src_seq) AS sources
FROM staging WHERE error IS NULL AND trace IS NOT NULL
GROUP BY side, pk, ts, region, image_hash HAVING sources > 1
ORDER BY side, pk, ts"""
_SOURCES = """SELECT shard, seq, origin, src_shard, src_seq, trace FROM staging
WHERE side = ? AND pk = ? AND ts = ? AND region = ? AND image_hash = ? AND error IS NULL
ORDER BY shard, seq"""


def ping_pong(db: Any, regions: dict[str, str], limit: int = EXAMPLES) -> dict[str, Any]:
    """Ping-pong examples and counts, and the resends, from the ``staging`` table.
    ``regions``: side ("a", "b") -> the AWS region of that side."""
    examples: list[dict[str, Any]] = []
    counts = {"origin_is_destination": 0, "forwarded_twice": 0}
    for side, region in regions.items():
        for row in db.execute(_LOOPED, (side, region, region)):
            counts["origin_is_destination"] += 1
            if len(examples) < limit:
                s, shard, seq, pk, origin, ts, reg, trace, src_shard, src_seq = row
                examples.append({
                    "reason": "origin_is_destination", "key": {"pk": pk},
                    "direction": DIRECTIONS[s], "staging_region": region,
                    "shard": shard, "sequence_number": seq, "origin": origin,
                    "stamp": [ts, reg], "trace": trace,
                    "source": {"shard": src_shard, "seq": src_seq},
                    "explanation": f"region {s.upper()}'s staging stream holds a change made "
                    f"in {region}, its own region (origin {origin}, stamp of {reg}): the "
                    "change came back",
                })  # fmt: skip
    for side, pk, ts, reg, image_hash, records, sources in db.execute(_TWICE).fetchall():
        counts["forwarded_twice"] += 1
        if len(examples) < limit:
            rows = db.execute(_SOURCES, (side, pk, ts, reg, image_hash)).fetchall()
            examples.append({
                "reason": "forwarded_twice", "key": {"pk": pk}, "direction": DIRECTIONS[side],
                "stamp": [ts, reg], "trace": rows[0][5] if rows else None,
                "records": records, "sources": sources,
                "forwarded": [{"shard": r[0], "sequence_number": r[1], "origin": r[2],
                               "source": {"shard": r[3], "seq": r[4]}} for r in rows[:6]],
                "explanation": f"one change was forwarded {sources} times {DIRECTIONS[side]} "
                "from different source positions: it went round a loop",
            })  # fmt: skip
    total, distinct = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT side || '|' || src_shard || '#' || src_seq) "
        "FROM staging WHERE error IS NULL"
    ).fetchone()
    return {"count": sum(counts.values()), "reasons": counts, "examples": examples,
            "resends": total - distinct}  # fmt: skip


def staging_details(db: Any) -> dict[str, Any]:
    """Records read per direction, malformed ones with examples."""
    per = dict(db.execute("SELECT side, COUNT(*) FROM staging GROUP BY side").fetchall())
    bad = db.execute(
        "SELECT side, shard, seq, pk, error FROM staging WHERE error IS NOT NULL "
        "ORDER BY side, shard, seq LIMIT ?", (EXAMPLES,)
    ).fetchall()  # fmt: skip
    return {
        "records": {DIRECTIONS[s]: per.get(s, 0) for s in ("b", "a")},
        "malformed": db.execute("SELECT COUNT(*) FROM staging WHERE error IS NOT NULL")
        .fetchone()[0],
        "malformed_examples": [
            {"direction": DIRECTIONS[s], "shard": sh, "sequence_number": q, "partition_key": p,
             "error": e} for s, sh, q, p, e in bad
        ],
    }  # fmt: skip


def _summary(db: Any, source: str, where: str, params: tuple) -> dict[str, Any]:
    """Percentiles of ``value`` over ``source``'s rows matching ``where``."""
    n = db.execute(f"SELECT COUNT(*) FROM {source} WHERE {where}", params).fetchone()[0]
    out: dict[str, Any] = {"samples": n}
    for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)):
        if not n:
            out[name] = None
            continue
        offset = min(n - 1, max(0, int(round(fraction * n + 0.5)) - 1))
        out[name] = db.execute(
            f"SELECT value FROM {source} WHERE {where} ORDER BY value LIMIT 1 OFFSET ?",
            (*params, offset),
        ).fetchone()[0]
    return out


def _over_time(db: Any, source: str) -> dict[str, Any]:
    first, last = db.execute(f"SELECT MIN(t), MAX(t) FROM {source}").fetchone()
    if first is None:
        return {"bucket_ms": None, "start_ms": None, "series": {}}
    bucket = max(1000, -(-(last - first + 1) // MAX_POINTS))
    bucket = -(-bucket // 1000) * 1000
    series: dict[str, list[dict[str, Any]]] = {}
    for direction, b, worst, mean in db.execute(
        f"SELECT direction, (t - ?1) / ?2 AS b, MAX(value), AVG(value) FROM {source} "
        "GROUP BY direction, b ORDER BY direction, b", (first, bucket)
    ):  # fmt: skip
        series.setdefault(direction, []).append(
            {"t_ms": first + b * bucket, "max": worst, "avg": round(mean, 1)}
        )
    return {"bucket_ms": bucket, "start_ms": first, "series": series}


_FORWARD = """(SELECT CASE side WHEN 'b' THEN 'a->b' ELSE 'b->a' END AS direction,
    arrival_ms AS t, arrival_ms - created_ms AS value FROM staging
    WHERE error IS NULL AND created_ms IS NOT NULL)"""
_APPLIED = "(SELECT direction, ts_ms AS t, lag_ms AS value FROM applied_lag)"


def lag_details(db: Any, applied_file: dict[str, Any]) -> tuple[dict[str, Any], str, dict]:
    """Lag per direction: forwarding (staging arrival minus change creation) and, when the
    appliers recorded it, applied (``replication-lag.jsonl``). Returns (details, where
    ``lag_ms`` came from, ``lag_ms``: the slower direction's, the applied lag preferred)."""
    forwarding = {d: _summary(db, _FORWARD, "direction = ?", (d,)) for d in ("a->b", "b->a")}
    out: dict[str, Any] = {
        "forwarding": {"per_direction": forwarding, "over_time": _over_time(db, _FORWARD)},
        "applied": dict(applied_file),
    }
    chosen, source = forwarding, "staging records: arrival minus source.created_ms"
    if applied_file.get("file"):
        directions = [r[0] for r in db.execute("SELECT DISTINCT direction FROM applied_lag")]
        applied = {d: _summary(db, _APPLIED, "direction = ?", (d,)) for d in sorted(directions)}
        out["applied"].update(per_direction=applied, over_time=_over_time(db, _APPLIED))
        if any(s["samples"] for s in applied.values()):
            chosen, source = applied, "replication-lag.jsonl: the appliers' lag_ms"
    measured = {d: s for d, s in chosen.items() if s["samples"]}
    if not measured:
        return out, "no lag measured (no staging record and no lag file)", dict.fromkeys(LAG_KEYS)
    slow = max(measured, key=lambda d: measured[d]["max"])
    return out, f"{source}, direction {slow} (the slower)", {k: measured[slow][k] for k in LAG_KEYS}
