"""The postgres-cdc checks: SQL over a :class:`verify.cdc.store.CdcStore`'s connection.

Only this run's changes judge (``own``: this run's table, a trace of this run or none); other
tables' records and other runs' are foreign, counted in the details. With the ledger:

- lost: a committed statement (status ``ok``, ``rows`` 1) whose change is not in region A's
  stream (the example says whether B has it); and, from :mod:`verify.reconcile`'s A-to-B check,
  a change in A that B lacks once B settled. Each lost change counts once.
- phantom: a change whose statement (by trace; a delete by transaction id and key) is of a
  rolled-back transaction, changed no row, or is in no ledger at all (while this run's ledger
  exists). Counted once per change, wherever it appears.
- incomplete_transaction: a transaction (committed, or unknown and appearing) of which a stream
  holds some changes but not all: the missing keys and statements are named.
- reordered: per stream and key, at each change's last copy (a faithfully re-sent transaction is
  in order), a change after one with a later commit time, or after a later statement of its
  own transaction; plus the A-to-B check (B's order per key is A's).
- diverged: per stream and key, the fold (last change wins; a delete leaves nothing) is not the
  table's final row; plus copies in B whose bytes differ from A's.
- stale: not used. A key whose fold is an older version than the table is ``diverged`` (the
  example names the fold's and the table's traces, so which one is older can be followed).
- duplicated: a change with more than one copy in a stream (counted, not fatal by default).
- malformed: a record of the stream that is not a change record of the DMS shape.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from verify.cdc.records import iso_us
from verify.checks import EXAMPLES, Anomaly, _clean, _rows
from verify.model import ANOMALY_KINDS
from verify.reconcile import Reconciliation
from verify.schema import ODD

INCOMPLETE = "incomplete_transaction"
MALFORMED = "malformed"
KINDS = (*ANOMALY_KINDS, INCOMPLETE, MALFORMED)
REASONS = {
    "lost": "{n} committed change(s) are missing from region A's or region B's change stream",
    "phantom": "{n} change(s) in a stream come from a rolled-back transaction or from no "
    "statement of the ledger",
    "reordered": "{n} change(s) are out of commit order for their key (in a stream, or in B "
    "against A)",
    "diverged": "{n} key(s) of a stream's fold differ from the table (or copies differ from A)",
    INCOMPLETE: "{n} transaction(s) appear in a stream only in part",
    MALFORMED: "{n} record(s) in the change streams are not DMS-shaped change records",
}
NOT_USED = {
    "stale": "not used by postgres-cdc: a fold on an older version of a key is diverged",
    "looped": "does not apply to postgres-cdc (one direction, A -> B)",
}
REGIONS = ("a", "b")

DERIVED = """
DROP TABLE IF EXISTS rec_stmt; DROP TABLE IF EXISTS stmt_found; DROP TABLE IF EXISTS lastcopy;
DROP TABLE IF EXISTS txns; DROP TABLE IF EXISTS folds;
CREATE INDEX IF NOT EXISTS recs_trace ON recs (trace) WHERE trace IS NOT NULL;
CREATE INDEX IF NOT EXISTS recs_deletes ON recs (txn, key) WHERE op = 'delete';
CREATE TABLE txns AS SELECT txn, MIN(status) AS status, COUNT(*) AS stmts FROM stmts
    WHERE txn IS NOT NULL GROUP BY txn;
CREATE UNIQUE INDEX txns_txn ON txns (txn);
-- the statement that explains each change (a delete: the first delete of its key in its txn),
-- with what the checks read of it and its last copy's position in A and in B (NULL: no
-- copy: ids keeps them while reading), so each check scans one table
CREATE TABLE rec_stmt AS SELECT m.ident, m.key, m.txn, m.commit_us, m.stmt, s.status, s.rows,
        s.producer, s.seq, i.s_last_ord AS a_ord, i.t_last_ord AS b_ord
    FROM (SELECT r.ident, r.key, r.txn, r.commit_us, CASE WHEN r.op = 'delete' THEN
            (SELECT s.trace FROM stmts s WHERE s.txn = r.txn AND s.key = r.key
             AND s.op = 'delete' ORDER BY s.seq LIMIT 1) ELSE r.trace END AS stmt
          FROM recs r WHERE r.own = 1) AS m LEFT JOIN stmts s ON s.trace = m.stmt
    LEFT JOIN ids i ON i.ident = m.ident;
CREATE UNIQUE INDEX rec_stmt_ident ON rec_stmt (ident);
-- the change each statement that must (or may) appear made, and which streams hold it
CREATE TABLE stmt_found AS SELECT x.*, i.s_n IS NOT NULL AS in_a, i.t_n IS NOT NULL AS in_b
    FROM (SELECT s.trace, s.producer, s.seq, s.txn, s.key, s.op, s.status,
            CASE WHEN s.op = 'delete' THEN (SELECT r.ident FROM recs r WHERE r.txn = s.txn
                                            AND r.key = s.key AND r.op = 'delete')
            ELSE (SELECT r.ident FROM recs r WHERE r.trace = s.trace) END AS ident
          FROM stmts s WHERE s.rows = 1 AND s.status IN ('ok', 'unknown')) AS x
    LEFT JOIN ids i ON i.ident = x.ident;
CREATE INDEX stmt_found_txn ON stmt_found (txn, in_a, in_b) WHERE txn IS NOT NULL;
-- the last change of each key per stream (the fold), filled by the order pass
CREATE TABLE folds (region TEXT NOT NULL, key TEXT NOT NULL, ident INTEGER NOT NULL,
    PRIMARY KEY (region, key)) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Judgement:
    anomalies: dict[str, Anomaly]
    details: dict[str, Any] = field(default_factory=dict)


def _where(db: sqlite3.Connection, region: str, ord_: int | None, ident: int) -> dict[str, Any]:
    """Where a change's copy at position ``ord_`` of a stream is: looked for in the shard of
    its first copy (A) or last copy (B), else in every shard."""
    if ord_ is None:
        return {}
    found = db.execute("SELECT CASE WHEN ? = 'a' THEN s_shard ELSE t_last_shard END FROM ids "
                       "WHERE ident = ?", (region, ident)).fetchone()  # fmt: skip
    row = db.execute("SELECT shard, seq FROM changes WHERE region = ? AND shard = ? AND ord = ? "
                     "AND ident = ?", (region, found and found[0], ord_, ident)).fetchone()  # fmt: skip
    if row is None:
        row = db.execute("SELECT shard, seq FROM changes WHERE region = ? AND ord = ? AND "
                         "ident = ? LIMIT 1", (region, ord_, ident)).fetchone()  # fmt: skip
    return {"stream": region.upper(), "shard": row[0], "sequence_number": row[1]} if row else {}


def _positions(db: sqlite3.Connection, ident: int) -> dict[str, Any]:
    """Where a change's first copy is in each stream (shard#sequence number), and copies."""
    row = db.execute("SELECT s_shard, s_seq, s_n, t_shard, t_seq, t_n FROM ids WHERE ident = ?",
                     (ident,)).fetchone()  # fmt: skip
    if row is None:
        return {"in_a": False, "in_b": False}
    return _clean({"in_a": row[2] is not None, "in_b": row[5] is not None,
                   "a_shard": row[0], "a_sequence_number": row[1], "a_copies": row[2],
                   "b_shard": row[3], "b_sequence_number": row[4], "b_copies": row[5]})  # fmt: skip


_LOST_FROM_A = "FROM stmt_found s WHERE s.status = 'ok' AND NOT s.in_a"


def check_lost(db: sqlite3.Connection, rec: Reconciliation, limit: int) -> Anomaly:
    n_a = db.execute(f"SELECT COUNT(*) {_LOST_FROM_A}").fetchone()[0]
    examples = [
        _clean({"txn": txn, "key": key, "trace": trace, "op": op, "statement_seq": seq,
                "producer": producer, "in_a": False, "in_b": bool(in_b),
                "explanation": f"committed {op} of key {key} (txn {txn}, statement {trace}) "
                f"is not in region A's stream" + (" (region B has it)" if in_b else "")})
        for trace, producer, seq, txn, key, op, in_b in db.execute(
            f"SELECT s.trace, s.producer, s.seq, s.txn, s.key, s.op, s.in_b {_LOST_FROM_A} "
            "ORDER BY s.producer, s.seq LIMIT ?", (limit,))
    ]  # fmt: skip
    in_b = rec.anomalies["lost"]
    for example in in_b.examples[: max(0, limit - len(examples))]:
        examples.append(_enrich(db, example, "in region A's stream and missing from region B's"))
    return Anomaly("lost", n_a + in_b.count, tuple(examples), {
        "committed_missing_from_a": n_a, "missing_from_b_after_settling": in_b.count,
        "a_to_b": in_b.details})  # fmt: skip


def _enrich(db: sqlite3.Connection, example: dict[str, Any], what: str) -> dict[str, Any]:
    """A kinesis example (source = A, target = B) with the change's txn, op and statement."""
    shard, seq = example.get("source_shard"), example.get("source_sequence_number")
    row = db.execute(
        """SELECT r.txn, r.op, r.key, r.trace, m.stmt FROM changes c JOIN recs r ON r.ident =
           c.ident LEFT JOIN rec_stmt m ON m.ident = r.ident WHERE c.region = 'a' AND
           c.shard = ? AND c.seq = ?""", (shard, seq)).fetchone()  # fmt: skip
    if row is None:
        return {**example, "explanation": f"a record {what} ({shard}#{seq})"}
    txn, op, key, trace, stmt = row
    return _clean({**example, "txn": txn, "op": op, "key": key, "trace": trace,
                   "statement": stmt, "explanation": f"{op} of key {key} (txn {txn}) is {what} "
                   f"(A {shard}#{seq})"})  # fmt: skip


_PHANTOM = """FROM rec_stmt m LEFT JOIN txns t ON t.txn = m.txn
    WHERE m.stmt IS NULL OR m.status IS NULL OR m.status = 'fail' OR m.rows = 0"""


def check_phantom(db: sqlite3.Connection, limit: int) -> Anomaly:
    counts = dict(db.execute(
        f"""SELECT CASE WHEN m.status = 'fail' OR (m.status IS NULL AND t.status = 'fail')
                   THEN 'rolled_back' WHEN m.rows = 0 THEN 'statement_changed_nothing'
                   ELSE 'unexplained' END AS why, COUNT(*) {_PHANTOM} GROUP BY why"""))  # fmt: skip
    examples = []
    for ident, op, txn, key, trace, stmt, status, rows, t_status in db.execute(
        f"SELECT m.ident, r.op, m.txn, m.key, r.trace, m.stmt, m.status, m.rows, t.status "
        f"{_PHANTOM.replace('FROM rec_stmt m', 'FROM rec_stmt m JOIN recs r USING (ident)')} "
        "ORDER BY m.txn, m.key LIMIT ?", (limit,)
    ):  # fmt: skip
        if status == "fail" or (status is None and t_status == "fail"):
            why = f"transaction {txn} was rolled back (ledger status fail)"
        elif rows == 0:
            why = f"statement {stmt} changed no row"
        else:
            why = f"no ledger statement explains it (txn {txn} key {key})"
        examples.append(_clean({"txn": txn, "key": key, "op": op, "trace": trace,
                                "statement": stmt, **_positions(db, ident),
                                "explanation": f"{op} of key {key}: {why}"}))  # fmt: skip
    return Anomaly("phantom", sum(counts.values()), tuple(examples), counts)


def check_incomplete(db: sqlite3.Connection, limit: int) -> Anomaly:
    """Transactions of which a stream holds some changes but not all."""
    partial = db.execute(
        """WITH p AS (SELECT txn, COUNT(*) AS total, SUM(in_a) AS in_a, SUM(in_b) AS in_b
                      FROM stmt_found WHERE txn IS NOT NULL GROUP BY txn)
           SELECT p.txn, t.status, total, in_a, in_b FROM p JOIN txns t ON t.txn = p.txn
           WHERE (in_a > 0 AND in_a < total) OR (in_b > 0 AND in_b < total)
           ORDER BY CAST(p.txn AS INTEGER)"""
    )  # fmt: skip
    count, examples = 0, []
    for txn, status, total, in_a, in_b in partial:
        count += 1
        if len(examples) >= limit:
            continue
        streams = [s for s, n in (("A", in_a), ("B", in_b)) if 0 < n < total]
        column = "in_a" if "A" in streams else "in_b"
        missing = _rows(db, f"""SELECT trace, key, op, seq FROM stmt_found
            WHERE txn = ? AND NOT {column} ORDER BY seq LIMIT ?""", (txn, limit))  # fmt: skip
        examples.append({
            "txn": txn, "status": status, "streams": streams, "changes": total,
            "in_a": in_a, "in_b": in_b, "missing_keys": sorted({m["key"] for m in missing}),
            "missing_statements": missing,
            "explanation": f"transaction {txn} ({status}) has {min(in_a, in_b)} of its {total} "
            f"change(s) in stream(s) {', '.join(streams)}: all or nothing",
        })  # fmt: skip
    return Anomaly(INCOMPLETE, count, tuple(examples))


# one row per change of this run, in key order, with its last copy's position per stream
# (the identity's ``s_last_ord``/``t_last_ord``: kept by every upsert while reading)
_LAST = """SELECT key, ident, commit_us, txn, producer, seq, a_ord, b_ord FROM rec_stmt
    ORDER BY key"""
FOLD_BATCH = 5000


def _order_key(change: tuple) -> tuple:
    """(position, commit, txn, producer, statement seq, ident) with SQL's NULLs first."""
    ord_, commit_us, txn, producer, seq, ident = change
    return (ord_, commit_us, txn, producer is not None, producer or "", seq is not None,
            seq or 0, ident)  # fmt: skip


@dataclass(slots=True)
class OrderPass:
    """Per stream: out-of-order changes (count, the first ``limit`` as (region, key, change,
    change before it), each change as (ord, commit, txn, producer, seq, ident))."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REGIONS, 0))
    found: dict[str, list] = field(default_factory=lambda: {r: [] for r in REGIONS})


def order_pass(db: sqlite3.Connection, limit: int) -> OrderPass:
    """Per stream and key, each change at its last copy in stream order: a change committed
    earlier than the one before it, or an earlier statement of the same transaction, is out of
    order; the key's last change is its fold (into ``folds``). One pass in key order; only
    one key's changes are held at a time."""
    out, folds = OrderPass(), []
    per_key: list[tuple] = []
    key = None

    def close_key() -> None:
        for r, at in (("a", 6), ("b", 7)):
            copies = [(row[at], *row[2:6], row[1]) for row in per_key if row[at] is not None]
            if not copies:
                continue
            try:
                copies.sort()
            except TypeError:  # a NULL producer or seq beside a value at an equal position
                copies.sort(key=_order_key)
            for before, row in zip(copies, copies[1:], strict=False):
                if row[1] < before[1] or (row[2] == before[2] and row[3] == before[3]
                                          and row[4] is not None and before[4] is not None
                                          and row[4] < before[4]):  # fmt: skip
                    out.counts[r] += 1
                    if len(out.found[r]) < limit:
                        out.found[r].append((r, key, row, before))
            folds.append((r, key, copies[-1][5]))
        per_key.clear()
        if len(folds) >= FOLD_BATCH:
            db.executemany("INSERT INTO folds VALUES (?,?,?)", folds)
            folds.clear()

    own_transaction = not db.in_transaction
    if own_transaction:
        db.execute("BEGIN")
    for row in db.execute(_LAST):
        if row[0] != key:
            if per_key:
                close_key()
            key = row[0]
        per_key.append(row)
    if per_key:
        close_key()
    db.executemany("INSERT INTO folds VALUES (?,?,?)", folds)
    if own_transaction:
        db.execute("COMMIT")
    return out


def check_reordered(db: sqlite3.Connection, rec: Reconciliation, limit: int,
                    order: OrderPass) -> Anomaly:  # fmt: skip
    n, examples = sum(order.counts.values()), []
    for region, key, row, before in (*order.found["a"], *order.found["b"]):
        if len(examples) >= limit:
            break
        this, prior = (_change(db, region, c[0], c[5]) for c in (row, before))
        examples.append({
            "stream": region.upper(), "key": key, "record": this, "after": prior,
            "explanation": f"in stream {region.upper()}, key {key}: txn {this['txn']} "
            f"(committed {this['commit']}) comes after txn {prior['txn']} (committed "
            f"{prior['commit']})" + (" out of statement order" if this["txn"] == prior["txn"]
                                     else ""),
        })  # fmt: skip
    b_vs_a = rec.anomalies["reordered"]
    examples += [_enrich(db, e, "out of A's order in region B") for e in b_vs_a.examples]
    return Anomaly("reordered", n + b_vs_a.count, tuple(examples[:limit]), {
        "within_a_stream": n, "b_against_a": b_vs_a.count, **b_vs_a.details})  # fmt: skip


def _change(db: sqlite3.Connection, region: str, ord_: int | None,
            ident: int) -> dict[str, Any]:  # fmt: skip
    txn, op, trace, commit_us, stmt = db.execute(
        "SELECT r.txn, r.op, r.trace, r.commit_us, m.stmt FROM recs r LEFT JOIN rec_stmt m "
        "ON m.ident = r.ident WHERE r.ident = ?", (ident,)).fetchone()  # fmt: skip
    return _clean({"txn": txn, "op": op, "trace": trace, "statement": stmt,
                   "commit": iso_us(commit_us), **_where(db, region, ord_, ident)})  # fmt: skip


_FOLD = """
SELECT f.key, f.ident, r.body, t.body, t.trace FROM folds f JOIN recs r ON r.ident = f.ident
  LEFT JOIN table_rows t ON t.key = f.key WHERE f.region = :region AND r.body IS NOT t.body
UNION ALL
SELECT t.key, NULL, NULL, t.body, t.trace FROM table_rows t
  WHERE t.own = 1 AND NOT EXISTS (SELECT 1 FROM folds l WHERE l.region = :region
                                  AND l.key = t.key)
"""


def check_diverged(db: sqlite3.Connection, rec: Reconciliation, limit: int,
                   table_read: bool) -> Anomaly:  # fmt: skip
    count, examples, per_stream = 0, [], {}
    for region in REGIONS if table_read else ():
        n = 0
        for key, ident, fold, table, table_trace in db.execute(_FOLD, {"region": region}):
            n += 1
            if len(examples) >= limit:
                continue
            last = None if ident is None else db.execute(
                "SELECT CASE WHEN ? = 'a' THEN s_last_ord ELSE t_last_ord END FROM ids "
                "WHERE ident = ?", (region, ident)).fetchone()  # fmt: skip
            example = _clean({
                "stream": region.upper(), "key": key, "table_trace": table_trace,
                "last_change": None if last is None else _change(db, region, last[0], ident),
                "explanation": f"stream {region.upper()} folds key {key} to "
                + ("nothing" if fold is None else "a different row")
                + (" while the table has no such key" if table is None else
                   f" while the table holds the row of {table_trace}"),
            })  # fmt: skip
            example["expected"] = None if table is None else json.loads(table)
            example["found"] = None if fold is None else json.loads(fold)
            examples.append(example)
        per_stream[region.upper()] = n
        count += n
    copies = rec.anomalies["diverged"]
    examples += [_enrich(db, e, "differently copied to region B") for e in copies.examples]
    return Anomaly("diverged", count + copies.count, tuple(examples[:limit]), {
        "fold_against_table_per_stream": per_stream, "copies_differ": copies.count,
        "table_read": table_read})  # fmt: skip


def check_duplicated(db: sqlite3.Connection, limit: int) -> Anomaly:
    # ids_odd lists the identities with more than one copy (among others): no full scan
    sql = f"""FROM ids i INDEXED BY ids_odd JOIN recs r ON r.ident = i.ident WHERE {ODD}
             AND r.own = 1 AND (i.s_n > 1 OR i.t_n > 1)"""
    n, extra_a, extra_b = db.execute(
        f"SELECT COUNT(*), COALESCE(SUM(i.s_n - 1), 0), COALESCE(SUM(i.t_n - 1), 0) {sql}"
    ).fetchone()
    examples = [
        _clean({"txn": txn, "key": key, "op": op, "trace": trace, **_positions(db, ident),
                "explanation": f"{op} of key {key} (txn {txn}) has {s_n or 0} copies in A and "
                f"{t_n or 0} in B"})
        for ident, txn, key, op, trace, s_n, t_n in db.execute(
            f"SELECT r.ident, r.txn, r.key, r.op, r.trace, i.s_n, i.t_n {sql} ORDER BY i.s_ord "
            "LIMIT ?", (limit,))
    ]  # fmt: skip
    return Anomaly("duplicated", n, tuple(examples),
                   {"extra_copies_in_a": extra_a, "extra_copies_in_b": extra_b})  # fmt: skip


def check_malformed(db: sqlite3.Connection, limit: int) -> Anomaly:
    n = db.execute("SELECT COUNT(DISTINCT ident) FROM malformed").fetchone()[0]
    examples = [
        {"stream": region.upper(), "shard": shard, "sequence_number": seq, "partition_key": pk,
         "error": error, "data": data, "explanation": f"stream {region.upper()} {shard}#{seq}: "
         f"not a change record ({error})"}
        for region, shard, seq, pk, error, data in db.execute(
            "SELECT region, shard, seq, pk, error, data FROM malformed ORDER BY region, shard, ord "
            "LIMIT ?", (limit,))
    ]  # fmt: skip
    return Anomaly(MALFORMED, n, tuple(examples))


def judge(db: sqlite3.Connection, rec: Reconciliation, *, has_ledger: bool, table_read: bool,
          limit: int = EXAMPLES) -> Judgement:  # fmt: skip
    """Every check; ``rec`` is :func:`verify.reconcile.reconcile` of the same store (A -> B)."""
    db.executescript(DERIVED)
    found = {
        "lost": check_lost(db, rec, limit),
        "duplicated": check_duplicated(db, limit),
        "reordered": check_reordered(db, rec, limit, order_pass(db, limit)),
        "phantom": check_phantom(db, limit),
        "diverged": check_diverged(db, rec, limit, table_read),
        "checkpoint_ahead": rec.anomalies["checkpoint_ahead"],
        INCOMPLETE: check_incomplete(db, limit),
        MALFORMED: check_malformed(db, limit),
    }
    for kind, note in NOT_USED.items():
        found[kind] = Anomaly(kind, 0, (), {"note": note})
    if not has_ledger:
        for kind in ("phantom", INCOMPLETE):
            found[kind] = Anomaly(kind, 0, (), {"note": "not judged: no ledger"})
    foreign = dict(db.execute("SELECT region, n FROM foreign_changes"))
    foreign_own_table = dict(db.execute(
        "SELECT c.region, COUNT(*) FROM changes c JOIN recs r ON r.ident = c.ident "
        "WHERE r.own = 0 GROUP BY c.region"))  # fmt: skip
    details = {"foreign": {"other_tables": foreign, "other_runs": foreign_own_table,
                           "table_rows_of_other_runs": db.execute(
                               "SELECT COUNT(*) FROM table_rows WHERE own = 0").fetchone()[0]}}
    return Judgement({kind: found[kind] for kind in KINDS}, details)
