"""The checks: pure functions over a finalized :class:`~verify.store.Store` connection.

Each returns an :class:`Anomaly` (a count, examples a person can follow, and details) and does
its work in SQL, so a run of any size is checked in bounded memory. Definitions (issue 5):

- lost: acknowledged in the ledger (or present in the source) and absent from the target;
  a ledger ``unknown`` write is never lost by itself, only if the source holds it.
- phantom: in the target, in neither the source nor the ledger.
- duplicated: more copies in the target than in the source (at-least-once allows it).
- reordered: per partition key, the order of each record's LAST target copy against the
  source's order (so a resend a2, a1, a2 is valid and a stale a1, a2, a1 is not); first-arrival
  inversions that a later copy put right are counted in the details, not as an anomaly.
- diverged: the target copy's data or partition key differs from the source's.
- stale: an item older than its source (table pipelines); never for a stream.
The checkpoint-ahead sweep lives in :mod:`verify.watermarks`, lag in :mod:`verify.lag`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from xrh.contracts import iso_ms

EXAMPLES = 10


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str
    count: int
    examples: tuple[dict[str, Any], ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "examples": list(self.examples)}


def _rows(db: sqlite3.Connection, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _clean(example: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in example.items() if v is not None}


def has_ledger(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT EXISTS (SELECT 1 FROM led_id)").fetchone()[0] == 1


def check_lost(db: sqlite3.Connection, limit: int = EXAMPLES) -> Anomaly:
    """Acknowledged (or in the source) and not in the target. Dead-lettered ones say why."""
    acked_missing = """
        FROM led_id l LEFT JOIN src_id s ON s.ident = l.ident
        WHERE l.status = 'ok' AND NOT EXISTS (SELECT 1 FROM tgt_id t WHERE t.ident = l.ident)"""
    source_missing = """
        FROM src_id s LEFT JOIN led_id l ON l.ident = s.ident
        WHERE (l.status IS NULL OR l.status != 'ok')
          AND NOT EXISTS (SELECT 1 FROM tgt_id t WHERE t.ident = s.ident)"""
    n_acked, n_not_in_source = db.execute(
        f"SELECT COUNT(*), COALESCE(SUM(s.ident IS NULL), 0) {acked_missing}"
    ).fetchone()
    n_source_only = db.execute(f"SELECT COUNT(*) {source_missing}").fetchone()[0]
    dead = "(SELECT reason FROM dead_letters d WHERE d.ident = {0}.ident LIMIT 1)"
    examples = _rows(
        db,
        f"""SELECT l.trace, COALESCE(s.key, l.key) AS key, COALESCE(s.pk, l.pk) AS partition_key,
                   COALESCE(s.shard, l.shard_id) AS source_shard,
                   COALESCE(s.seq, l.seq) AS source_sequence_number,
                   l.status AS ledger_status, s.ident IS NOT NULL AS in_source,
                   {dead.format("l")} AS dead_letter_reason
            {acked_missing} ORDER BY COALESCE(s.ord, l.seq) LIMIT ?""",
        (limit,),
    )
    if len(examples) < limit:
        examples += _rows(
            db,
            f"""SELECT s.trace, s.key, s.pk AS partition_key, s.shard AS source_shard,
                       s.seq AS source_sequence_number, l.status AS ledger_status,
                       1 AS in_source, {dead.format("s")} AS dead_letter_reason
                {source_missing} ORDER BY s.ord LIMIT ?""",
            (limit - len(examples),),
        )
    for example in examples:
        example["in_source"] = bool(example["in_source"])
        example["in_target"] = False
    return Anomaly(
        "lost",
        n_acked + n_source_only,
        tuple(_clean(e) for e in examples),
        {
            "acknowledged_missing_from_target": n_acked,
            "acknowledged_missing_from_source": n_not_in_source,
            "in_source_not_acknowledged_missing_from_target": n_source_only,
        },
    )


def check_phantom(db: sqlite3.Connection, limit: int = EXAMPLES) -> Anomaly:
    where = """FROM tgt_id t WHERE NOT EXISTS (SELECT 1 FROM src_id s WHERE s.ident = t.ident)
               AND NOT EXISTS (SELECT 1 FROM led_id l WHERE l.ident = t.ident)"""
    count = db.execute(f"SELECT COUNT(*) {where}").fetchone()[0]
    examples = _rows(
        db,
        f"""SELECT t.trace, t.key, t.pk AS partition_key, t.shard AS target_shard,
                   t.seq AS target_sequence_number, t.n AS copies
            {where} ORDER BY t.ord LIMIT ?""",
        (limit,),
    )
    return Anomaly("phantom", count, tuple(_clean(e) for e in examples))


def check_duplicated(db: sqlite3.Connection, limit: int = EXAMPLES) -> Anomaly:
    """Records with more target copies than source copies; the count is of records, the total
    of extra copies is in the details (with producer-side duplicates in the source)."""
    where = """FROM tgt_id t LEFT JOIN src_id s ON s.ident = t.ident
               WHERE t.n > MAX(COALESCE(s.n, 1), 1)"""
    count, extra = db.execute(
        f"SELECT COUNT(*), COALESCE(SUM(t.n - MAX(COALESCE(s.n, 1), 1)), 0) {where}"
    ).fetchone()
    examples = _rows(
        db,
        f"""SELECT t.trace, t.key, t.pk AS partition_key, t.n AS target_copies,
                   COALESCE(s.n, 0) AS source_copies, s.shard AS source_shard,
                   s.seq AS source_sequence_number, t.ident
            {where} ORDER BY t.ord LIMIT ?""",
        (limit,),
    )
    if examples:  # one scan of the copies for all examples (no index on tgt.ident)
        idents = [e.pop("ident") for e in examples]
        copies = dict(
            db.execute(
                f"""SELECT ident, group_concat(shard || ':' || seq, ' ') FROM tgt
                    WHERE ident IN ({",".join("?" * len(idents))}) GROUP BY ident""",
                idents,
            ).fetchall()
        )
        for ident, example in zip(idents, examples, strict=True):
            example["target_copies_at"] = copies.get(ident)
    source_dupes, source_extra = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(n - 1), 0) FROM src_id WHERE n > 1"
    ).fetchone()
    return Anomaly(
        "duplicated",
        count,
        tuple(_clean(e) for e in examples),
        {
            "extra_copies": extra,
            "source_duplicated_records": source_dupes,
            "source_extra_copies": source_extra,
        },
    )


def check_diverged(db: sqlite3.Connection, limit: int = EXAMPLES) -> Anomaly:
    where = """FROM tgt_id t JOIN src_id s ON s.ident = t.ident
               WHERE t.diff OR s.diff OR t.dhash != s.dhash OR t.pk != s.pk"""
    count = db.execute(f"SELECT COUNT(*) {where}").fetchone()[0]
    examples = _rows(
        db,
        f"""SELECT s.trace, s.key, s.pk AS source_partition_key, t.pk AS target_partition_key,
                   s.shard AS source_shard, s.seq AS source_sequence_number,
                   t.shard AS target_shard, t.seq AS target_sequence_number,
                   CASE WHEN t.pk != s.pk THEN 'partition key differs'
                        WHEN t.diff OR s.diff THEN 'copies differ among themselves'
                        ELSE 'data differs' END AS difference
            {where} ORDER BY s.ord LIMIT ?""",
        (limit,),
    )
    return Anomaly("diverged", count, tuple(_clean(e) for e in examples))


_REORDER = """
    WITH w AS (
        SELECT t.pk, t.last_ord AS tord, s.ord AS sord, t.ident,
               MAX(s.ord) OVER (PARTITION BY t.pk ORDER BY t.last_ord
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_max
        FROM tgt_id t JOIN src_id s ON s.ident = t.ident)
    SELECT {select} FROM w WHERE prev_max > sord
"""
# First-arrival inversions that the last copies put right (the resend rule at work): only keys
# with a duplicated target record can have one, so only those are windowed.
_HEALED = """
    WITH w AS (
        SELECT s.ord AS sord,
               MAX(s.ord) OVER (PARTITION BY t.pk ORDER BY t.ord
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS first_max,
               MAX(s.ord) OVER (PARTITION BY t.pk ORDER BY t.last_ord
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS last_max
        FROM tgt_id t JOIN src_id s ON s.ident = t.ident
        WHERE t.pk IN (SELECT pk FROM tgt_id WHERE n > 1))
    SELECT COUNT(*) FROM w WHERE first_max > sord AND NOT COALESCE(last_max > sord, 0)
"""


def _side(db: sqlite3.Connection, ident: int) -> dict[str, Any]:
    return _rows(
        db,
        """SELECT s.trace, s.shard AS source_shard, s.seq AS source_sequence_number,
                  t.last_shard AS target_shard, t.last_seq AS target_sequence_number
           FROM src_id s JOIN tgt_id t ON t.ident = s.ident WHERE s.ident = ?""",
        (ident,),
    )[0]


def check_reordered(db: sqlite3.Connection, limit: int = EXAMPLES) -> Anomaly:
    """Per partition key: a record whose last target copy came after the last copy of a record
    the source holds later. Resends (a2, a1, a2) are fine: duplicates are allowed, and the last
    copies are in source order; a stale final state (a1, a2, a1) is not. Each example names
    the record and the one that overtook it, at their last target copies."""
    count = db.execute(_REORDER.format(select="COUNT(*)")).fetchone()[0]
    examples = []
    rows = db.execute(
        _REORDER.format(select="pk, tord, sord, ident") + " ORDER BY tord LIMIT ?", (limit,)
    ).fetchall()
    for pk, tord, sord, ident in rows:
        overtaker = db.execute(
            """SELECT t.ident FROM tgt_id t JOIN src_id s ON s.ident = t.ident
               WHERE t.pk = ? AND t.last_ord < ? AND s.ord > ? ORDER BY t.last_ord LIMIT 1""",
            (pk, tord, sord),
        ).fetchone()[0]
        key = db.execute("SELECT key FROM src_id WHERE ident = ?", (ident,)).fetchone()[0]
        record, other = _side(db, ident), _side(db, overtaker)
        examples.append(
            _clean(
                {
                    "key": key,
                    "partition_key": pk,
                    "trace": record["trace"],
                    "record": _clean(record),
                    "overtaken_by": _clean(other),
                    "explanation": (
                        f"source has {record['trace'] or 'record'} before "
                        f"{other['trace'] or 'record'}; the target's last copies of them "
                        "are the other way round"
                    ),
                }
            )
        )
    healed = 0
    if db.execute("SELECT EXISTS (SELECT 1 FROM tgt_id WHERE n > 1)").fetchone()[0]:
        healed = db.execute(_HEALED).fetchone()[0]
    return Anomaly("reordered", count, tuple(examples), {"healed_by_later_copy": healed})


def check_stale_stream() -> Anomaly:
    """Streams have no stale items (that is a table-pipeline check)."""
    return Anomaly("stale", 0, (), {"applies": False})


def counts(db: sqlite3.Connection) -> dict[str, int]:
    by_status = dict(db.execute("SELECT status, COUNT(*) FROM led_id GROUP BY status").fetchall())
    return {
        "acknowledged": by_status.get("ok", 0),
        "failed": by_status.get("fail", 0),
        "unknown": by_status.get("unknown", 0),
        "source_records": db.execute("SELECT COALESCE(SUM(n), 0) FROM src_id").fetchone()[0],
        "target_records": db.execute("SELECT COALESCE(SUM(n), 0) FROM tgt_id").fetchone()[0],
    }


def verified_watermark(db: sqlite3.Connection) -> int | None:
    """The largest commit timestamp W such that every source (or acknowledged) record with
    commit timestamp <= W is in the target: just below the oldest missing record."""
    oldest_missing = db.execute(
        """SELECT MIN(c) FROM (
             SELECT s.commit_ts AS c FROM src_id s
               WHERE NOT EXISTS (SELECT 1 FROM tgt_id t WHERE t.ident = s.ident)
             UNION ALL
             SELECT l.commit_ts FROM led_id l WHERE l.status = 'ok'
               AND NOT EXISTS (SELECT 1 FROM tgt_id t WHERE t.ident = l.ident))"""
    ).fetchone()[0]
    if oldest_missing is not None:
        return int(oldest_missing) - 1
    newest = db.execute("SELECT MAX(commit_ts) FROM src_id").fetchone()[0]
    return None if newest is None else int(newest)


def iso_or_none(ms: int | None) -> str | None:
    return None if ms is None else iso_ms(ms)
