"""The table checks: each differing key (and each acknowledged write) judged once.

Only keys the digest comparison found differing are examined (:mod:`verify.tables.store`), so
the work is proportional to the differences, not the table. A's stream says which versions of
a key existed and in what order; a version is found in it by its trace (the write that made
it) or, for items without one, by the hash of its content (the stream's NewImage):

- lost: an acknowledged put or update whose trace never appears as a NewImage in A's stream
  (only when the stream was read whole, nothing trimmed); or a key A holds and B lacks.
  A ledger ``unknown`` write is never lost.
- phantom: a key B holds that A's table, A's stream and the ledger never had.
- stale: B holds a version A's stream has before A's current one; or B holds a key whose last
  change in A's stream is a REMOVE (and A lacks it).
- diverged: the two items differ and age does not explain it: the same trace with different
  content, a version A's stream never had, B ahead of A's own history.

Acknowledged deletes are checked through the final state only: a delete of an absent item
leaves no stream record, and a REMOVE record names no writer (it carries the old image, not
the deleter's trace). Keys whose every trace is another run's (and that no ledger row names)
are foreign: counted, never judged.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from verify.checks import EXAMPLES, Anomaly
from verify.model import ANOMALY_KINDS
from verify.tables.store import chunk_of

VALUE_CHARS = 4000  # an item larger than this is shown cut, as text
NOT_APPLICABLE = ("duplicated", "reordered", "checkpoint_ahead", "looped")
#: the verdict's reasons for the kinds a table pipeline judges (its anomalies are about keys:
#: lost also counts acknowledged writes A's stream never saw, hence "item(s)")
KEY_REASONS = {
    "lost": "{n} item(s) the source table holds or the ledger acknowledged are missing from "
    "the target table",
    "phantom": "{n} key(s) in the target table are in neither the source table, its stream "
    "nor the ledger",
    "stale": "{n} key(s) hold an older item in the target table than in the source (or one "
    "the source deleted)",
    "diverged": "{n} key(s) hold different items in the source and target tables",
}

_ROWS = """
SELECT d.key, a.trace, a.hash, a.body, b.trace, b.hash, b.body
FROM diff AS d
LEFT JOIN items_a AS a ON a.rowid = d.a_rid
LEFT JOIN items_b AS b ON b.rowid = d.b_rid
ORDER BY d.key
"""
_BY_TRACE = """SELECT ord, shard, seq, event, new_hash FROM changes
WHERE new_trace = ? AND key = ? ORDER BY ord DESC LIMIT 1"""
_BY_HASH = """SELECT ord, shard, seq, event, new_hash FROM changes
WHERE key = ? AND new_hash = ? ORDER BY ord DESC LIMIT 1"""
_LAST = """SELECT ord, shard, seq, event, new_hash FROM changes
WHERE key = ? ORDER BY ord DESC LIMIT 1"""
_AT = "chunk = ? AND key = ?"
_NEVER_IN_STREAM = """
SELECT l.trace, l.key, l.op, l.commit_ms FROM ledger AS l
WHERE l.status = 'ok' AND l.op IN ('put', 'update')
  AND NOT EXISTS (SELECT 1 FROM changes AS c WHERE c.new_trace = l.trace)
ORDER BY l.trace
"""


@dataclass(frozen=True, slots=True)
class Judgement:
    anomalies: dict[str, Anomaly]
    details: dict[str, Any] = field(default_factory=dict)


def plain_key(key: str) -> dict[str, Any]:
    """``{"pk": {"S": "42"}}`` as ``{"pk": "42"}``, for people."""
    try:
        wire = json.loads(key)
        return {k: (next(iter(v.values())) if isinstance(v, dict) and v else v)
                for k, v in wire.items()}  # fmt: skip
    except (ValueError, AttributeError, TypeError):
        return {"key": key}


def shown(body: str | None) -> Any:
    """An item's wire JSON as an example shows it (cut when large)."""
    if body is None:
        return None
    if len(body) > VALUE_CHARS:
        return body[:VALUE_CHARS] + "..."
    return json.loads(body)


def _change(row: tuple | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"shard": row[1], "sequence_number": row[2], "event": row[3]}


class _Tally:
    """Counts and the first examples of each kind, with a reason code per instance."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts = {k: 0 for k in ANOMALY_KINDS}
        self.examples: dict[str, list[dict[str, Any]]] = {k: [] for k in ANOMALY_KINDS}
        self.reasons: dict[str, dict[str, int]] = {k: {} for k in ANOMALY_KINDS}

    def add(self, kind: str, reason: str, example: dict[str, Any]) -> None:
        self.counts[kind] += 1
        self.reasons[kind][reason] = self.reasons[kind].get(reason, 0) + 1
        if len(self.examples[kind]) < self.limit:
            example = {"reason": reason, **example}
            self.examples[kind].append({k: v for k, v in example.items() if v is not None})

    def anomalies(self, notes: dict[str, str]) -> dict[str, Anomaly]:
        out = {}
        for kind in ANOMALY_KINDS:
            details: dict[str, Any] = dict(self.reasons[kind])
            if kind in notes:
                details = {"note": notes[kind]}
            out[kind] = Anomaly(kind, self.counts[kind], tuple(self.examples[kind]), details)
        return out


def judge(
    db: sqlite3.Connection,
    *,
    chunks: int,
    own_prefix: str | None = None,
    stream: bool = True,
    history_complete: bool = True,
    limit: int = EXAMPLES,
) -> Judgement:
    """Every check over a compared store (``diff`` filled). ``stream``: A's stream was read
    (else stale cannot be told and only lost, phantom and diverged are judged);
    ``history_complete``: it was read whole with nothing trimmed."""
    tally = _Tally(limit)
    foreign = 0

    def version(key: str, trace: str | None, digest: int) -> tuple | None:
        if not stream:
            return None
        if trace is not None:
            found = db.execute(_BY_TRACE, (trace, key)).fetchone()
            if found is not None:
                return found
        return db.execute(_BY_HASH, (key, digest)).fetchone()

    def in_ledger(key: str) -> tuple | None:
        return db.execute(
            "SELECT trace, status, op FROM ledger WHERE key = ? ORDER BY trace LIMIT 1", (key,)
        ).fetchone()

    def is_foreign(key: str, traces: tuple[str | None, ...]) -> bool:
        if own_prefix is None or in_ledger(key) is not None:
            return False
        present = [t for t in traces if t is not None]
        return bool(present) and not any(t.startswith(own_prefix) for t in present)

    for key, a_trace, a_hash, a_body, b_trace, b_hash, b_body in db.execute(_ROWS):
        if is_foreign(key, (a_trace, b_trace)):
            foreign += 1
            continue
        a_version = version(key, a_trace, a_hash) if a_body is not None else None
        b_version = version(key, b_trace, b_hash) if b_body is not None else None
        last = db.execute(_LAST, (key,)).fetchone() if stream else None
        example = {
            "key": plain_key(key),
            "source_trace": a_trace,
            "target_trace": b_trace,
            "source_value": shown(a_body),
            "target_value": shown(b_body),
            "source_change": _change(a_version),
            "target_version_change": _change(b_version),
            "last_change": _change(last),
        }
        extra: dict[str, Any] = {}
        if b_body is None:
            kind, reason, why = "lost", "in_source_not_in_target", "A holds the key and B lacks it"
        elif a_body is None:
            if last is not None and last[3] == "REMOVE":
                kind, reason = "stale", "deleted_in_source"
                why = "B still holds a key whose last change in A's stream is a REMOVE"
            elif last is not None:
                kind, reason = "diverged", "source_stream_ends_on_a_write"
                why = "A's stream ends on a write of the key but A's table lacks it, and B holds it"
            else:
                mention = in_ledger(key)
                if mention is None:
                    kind, reason = "phantom", "never_in_source"
                    why = "B holds a key A's table, A's stream and the ledger never had"
                else:
                    kind, reason = "diverged", "version_source_never_had"
                    extra = {"ledger_trace": mention[0], "ledger_status": mention[1]}
                    why = "B holds a key the ledger names but A's table and stream never had"
        elif a_trace is not None and a_trace == b_trace:
            kind, reason = "diverged", "same_trace_different_content"
            why = "A and B hold the same write (same trace) with different content"
        elif b_version is not None and a_version is not None and b_version[0] < a_version[0]:
            kind, reason = "stale", "older_version"
            why = "B holds a version A's stream has before A's current one"
            if b_version[4] is not None and b_version[4] != b_hash:
                why += " (and its content differs from that version)"
        elif b_version is not None and a_version is not None:
            kind, reason = "diverged", "target_ahead_of_source"
            why = ("B holds a version A's stream has after A's current one (was A still being "
                   "written?)")  # fmt: skip
        elif b_version is not None:
            kind, reason = "diverged", "source_version_not_in_stream"
            why = ("A's current version is not in its stream (older than the stream, or "
                   "trimmed); B holds one that is")  # fmt: skip
        elif stream:
            kind, reason = "diverged", "version_source_never_had"
            why = "B holds a version A's stream never had"
        else:
            kind, reason = "diverged", "items_differ"
            why = "the items differ (A has no stream to tell older from different)"
        tally.add(kind, reason, {**example, **extra, "explanation": why})

    if stream and history_complete:
        for trace, key, op, commit_ms in db.execute(_NEVER_IN_STREAM):
            a = b = None
            if len(tally.examples["lost"]) < limit:  # the values only for the examples shown
                where = (chunk_of(key, chunks), key)
                a = db.execute(f"SELECT body FROM items_a WHERE {_AT}", where).fetchone()
                b = db.execute(f"SELECT body FROM items_b WHERE {_AT}", where).fetchone()
            tally.add("lost", "acknowledged_not_in_source_stream", {
                "key": plain_key(key), "trace": trace, "op": op, "commit_ms": commit_ms,
                "source_value": shown(a[0]) if a else None,
                "target_value": shown(b[0]) if b else None,
                "explanation": f"an acknowledged {op} never appears as a NewImage in A's stream",
            })  # fmt: skip
    notes = {kind: "does not apply to a table pipeline" for kind in NOT_APPLICABLE}
    if not stream:
        notes["stale"] = "not judged: A's table has no stream to order versions by"
    details = {"foreign_keys": foreign}
    if stream and not history_complete:
        details["note"] = (
            "A's stream was trimmed or not read whole: acknowledged writes were not looked "
            "for in it (lost is judged on the tables only)"
        )
    return Judgement(tally.anomalies(notes), details)
