"""Checkpoint-ahead: was every watermark claim true when it was made?

A claim (t, W) says: at wall time t the target held every source record with commit timestamp
<= W. It is false ("ahead") if some source record with commit_ts <= W had reached the source by t
(source arrival <= t) but reached the target only after t + tolerance, or never. Records with
commit_ts <= W that reached the *source* after t are "late": the claim could not know them, so
they are reported as information, not as an anomaly.

Claims come from two places. The replicator's own ``claims.jsonl`` gives t exactly. Verify
does not take the replicator's word for it, though: it (and the orchestrator during a run)
samples the target's checkpoint table and files each new value W it sees at H with L, the time
of the previous look (the value appeared in between; at the first look ever, L = H). Such a claim
is held to: every record of its direction with commit <= W that reached the source by L was in
the target by H. ``claimed_at_ms`` is L, ``seen_at_ms`` is H (equal for logged claims). Claims
are scoped by direction (``source_side``) and judge only this run's records of that direction.

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
from verify.claims import OBSERVED_ORIGIN
from verify.schema import ODD, dead_lettered
from xrh.contracts import iso_ms


@dataclass(frozen=True, slots=True)
class Claim:
    id: int
    claimed_at_ms: int
    watermark_ms: int
    replicator_id: str | None
    origin: str
    seen_at_ms: int
    source_side: str


def _claims(db: sqlite3.Connection) -> list[Claim]:
    return [
        Claim(*row)
        for row in db.execute(
            "SELECT id, claimed_at_ms, watermark_ms, replicator_id, origin, seen_at_ms, "
            "source_side FROM claims ORDER BY claimed_at_ms, id"
        )
    ]


# All three read the narrow partial index ids_times (source arrival, target arrival, commit),
# never the wide rows; the never-arrived records are among the few rows of ids_odd.
_IN_FLIGHT = """
    SELECT c.id, s.ident, MIN(s.s_commit)
    FROM ids AS s INDEXED BY ids_times CROSS JOIN claims AS c
    WHERE s.s_n IS NOT NULL AND s.s_commit IS NOT NULL AND s.t_arr IS NOT NULL
      AND s.own IS 1 AND s.t_arr - :tol > s.s_arr
      AND c.claimed_at_ms >= s.s_arr AND c.claimed_at_ms < s.t_arr - :tol
      AND c.seen_at_ms < s.t_arr - :tol
      AND c.watermark_ms >= s.s_commit AND c.source_side IS s.origin
    GROUP BY c.id
"""
# A dead-lettered poison record (with its data) is accounted for by the dead-letter sink, not
# by the target: a claim past it is not ahead.
_NEVER_ARRIVED = f"""
    SELECT ident, s_commit, s_arr, origin FROM ids INDEXED BY ids_odd
    WHERE {ODD} AND s_commit IS NOT NULL AND s_n IS NOT NULL AND t_n IS NULL AND own IS 1
      AND NOT {dead_lettered()}
    ORDER BY s_arr
"""
_LATE = """
    FROM ids AS s INDEXED BY ids_times
    WHERE s.s_n IS NOT NULL AND s.s_commit IS NOT NULL AND s.s_arr > s.s_commit
      AND s.own IS 1
      AND EXISTS (SELECT 1 FROM claims c
                  WHERE c.claimed_at_ms >= s.s_commit AND c.claimed_at_ms < s.s_arr
                    AND c.watermark_ms >= s.s_commit AND c.source_side IS s.origin)
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
    # per direction: (commit_ts, ident) of the oldest never-arrived record so far
    oldest_by_side: dict[str, tuple[int, int]] = {}
    for claim in claims:
        while pending is not None and pending[2] <= claim.claimed_at_ms:
            seen = oldest_by_side.get(pending[3])
            if seen is None or pending[1] < seen[0]:
                oldest_by_side[pending[3]] = (pending[1], pending[0])
            pending = never.fetchone()
        oldest = oldest_by_side.get(claim.source_side)
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
    last: dict[str, Claim] = {}
    for claim in claims:  # the newest claim of each direction, by when it was in force
        held = last.get(claim.source_side)
        if held is None or (claim.seen_at_ms, claim.watermark_ms) >= (
            held.seen_at_ms, held.watermark_ms
        ):
            last[claim.source_side] = claim
    return Anomaly(
        "checkpoint_ahead",
        len(ahead),
        tuple(examples),
        {
            "claims_checked": len(claims),
            "claims_ahead": len(ahead),
            "last_claims": [
                _claim_summary(db, claim, claim.id not in worst, tolerance_ms)
                for _, claim in sorted(last.items())
            ],
            "tolerance_ms": tolerance_ms,
            "late_records": late_count,
            "late_examples": [_clean(r) for r in late],
            "future_claims": future,
        },
    )


_PROVEN = f"""
    SELECT MIN(CASE WHEN (t_arr IS NULL AND NOT {dead_lettered()}) OR t_arr > :held_by
                    THEN s_commit END), MAX(s_commit)
    FROM ids INDEXED BY ids_times
    WHERE s_n IS NOT NULL AND s_arr <= :arrived_by AND s_commit IS NOT NULL AND own IS 1
      AND origin IS :side
"""


def _claim_summary(
    db: sqlite3.Connection, claim: Claim, held: bool, tolerance_ms: int
) -> dict[str, Any]:
    """Whether one claim held, and up to which commit timestamp the data proves the target
    complete when it was in force: just below the oldest record it lacked, else the newest
    record that had reached the source."""
    oldest_missing, newest = db.execute(
        _PROVEN,
        {"held_by": claim.seen_at_ms + tolerance_ms, "arrived_by": claim.claimed_at_ms,
         "side": claim.source_side},
    ).fetchone()  # fmt: skip
    proven = oldest_missing - 1 if oldest_missing is not None else newest
    return {
        "direction": f"{claim.source_side} -> {'b' if claim.source_side == 'a' else 'a'}",
        "origin": claim.origin,
        "claimed_at": iso_ms(claim.claimed_at_ms),
        "in_force_at": iso_ms(claim.seen_at_ms),
        "watermark": iso_ms(claim.watermark_ms),
        "watermark_ms": claim.watermark_ms,
        "held": held,
        "proven_to": None if proven is None else iso_ms(proven),
        "proven_to_ms": proven,
    }


def _ahead_example(
    db: sqlite3.Connection, claim: Claim, ident: int, tolerance_ms: int
) -> dict[str, Any]:
    t, w, seen = claim.claimed_at_ms, claim.watermark_ms, claim.seen_at_ms
    missing = db.execute(
        f"""SELECT COUNT(*) FROM ids INDEXED BY ids_times
           WHERE s_n IS NOT NULL AND s_arr <= ? AND s_commit <= ? AND own IS 1
             AND origin IS ? AND ((t_arr IS NULL AND NOT {dead_lettered()}) OR t_arr > ?)""",
        (t, w, claim.source_side, seen + tolerance_ms),
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
            "direction": f"{claim.source_side} -> {'b' if claim.source_side == 'a' else 'a'}",
            "claimed_at": iso_ms(t),
            "seen_at": iso_ms(seen) if seen != t else None,
            "watermark": iso_ms(w),
            "claimed_at_ms": t,
            "watermark_ms": w,
            "records_missing_at_claim": missing,
            "key": record["key"],
            "trace": record["trace"],
            "record": _clean(record),
            "explanation": (
                (
                    f"claimed at {iso_ms(t)}"
                    if claim.origin != OBSERVED_ORIGIN
                    else f"seen in the target's checkpoint table at {iso_ms(seen)}"
                    + (f" (set after {iso_ms(t)})" if t != seen else "")
                )
                + f" that the target held every record committed by {iso_ms(w)}; "
                f"{record['trace'] or 'a record'} (committed {iso_ms(record['commit_ts'])}) "
                f"was in the source by then but "
                + (
                    "never reached the target"
                    if record["target_arrival_ms"] is None
                    else f"reached the target only at {iso_ms(record['target_arrival_ms'])}"
                )
            ),
        }
    )
