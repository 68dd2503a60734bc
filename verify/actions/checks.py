"""The action log's checks: each region's table against the fold, and the ledger against the log.

Only keys the digest comparison left differing are examined (:mod:`verify.actions.compare`),
so the work is proportional to the differences. Per differing key, in this order:

- lost: the fold holds the key and the table lacks it; or (once, from the ledger) an
  acknowledged action whose trace never appears in the actions stream. ``unknown`` ledger
  rows are never lost.
- phantom: the table holds an item the fold does not: a key the log never touched (unless
  its trace names another run: foreign, counted), or one the log ends deleting whose item is
  none of the key's earlier states.
- stale: the table holds an earlier state of the key's fold (by hash), including an item the
  log later deleted.
- double_applied: every attribute that differs is a number off by one ADD delta of the key's
  current epoch for that attribute, or a sum of them (a replayed ADD, or a replayed run of
  them); ``trace`` and ``commitTimestamp`` may differ only if they name an action of that key.
- diverged: any other difference.

Examples name the region, the key, the action that left the fold's state (trace, shard,
sequence number) and the item expected and found (bookkeeping left out, numbers normalised).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from verify.actions.items import pk_of, plain_item, to_decimal
from verify.checks import EXAMPLES, Anomaly
from verify.model import ANOMALY_KINDS
from xrh.contracts import ITEM_COMMIT_TS, ITEM_KEY, ITEM_TRACE

DOUBLE_APPLIED = "double_applied"
KINDS = (*ANOMALY_KINDS, DOUBLE_APPLIED)
JUDGED = ("lost", "phantom", "stale", DOUBLE_APPLIED, "diverged")
KEPT_WHEN_NONE = ("expected", "found")  # None there says "absent"
SUBSET_CAP = 4096  # sums kept while looking for a subset of ADD deltas
REASONS = {
    "lost": "{n} acknowledged action(s) or folded item(s) are missing from the actions stream "
    "or a table",
    "phantom": "{n} item(s) in a table are not in the fold of the actions log",
    "stale": "{n} item(s) in a table hold an earlier state of their key's fold",
    DOUBLE_APPLIED: "{n} item(s) in a table count an ADD more than once (a replayed ADD)",
    "diverged": "{n} item(s) in a table differ from the fold of the actions log",
}

_ROWS = """
SELECT d.key, a.body, b.trace, b.hash, b.body FROM diff AS d
LEFT JOIN items_a AS a ON a.rowid = d.a_rid LEFT JOIN items_b AS b ON b.rowid = d.b_rid
ORDER BY d.key
"""
_LAST = """SELECT a.trace, a.shard, a.seq, a.action FROM states AS s
JOIN actions AS a ON a.ord = s.ord WHERE s.key = ? AND s.last = 1"""
_EARLIER = """SELECT a.trace, a.shard, a.seq, a.action FROM states AS s
JOIN actions AS a ON a.ord = s.ord WHERE s.key = ? AND s.hash = ? AND s.last = 0
ORDER BY s.ord DESC, s.idx DESC LIMIT 1"""
_TRACED = """SELECT 1 FROM states AS s JOIN actions AS a ON a.ord = s.ord
WHERE s.key = ? AND a.trace = ? LIMIT 1"""
_DELTAS = """SELECT d.delta, x.trace, x.shard, x.seq FROM adds AS d
JOIN add_epochs AS e ON e.key = d.key AND e.attr = d.attr AND e.epoch = d.epoch
JOIN actions AS x ON x.ord = d.ord WHERE d.key = ? AND d.attr = ? ORDER BY d.ord"""
_NOT_IN_STREAM = """
SELECT l.trace, l.key, l.op, l.shard, l.seq, l.commit_ms FROM ledger AS l
WHERE l.status = 'ok'
  AND NOT EXISTS (SELECT 1 FROM actions AS a WHERE a.trace = l.trace)
  AND NOT EXISTS (SELECT 1 FROM malformed AS m WHERE m.trace = l.trace)
ORDER BY l.trace
"""


class Tally:
    """Counts, the first examples of each kind, and a count per reason code."""

    def __init__(self, limit: int = EXAMPLES) -> None:
        self.limit = limit
        self.counts = {k: 0 for k in KINDS}
        self.examples: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
        self.reasons: dict[str, dict[str, int]] = {k: {} for k in KINDS}
        self.foreign = 0

    def add(self, kind: str, reason: str, example: dict[str, Any]) -> None:
        self.counts[kind] += 1
        self.reasons[kind][reason] = self.reasons[kind].get(reason, 0) + 1
        if len(self.examples[kind]) < self.limit:
            full = {"reason": reason, **example}
            self.examples[kind].append(
                {k: v for k, v in full.items() if v is not None or k in KEPT_WHEN_NONE}
            )

    def anomalies(self) -> dict[str, Anomaly]:
        out = {}
        for kind in KINDS:
            details: dict[str, Any] = dict(self.reasons[kind])
            if kind not in JUDGED:
                details = {"note": "does not apply to the action-log pipeline"}
            out[kind] = Anomaly(kind, self.counts[kind], tuple(self.examples[kind]), details)
        return out


@dataclass(frozen=True, slots=True)
class Judgement:
    anomalies: dict[str, Anomaly]
    details: dict[str, Any] = field(default_factory=dict)


def explain(diff: Decimal, deltas: list[Decimal]) -> list[int] | None:
    """Indices of ADD deltas whose sum is ``diff``: a contiguous run first (a replayed range
    of the log), else any subset while the sums stay few; None when none is found."""
    if diff == 0 or not deltas:
        return None
    seen: dict[Decimal, int] = {Decimal(0): -1}
    total = Decimal(0)
    for j, delta in enumerate(deltas):
        total += delta
        start = seen.get(total - diff)
        if start is not None:
            return list(range(start + 1, j + 1))
        seen[total] = j
    sums: dict[Decimal, tuple[int, ...]] = {Decimal(0): ()}
    for j, delta in enumerate(deltas):
        for reached, used in list(sums.items()):
            new = reached + delta
            if new == diff:
                return [*used, j]
            sums.setdefault(new, (*used, j))
        if len(sums) > SUBSET_CAP:
            return None
    return None


def _number(value: Any) -> Decimal | None:
    """A number attribute's value; None for anything else (a string of digits is no number)."""
    if isinstance(value, bool | str):
        return None
    return to_decimal(value)


def replayed_adds(
    fold: sqlite3.Connection, key: str, expected: dict[str, Any], found: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """Per differing attribute, the ADDs that explain it, when every difference is explained."""
    names = sorted(set(expected) | set(found))
    differing = [n for n in names if expected.get(n, ...) != found.get(n, ...)]
    explained = []
    for name in differing:
        if name in (ITEM_TRACE, ITEM_COMMIT_TS):
            continue
        want, have = _number(expected.get(name)), _number(found.get(name))
        if want is None or have is None:
            return None
        rows = fold.execute(_DELTAS, (key, name)).fetchall()
        used = explain(have - want, [Decimal(r[0]) for r in rows])
        if used is None:
            return None
        explained.append({
            "attribute": name, "expected": expected.get(name), "found": found.get(name),
            "off_by": float(have - want) if have != have.to_integral_value() else int(have - want),
            "replayed": [{"trace": rows[i][1], "shard": rows[i][2], "sequence_number": rows[i][3],
                          "delta": rows[i][0]} for i in used],
        })  # fmt: skip
    if not explained:
        return None
    trace = found.get(ITEM_TRACE)
    if trace != expected.get(ITEM_TRACE) and (
        not isinstance(trace, str) or fold.execute(_TRACED, (key, trace)).fetchone() is None
    ):
        return None
    return explained


def judge_table(
    fold: sqlite3.Connection, compared: sqlite3.Connection, tally: Tally, *, region: str,
    table: str, own_prefix: str | None = None,
) -> None:  # fmt: skip
    """Every differing key of one region's comparison store into ``tally``."""
    for key, exp_body, found_trace, found_hash, found_body in compared.execute(_ROWS):
        pk = pk_of(key)
        last = fold.execute(_LAST, (key,)).fetchone()
        expected, found = plain_item(exp_body), plain_item(found_body)
        example: dict[str, Any] = {
            "region": region, "table": table, "key": {ITEM_KEY: pk},
            "trace": last[0] if last else None, "action": last[3] if last else None,
            "shard": last[1] if last else None, "sequence_number": last[2] if last else None,
            "expected": expected, "found": found, "found_trace": found_trace,
        }  # fmt: skip
        if found is None:
            tally.add("lost", "in_fold_not_in_table", {**example, "explanation":
                      f"the fold holds the key and region {region}'s table lacks it"})  # fmt: skip
            continue
        earlier = fold.execute(_EARLIER, (key, found_hash)).fetchone()
        if earlier is not None:
            example["found_state_of"] = {
                "trace": earlier[0],
                "shard": earlier[1],
                "sequence_number": earlier[2],
                "action": earlier[3],
            }
            reason = "older_state" if expected is not None else "deleted_in_log"
            why = ("the table holds the state the key's fold had after an earlier action"
                   if expected is not None else
                   "the table still holds a state the log later deleted")  # fmt: skip
            tally.add("stale", reason, {**example, "explanation": why})
            continue
        if expected is None:
            if last is None:
                if own_prefix and found_trace and not found_trace.startswith(own_prefix):
                    tally.foreign += 1
                    continue
                tally.add("phantom", "never_in_log", {**example, "explanation":
                          "the table holds a key the actions log never touched"})  # fmt: skip
            else:
                tally.add("phantom", "deleted_in_log", {**example, "explanation":
                          "the log ends deleting the key; the table holds an item that was "
                          "never its state"})  # fmt: skip
            continue
        replays = replayed_adds(fold, key, expected, found)
        if replays is not None:
            tally.add(DOUBLE_APPLIED, "add_replayed", {**example, "attributes": replays,
                      "explanation": "numbers off by ADD deltas of the key's log: "
                      + ", ".join(f"{r['attribute']} {r['expected']} -> {r['found']}"
                                  for r in replays)})  # fmt: skip
            continue
        tally.add("diverged", "differs_from_fold", {**example, "explanation":
                  "the table's item is neither the fold's state nor an earlier one"})  # fmt: skip


def judge_ledger(fold: sqlite3.Connection, tally: Tally) -> None:
    """Acknowledged actions absent from the stream (by trace): lost before any consumer."""
    for trace, key, op, shard, seq, commit_ms in fold.execute(_NOT_IN_STREAM):
        tally.add("lost", "acknowledged_not_in_stream", {
            "region": "stream", "key": {ITEM_KEY: key}, "trace": trace, "op": op,
            "shard": shard, "sequence_number": seq, "commit_ms": commit_ms,
            "explanation": f"an acknowledged {op} action is not in the actions stream",
        })  # fmt: skip


def judge(
    fold: sqlite3.Connection, compared: dict[str, tuple[str, sqlite3.Connection]], *,
    own_prefix: str | None = None, limit: int = EXAMPLES,
) -> Judgement:  # fmt: skip
    """The ledger against the log, then each region's comparison store (``compared``:
    region -> (table, store connection) with ``diff`` filled)."""
    tally = Tally(limit)
    judge_ledger(fold, tally)
    per_region = {}
    for region, (table, db) in compared.items():
        before = dict(tally.counts)
        judge_table(fold, db, tally, region=region, table=table, own_prefix=own_prefix)
        per_region[region] = {k: tally.counts[k] - before[k] for k in JUDGED}
    return Judgement(tally.anomalies(), {"foreign_items": tally.foreign,
                                         "anomalies_per_region": per_region})  # fmt: skip
