"""The checks: pure functions over a finalized :class:`~verify.store.Store` connection.

Each returns an :class:`Anomaly` (a count, examples a person can follow, and details) and does
its work in SQL, so a run of any size is checked in bounded memory. The counts come from
:func:`tally`, which reads only the rows that can hold an anomaly (the store keeps them in a
partial index while reading); examples are fetched only when a count is not zero, and at most
``limit`` of them.
Pass one tally to every check (as :func:`verify.reconcile.reconcile` does) to read it once.

Only this run's records (``own``, see :mod:`verify.schema`) can raise an anomaly; foreign ones
(other runs sharing the stream, writers outside the run) are counted in the details. Each
record is judged in its own direction: source = the region it was written to. Definitions:

- lost: acknowledged in the ledger (or in the source, arrived before verify's cutoff) and
  absent from the target; a ledger ``unknown`` write is never lost by itself.
- phantom: in the target, in neither the source nor the ledger, and not another run's.
- duplicated: more copies in the target than in the source (at-least-once allows it).
- reordered: per origin and partition key, the order of each record's LAST target copy against
  the order of its LAST source copy (a producer's resend leaves a2, a1, a2 in the source, and a
  byte-exact copy of that is in order; a target a2, a1 is not); first-arrival inversions that a
  later copy put right are counted in the details, not as an anomaly.
- stale: per origin and partition key, the target's final record is not the source's final
  record (the key would end on an older value).
- looped: more copies in the record's own region than its producer can have written (ledger
  attempts ``ok`` or ``unknown``): a copy came back from the other region (A -> B -> A).
- diverged: the target copy's data or partition key differs from the source's.
The checkpoint-ahead sweep lives in :mod:`verify.watermarks`, lag in :mod:`verify.lag`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from verify.model import StoreSide
from verify.schema import ODD, dead_lettered
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


def _rows(db: sqlite3.Connection, sql: str, params: tuple | dict = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _clean(example: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in example.items() if v is not None}


# Every anomaly lives in a row of ids_odd, so the counts scan only those; the clean majority
# is counted from the per-second rates and the status index. :cutoff is the wall time verify
# began reading: a record that reached a source after it (not acknowledged: a live stream
# read without a ledger, or another writer) is not required in the target.
OWN = "own IS 1"
PHANTOM = "t_n IS NOT NULL AND s_n IS NULL AND l_status IS NULL AND (own IS 1 OR trace IS NULL)"
DEAD = dead_lettered()
SOURCE_ONLY = (
    "s_n IS NOT NULL AND t_n IS NULL AND l_status IS NOT 'ok' AND own IS 1"
    f" AND s_arr <= COALESCE(:cutoff, s_arr) AND NOT {DEAD}"
)
ACKED_MISSING = f"l_status = 'ok' AND t_n IS NULL AND NOT {DEAD}"
LOOPED = "own IS 1 AND l_status IS NOT NULL AND s_n > MAX(COALESCE(l_copies, 0), 1)"
_TALLY_ODD = f"""
SELECT
  COALESCE(SUM({ACKED_MISSING}), 0) AS acked_missing,
  COALESCE(SUM({ACKED_MISSING} AND s_n IS NULL), 0) AS acked_not_in_source,
  COALESCE(SUM(t_n IS NULL AND own IS 1 AND (l_status = 'ok' OR s_n IS NOT NULL) AND {DEAD}), 0)
    AS dead_lettered,
  COALESCE(SUM({SOURCE_ONLY}), 0) AS source_only,
  COALESCE(SUM(s_n IS NOT NULL AND t_n IS NULL AND l_status IS NOT 'ok' AND own IS 1
               AND s_arr > COALESCE(:cutoff, s_arr)), 0) AS after_cutoff,
  COALESCE(SUM({PHANTOM}), 0) AS phantom,
  COALESCE(SUM({OWN} AND t_n > MAX(COALESCE(s_n, 1), 1)), 0) AS duplicated,
  COALESCE(SUM(CASE WHEN {OWN} THEN MAX(t_n - MAX(COALESCE(s_n, 1), 1), 0) END), 0)
    AS extra_copies,
  COALESCE(SUM({OWN} AND s_n > 1), 0) AS source_duplicated,
  COALESCE(SUM(CASE WHEN {OWN} THEN s_n - 1 END), 0) AS source_extra,
  COALESCE(SUM({OWN} AND t_n > 1), 0) AS target_duplicated,
  COALESCE(SUM({LOOPED}), 0) AS looped,
  COALESCE(SUM({OWN} AND s_n IS NOT NULL AND t_n IS NOT NULL
               AND (t_diff OR s_diff OR t_dhash != s_dhash OR t_pk != s_pk)), 0) AS diverged,
  MIN(CASE WHEN t_n IS NULL AND s_n IS NOT NULL AND {OWN} AND NOT {DEAD}
                AND s_arr <= COALESCE(:cutoff, s_arr) THEN s_commit END) AS oldest_missing_source,
  MIN(CASE WHEN {ACKED_MISSING} THEN l_commit END) AS oldest_missing_acked
FROM ids INDEXED BY ids_odd WHERE {ODD}
"""
_FOREIGN = """
SELECT COUNT(*) AS records, COALESCE(SUM(s_n IS NOT NULL), 0) AS in_source,
       COALESCE(SUM(t_n IS NOT NULL), 0) AS in_target,
       COALESCE(SUM(s_n IS NOT NULL AND t_n IS NULL), 0) AS source_only,
       COALESCE(SUM(t_n IS NOT NULL AND s_n IS NULL), 0) AS target_only,
       COALESCE(SUM(trace IS NOT NULL), 0) AS with_trace
FROM ids INDEXED BY ids_foreign WHERE own IS NOT 1
"""
SOURCE_CUTOFF = "source_cutoff_ms"


def source_cutoff(db: sqlite3.Connection) -> int | None:
    """The wall time (ms) verify began reading, kept in the store's meta table."""
    try:
        row = db.execute("SELECT value FROM meta WHERE name = ?", (SOURCE_CUTOFF,)).fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row and row[0] is not None else None


def tally(db: sqlite3.Connection) -> dict[str, Any]:
    """Every count the checks report, without a scan of the clean rows; the checks run their
    own (filtered) queries only for examples, and only when there is something to show."""
    cutoff = source_cutoff(db)
    out = _rows(db, _TALLY_ODD, {"cutoff": cutoff})[0]
    out["cutoff"] = cutoff
    out["foreign"] = _rows(db, _FOREIGN)[0]
    statuses = dict(
        db.execute(
            "SELECT l_status, COUNT(*) FROM ids INDEXED BY ids_status "
            "WHERE l_status IS NOT NULL GROUP BY l_status"
        ).fetchall()
    )
    out.update(
        acknowledged=statuses.get("ok", 0),
        failed=statuses.get("fail", 0),
        unknown=statuses.get("unknown", 0),
    )
    sides = {
        side: (n, newest)
        for side, n, newest in db.execute(
            "SELECT side, SUM(n), MAX(commit_max) FROM rates GROUP BY side"
        )
    }
    out["source_records"] = sides.get("src", (0, None))[0]
    out["target_records"] = sides.get("tgt", (0, None))[0]
    out["newest_commit"] = sides.get("src", (0, None))[1]
    return out


_MISSING = f"""
SELECT COALESCE(SUM({ACKED_MISSING}), 0) + COALESCE(SUM({SOURCE_ONLY}), 0)
FROM ids INDEXED BY ids_odd WHERE {ODD}
"""


def missing_from_target(db: sqlite3.Connection) -> int:
    """Records the target must hold and does not yet (what verify's settle waits for)."""
    return int(db.execute(_MISSING, {"cutoff": source_cutoff(db)}).fetchone()[0])


def has_ledger(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT EXISTS (SELECT 1 FROM ids WHERE l_status IS NOT NULL)").fetchone()[0]


def check_lost(
    db: sqlite3.Connection, limit: int = EXAMPLES, tallied: dict[str, Any] | None = None
) -> Anomaly:
    """Acknowledged (or in the source) and not in the target. Dead-lettered ones say why."""
    t = tallied or tally(db)
    n_acked, n_not_in_source = t["acked_missing"], t["acked_not_in_source"]
    n_source_only = t["source_only"]
    dead = "(SELECT reason FROM dead_letters d WHERE d.ident = ids.ident LIMIT 1)"
    examples: list[dict[str, Any]] = []
    if n_acked:
        examples = _rows(
            db,
            f"""SELECT trace, COALESCE(key, l_key) AS key,
                       COALESCE(s_pk, l_pk) AS partition_key,
                       COALESCE(s_shard, l_shard) AS source_shard,
                       COALESCE(s_seq, l_seq) AS source_sequence_number,
                       l_status AS ledger_status, s_n IS NOT NULL AS in_source,
                       {dead} AS dead_letter_reason
                FROM ids WHERE {ACKED_MISSING}
                ORDER BY COALESCE(s_ord, l_seq) LIMIT ?""",
            (limit,),
        )
    if n_source_only and len(examples) < limit:
        examples += _rows(
            db,
            f"""SELECT trace, key, s_pk AS partition_key, s_shard AS source_shard,
                       s_seq AS source_sequence_number, l_status AS ledger_status,
                       1 AS in_source, {dead} AS dead_letter_reason
                FROM ids WHERE {SOURCE_ONLY} ORDER BY s_ord LIMIT :limit""",
            {"cutoff": t["cutoff"], "limit": limit - len(examples)},
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
            "arrived_after_verify_began": t["after_cutoff"],
            "dead_lettered_with_data": t["dead_lettered"],
        },
    )


def check_phantom(
    db: sqlite3.Connection, limit: int = EXAMPLES, tallied: dict[str, Any] | None = None
) -> Anomaly:
    count = (tallied or tally(db))["phantom"]
    examples = []
    if count:
        examples = _rows(
            db,
            f"""SELECT trace, key, t_pk AS partition_key, t_shard AS target_shard,
                      t_seq AS target_sequence_number, t_n AS copies
               FROM ids WHERE {PHANTOM} ORDER BY t_ord LIMIT ?""",
            (limit,),
        )
    return Anomaly("phantom", count, tuple(_clean(e) for e in examples))


def check_duplicated(
    db: sqlite3.Connection, limit: int = EXAMPLES, tallied: dict[str, Any] | None = None
) -> Anomaly:
    """Records with more target copies than source copies; the count is of records, the total
    of extra copies is in the details (with producer-side duplicates in the source)."""
    t = tallied or tally(db)
    count = t["duplicated"]
    examples = []
    if count:
        examples = _rows(
            db,
            f"""SELECT trace, key, t_pk AS partition_key, t_n AS target_copies,
                      COALESCE(s_n, 0) AS source_copies, s_shard AS source_shard,
                      s_seq AS source_sequence_number, ident
               FROM ids WHERE {OWN} AND t_n > MAX(COALESCE(s_n, 1), 1) ORDER BY t_ord LIMIT ?""",
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
    return Anomaly(
        "duplicated",
        count,
        tuple(_clean(e) for e in examples),
        {
            "extra_copies": t["extra_copies"],
            "source_duplicated_records": t["source_duplicated"],
            "source_extra_copies": t["source_extra"],
        },
    )


def check_diverged(
    db: sqlite3.Connection, limit: int = EXAMPLES, tallied: dict[str, Any] | None = None
) -> Anomaly:
    count = (tallied or tally(db))["diverged"]
    examples = []
    if count:
        examples = _rows(
            db,
            f"""SELECT trace, key, s_pk AS source_partition_key, t_pk AS target_partition_key,
                      s_shard AS source_shard, s_seq AS source_sequence_number,
                      t_shard AS target_shard, t_seq AS target_sequence_number,
                      CASE WHEN t_pk != s_pk THEN 'partition key differs'
                           WHEN t_diff OR s_diff THEN 'copies differ among themselves'
                           ELSE 'data differs' END AS difference
               FROM ids WHERE {OWN} AND s_n IS NOT NULL AND t_n IS NOT NULL
                 AND (t_diff OR s_diff OR t_dhash != s_dhash OR t_pk != s_pk)
               ORDER BY s_ord LIMIT ?""",
            (limit,),
        )
    return Anomaly("diverged", count, tuple(_clean(e) for e in examples))


# Only keys in order_suspects can be out of order (the store's trigger checks each record's
# neighbours in (key, last copy) order as it is paired, and lists keys whose records moved);
# their rows come from the index ids_order already in (origin, key, last target copy) order.
_REORDER = """
    WITH w AS (
        SELECT origin, t_pk AS pk, t_last_ord AS tord, s_last_ord AS sord, ident,
               MAX(s_last_ord) OVER (PARTITION BY origin, t_pk ORDER BY t_last_ord
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                   AS prev_max
        FROM ids INDEXED BY ids_order WHERE s_n IS NOT NULL AND t_n IS NOT NULL AND own IS 1
          AND t_pk IN (SELECT pk FROM order_suspects))
    SELECT {select} FROM w WHERE prev_max > sord
"""
# First-arrival inversions that the last copies put right (the resend rule at work): only keys
# with a duplicated target record can have one, and those are all suspects.
_HEALED = """
    WITH w AS (
        SELECT s_last_ord AS sord,
               MAX(s_last_ord) OVER (PARTITION BY origin, t_pk ORDER BY t_ord
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                   AS first_max,
               MAX(s_last_ord) OVER (PARTITION BY origin, t_pk ORDER BY t_last_ord
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                   AS last_max
        FROM ids WHERE s_n IS NOT NULL AND t_n IS NOT NULL AND own IS 1
          AND t_pk IN (SELECT pk FROM order_suspects))
    SELECT COUNT(*) FROM w WHERE first_max > sord AND NOT COALESCE(last_max > sord, 0)
"""


def _side(db: sqlite3.Connection, ident: int) -> dict[str, Any]:
    return _rows(
        db,
        """SELECT trace, s_shard AS source_shard, s_seq AS source_sequence_number,
                  t_last_shard AS target_shard, t_last_seq AS target_sequence_number
           FROM ids WHERE ident = ?""",
        (ident,),
    )[0]


def check_reordered(
    db: sqlite3.Connection, limit: int = EXAMPLES, tallied: dict[str, Any] | None = None
) -> Anomaly:
    """Per origin and partition key: a record whose last target copy came after the last copy
    of a record whose last source copy is later. Resends copied faithfully are fine (the source
    a2, a1, a2 and the same in the target); a target that ends a1 where the source ends a2 is
    not. Each example names the record and the one that overtook it, at their last copies."""
    count = db.execute(_REORDER.format(select="COUNT(*)")).fetchone()[0]
    examples = []
    rows = []
    if count:
        rows = db.execute(
            _REORDER.format(select="origin, pk, tord, sord, ident") + " ORDER BY tord LIMIT ?",
            (limit,),
        ).fetchall()
    for origin, pk, tord, sord, ident in rows:
        overtaker = db.execute(
            """SELECT ident FROM ids INDEXED BY ids_order
               WHERE origin IS ? AND t_pk = ? AND t_last_ord < ? AND s_last_ord > ?
                 AND s_n IS NOT NULL AND t_n IS NOT NULL AND own IS 1
               ORDER BY t_last_ord LIMIT 1""",
            (origin, pk, tord, sord),
        ).fetchone()[0]
        key = db.execute("SELECT key FROM ids WHERE ident = ?", (ident,)).fetchone()[0]
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
                        f"{other['trace'] or 'record'} (last copies); the target's last copies "
                        "of them are the other way round"
                    ),
                }
            )
        )
    healed = 0
    t = tallied or tally(db)
    if t["target_duplicated"]:
        healed = db.execute(_HEALED).fetchone()[0]
    return Anomaly("reordered", count, tuple(examples), {"healed_by_later_copy": healed})


# A key can end stale only if its order is suspect or one of its records is odd (missing,
# duplicated, looped): the final records of every other key are one clean pair. For those
# keys, the final own record per (origin, key) on each side: the source's from the paired rows
# (index ids_order) and the source-only rows, the target's from the paired and target-only.
_STALE = f"""
    WITH cand AS (
        SELECT pk FROM order_suspects
        UNION SELECT COALESCE(s_pk, t_pk) FROM ids INDEXED BY ids_odd WHERE {ODD} AND own IS 1),
    src AS (
        SELECT origin, s_pk AS pk, s_last_ord AS ord, ident FROM ids
        WHERE own IS 1 AND s_n IS NOT NULL AND s_pk IN cand
          AND s_arr <= COALESCE(:cutoff, s_arr) AND NOT {DEAD}),
    tgt AS (
        SELECT origin, t_pk AS pk, t_last_ord AS ord, ident FROM ids
        WHERE own IS 1 AND t_n IS NOT NULL AND t_pk IN cand
          AND (s_arr IS NULL OR s_arr <= COALESCE(:cutoff, s_arr))),
    src_last AS (SELECT origin, pk, ident, MAX(ord) FROM src GROUP BY origin, pk),
    tgt_last AS (SELECT origin, pk, ident, MAX(ord) FROM tgt GROUP BY origin, pk)
    SELECT s.origin, s.pk, s.ident AS source_final, t.ident AS target_final
    FROM src_last s LEFT JOIN tgt_last t ON t.origin IS s.origin AND t.pk = s.pk
    WHERE t.ident IS NOT s.ident
"""


def check_stale(db: sqlite3.Connection, limit: int = EXAMPLES) -> Anomaly:
    """Keys whose final record in the target is not their final record in the source (among
    the records that reached the source before verify began reading)."""
    rows = db.execute(_STALE, {"cutoff": source_cutoff(db)}).fetchall()
    examples = []
    for origin, pk, source_final, target_final in rows[:limit]:
        source = _clean(_side(db, source_final))
        target = _clean(_side(db, target_final)) if target_final is not None else None
        src_trace = (source or {}).get("trace") or "its last record"
        tgt_trace = (target or {}).get("trace") if target else None
        examples.append(
            _clean(
                {
                    "partition_key": pk,
                    "key": pk,
                    "origin": origin,
                    "trace": src_trace,
                    "source_final": source,
                    "target_final": target,
                    "explanation": (
                        f"the source's last record of key {pk} is {src_trace}; the target's is "
                        + (f"{tgt_trace or 'another record'}" if target else "missing")
                        + ": a reader of the target ends on an older value"
                    ),
                }
            )
        )
    return Anomaly("stale", len(rows), tuple(examples))


def check_looped(
    db: sqlite3.Connection, limit: int = EXAMPLES, tallied: dict[str, Any] | None = None
) -> Anomaly:
    """Records with more copies in the region they were written to than their producer's
    attempts can explain: a replicator copied them back (A -> B -> A)."""
    count = (tallied or tally(db))["looped"]
    examples = []
    if count:
        examples = _rows(
            db,
            f"""SELECT trace, key, s_pk AS partition_key, origin AS written_to,
                       s_n AS copies_in_origin, COALESCE(l_copies, 0) AS producer_writes,
                       s_shard AS source_shard, s_seq AS source_sequence_number, ident
                FROM ids WHERE {LOOPED} ORDER BY s_ord LIMIT ?""",
            (limit,),
        )
    for example in examples:
        ident = example.pop("ident")
        copies = db.execute(
            f"SELECT group_concat(shard || ':' || seq, ' ') FROM {StoreSide.SOURCE.value} "
            "WHERE ident = ?",
            (ident,),
        ).fetchone()[0]
        example["copies_in_origin_at"] = copies
        example["explanation"] = (
            f"{example.get('trace') or 'a record'} was written {example['producer_writes']} "
            f"time(s) to region {str(example['written_to']).upper()} but its stream there holds "
            f"{example['copies_in_origin']} copies: it came back from the other region"
        )
    return Anomaly("looped", count, tuple(_clean(e) for e in examples))


def foreign_details(tallied: dict[str, Any]) -> dict[str, Any]:
    """Other runs' records and records nobody in this run wrote: counted, never judged."""
    return dict(tallied["foreign"])


def counts(db: sqlite3.Connection, tallied: dict[str, Any] | None = None) -> dict[str, int]:
    t = tallied or tally(db)
    names = ("acknowledged", "failed", "unknown", "source_records", "target_records")
    return {name: t[name] for name in names}


def verified_watermark(db: sqlite3.Connection, tallied: dict[str, Any] | None = None) -> int | None:
    """The largest commit timestamp W such that every source (or acknowledged) record with
    commit timestamp <= W is in the target: just below the oldest missing record."""
    t = tallied or tally(db)
    missing = [m for m in (t["oldest_missing_source"], t["oldest_missing_acked"]) if m is not None]
    if missing:
        return int(min(missing)) - 1
    newest = t["newest_commit"]
    return None if newest is None else int(newest)


def iso_or_none(ms: int | None) -> str | None:
    return None if ms is None else iso_ms(ms)
