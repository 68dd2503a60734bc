"""Checkpoint-ahead: was every watermark claim true when it was made?

A claim (t, W) says: at wall time t the target held every source record with commit timestamp
<= W. It is false ("ahead") if some source record with commit_ts <= W had reached the source by t
(source arrival <= t) but reached the target only after t + tolerance, or never. Records with
commit_ts <= W that reached the *source* after t are "late": the claim could not know them, so
they are reported as information, not as an anomaly.

One sweep in source-arrival order answers every claim: records enter a min-heap on commit_ts when
they reach the source and leave once they reach the target; a claim is ahead iff the heap's
smallest commit_ts is <= W. The heap holds only records in flight (plus lost ones), so memory
follows the replication lag, not the run's size.
"""

from __future__ import annotations

import heapq
import math
import sqlite3
from dataclasses import dataclass
from typing import Any

from verify.checks import EXAMPLES, Anomaly, _clean, _rows
from xrh.contracts import iso_ms

INF = math.inf
_REBUILD_AT = 100_000


@dataclass(frozen=True, slots=True)
class Claim:
    id: int
    claimed_at_ms: int
    watermark_ms: int
    replicator_id: str | None
    origin: str


def _claims(db: sqlite3.Connection) -> list[Claim]:
    return [
        Claim(*row)
        for row in db.execute(
            "SELECT id, claimed_at_ms, watermark_ms, replicator_id, origin FROM claims "
            "ORDER BY claimed_at_ms, id"
        )
    ]


def check_checkpoint_ahead(
    db: sqlite3.Connection, tolerance_ms: int = 0, limit: int = EXAMPLES
) -> Anomaly:
    claims = _claims(db)
    if not claims:
        return Anomaly("checkpoint_ahead", 0, (), {"claims_checked": 0, "late_records": 0})
    cursor = db.execute(
        """SELECT s.ident, s.commit_ts, s.arrival_ms, t.arrival_ms
           FROM src_id s LEFT JOIN tgt_id t ON t.ident = s.ident
           WHERE s.commit_ts <= (SELECT MAX(watermark_ms) FROM claims)
           ORDER BY s.arrival_ms"""
    )
    heap: list[tuple[int, float, int]] = []  # (commit_ts, leaves_at, ident)
    ahead: list[tuple[Claim, int]] = []
    late_count = 0
    late_examples: list[int] = []
    max_w_before = -INF  # largest W among claims made strictly before the current record
    pending = cursor.fetchone()

    def take(row: tuple) -> None:
        nonlocal late_count
        ident, commit_ts, src_arrival, tgt_arrival = row
        if commit_ts <= max_w_before:
            late_count += 1
            if len(late_examples) < limit:
                late_examples.append(ident)
        leaves_at = INF if tgt_arrival is None else tgt_arrival - tolerance_ms
        if leaves_at > src_arrival:
            heapq.heappush(heap, (commit_ts, leaves_at, ident))

    for claim in claims:
        t = claim.claimed_at_ms
        while pending is not None and pending[2] <= t:
            take(pending)
            pending = cursor.fetchone()
        while heap and heap[0][1] <= t:
            heapq.heappop(heap)
        if len(heap) > _REBUILD_AT:
            heap = [entry for entry in heap if entry[1] > t]
            heapq.heapify(heap)
        if heap and heap[0][0] <= claim.watermark_ms:
            ahead.append((claim, heap[0][2]))
        max_w_before = max(max_w_before, claim.watermark_ms)
    while pending is not None:
        take(pending)
        pending = cursor.fetchone()

    examples = [_ahead_example(db, claim, ident, tolerance_ms) for claim, ident in ahead[:limit]]
    late = [
        _clean(r)
        for r in _rows(
            db,
            f"""SELECT trace, key, pk AS partition_key, shard AS source_shard,
                       seq AS source_sequence_number, commit_ts, arrival_ms AS source_arrival_ms
                FROM src_id WHERE ident IN ({",".join("?" * len(late_examples))})""",
            tuple(late_examples),
        )
    ]
    return Anomaly(
        "checkpoint_ahead",
        len(ahead),
        tuple(examples),
        {
            "claims_checked": len(claims),
            "tolerance_ms": tolerance_ms,
            "late_records": late_count,
            "late_examples": late,
        },
    )


def _ahead_example(
    db: sqlite3.Connection, claim: Claim, ident: int, tolerance_ms: int
) -> dict[str, Any]:
    t, w = claim.claimed_at_ms, claim.watermark_ms
    missing = db.execute(
        """SELECT COUNT(*) FROM src_id s LEFT JOIN tgt_id t ON t.ident = s.ident
           WHERE s.arrival_ms <= ? AND s.commit_ts <= ?
             AND (t.arrival_ms IS NULL OR t.arrival_ms > ?)""",
        (t, w, t + tolerance_ms),
    ).fetchone()[0]
    record = _rows(
        db,
        """SELECT s.trace, s.key, s.pk AS partition_key, s.shard AS source_shard,
                  s.seq AS source_sequence_number, s.commit_ts, s.arrival_ms AS source_arrival_ms,
                  t.arrival_ms AS target_arrival_ms, t.shard AS target_shard,
                  t.seq AS target_sequence_number
           FROM src_id s LEFT JOIN tgt_id t ON t.ident = s.ident WHERE s.ident = ?""",
        (ident,),
    )[0]
    return _clean(
        {
            "origin": claim.origin,
            "replicator_id": claim.replicator_id,
            "claimed_at": iso_ms(t),
            "watermark": iso_ms(w),
            "claimed_at_ms": t,
            "watermark_ms": w,
            "records_missing_at_claim": missing,
            "key": record["key"],
            "trace": record["trace"],
            "record": _clean(record),
            "explanation": (
                f"claimed at {iso_ms(t)} that the target held every record committed by "
                f"{iso_ms(w)}; {record['trace'] or 'a record'} (committed "
                f"{iso_ms(record['commit_ts'])}) was in the source but "
                + (
                    "never reached the target"
                    if record["target_arrival_ms"] is None
                    else f"reached the target only at {iso_ms(record['target_arrival_ms'])}"
                )
            ),
        }
    )
