"""Checkpoint-ahead: was every watermark claim true when it was made?

A claim (t, W) says: at wall time t the target held every source record with commit timestamp
<= W. It is false ("ahead") if some source record with commit_ts <= W had reached the source by t
(source arrival <= t) but reached the target only after t + tolerance, or never. Records with
commit_ts <= W that reached the *source* after t are "late": the claim could not know them, so
they are reported as information, not as an anomaly.

Two passes, both bounded in memory:

- records that did reach the target: a range join from each record to the claims made while it
  was in flight (index on claim time), usually zero or one claim per record, reading the narrow
  index of (source arrival, target arrival, commit) rather than the records;
- records that never did (a few rows of the store's ``ids_odd`` index): streamed in
  source-arrival order against the claims in time order, keeping only the smallest commit
  timestamp seen so far.

Late records are found the same way as the first pass, over claims made between a record's
commit and its source arrival (a claim whose watermark is later than its own time is itself
reported, as ``future_claims``).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from verify.checks import EXAMPLES, Anomaly, _clean, _rows
from verify.schema import ODD
from xrh.contracts import iso_ms


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


# All three read the narrow partial index ids_times (source arrival, target arrival, commit),
# never the wide rows; the never-arrived records are among the few rows of ids_odd.
_IN_FLIGHT = """
    SELECT c.id, s.ident, MIN(s.s_commit)
    FROM ids AS s INDEXED BY ids_times CROSS JOIN claims AS c
    WHERE s.s_n IS NOT NULL AND s.s_commit IS NOT NULL AND s.t_arr IS NOT NULL
      AND s.t_arr - :tol > s.s_arr
      AND c.claimed_at_ms >= s.s_arr AND c.claimed_at_ms < s.t_arr - :tol
      AND c.watermark_ms >= s.s_commit
    GROUP BY c.id
"""
_NEVER_ARRIVED = f"""
    SELECT ident, s_commit, s_arr FROM ids INDEXED BY ids_odd
    WHERE {ODD} AND s_commit IS NOT NULL AND s_n IS NOT NULL AND t_n IS NULL
    ORDER BY s_arr
"""
_LATE = """
    FROM ids AS s INDEXED BY ids_times
    WHERE s.s_n IS NOT NULL AND s.s_commit IS NOT NULL AND s.s_arr > s.s_commit
      AND EXISTS (SELECT 1 FROM claims c
                  WHERE c.claimed_at_ms >= s.s_commit AND c.claimed_at_ms < s.s_arr
                    AND c.watermark_ms >= s.s_commit)
"""


def check_checkpoint_ahead(
    db: sqlite3.Connection, tolerance_ms: int = 0, limit: int = EXAMPLES
) -> Anomaly:
    claims = _claims(db)
    if not claims:
        return Anomaly("checkpoint_ahead", 0, (), {"claims_checked": 0, "late_records": 0})
    # claim id -> (commit_ts, ident) of the oldest record the claim wrongly covered
    worst: dict[int, tuple[int, int]] = {
        claim_id: (commit_ts, ident)
        for claim_id, ident, commit_ts in db.execute(_IN_FLIGHT, {"tol": tolerance_ms})
    }
    never = db.execute(_NEVER_ARRIVED)
    pending = never.fetchone()
    oldest: tuple[int, int] | None = None  # (commit_ts, ident) among never-arrived so far
    for claim in claims:
        while pending is not None and pending[2] <= claim.claimed_at_ms:
            if oldest is None or pending[1] < oldest[0]:
                oldest = (pending[1], pending[0])
            pending = never.fetchone()
        if oldest is not None and oldest[0] <= claim.watermark_ms:
            current = worst.get(claim.id)
            if current is None or oldest[0] < current[0]:
                worst[claim.id] = oldest
    never.close()
    ahead = [(c, worst[c.id][1]) for c in claims if c.id in worst]
    examples = [_ahead_example(db, claim, ident, tolerance_ms) for claim, ident in ahead[:limit]]
    late_count = db.execute(f"SELECT COUNT(*) {_LATE}").fetchone()[0]
    late: list[dict[str, Any]] = []
    if late_count:
        late = _rows(
            db,
            f"""SELECT trace, key, s_pk AS partition_key, s_shard AS source_shard,
                       s_seq AS source_sequence_number, s_commit AS commit_ts,
                       s_arr AS source_arrival_ms
                {_LATE} ORDER BY s.s_arr LIMIT ?""",
            (limit,),
        )
    future = sum(1 for c in claims if c.watermark_ms > c.claimed_at_ms)
    return Anomaly(
        "checkpoint_ahead",
        len(ahead),
        tuple(examples),
        {
            "claims_checked": len(claims),
            "tolerance_ms": tolerance_ms,
            "late_records": late_count,
            "late_examples": [_clean(r) for r in late],
            "future_claims": future,
        },
    )


def _ahead_example(
    db: sqlite3.Connection, claim: Claim, ident: int, tolerance_ms: int
) -> dict[str, Any]:
    t, w = claim.claimed_at_ms, claim.watermark_ms
    missing = db.execute(
        """SELECT COUNT(*) FROM ids INDEXED BY ids_times
           WHERE s_n IS NOT NULL AND s_arr <= ? AND s_commit <= ?
             AND (t_arr IS NULL OR t_arr > ?)""",
        (t, w, t + tolerance_ms),
    ).fetchone()[0]
    record = _rows(
        db,
        """SELECT trace, key, s_pk AS partition_key, s_shard AS source_shard,
                  s_seq AS source_sequence_number, s_commit AS commit_ts,
                  s_arr AS source_arrival_ms, t_arr AS target_arrival_ms,
                  t_shard AS target_shard, t_seq AS target_sequence_number
           FROM ids WHERE ident = ?""",
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
