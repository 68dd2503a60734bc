"""The action log's part of ``verify.sqlite``: the log as read, the fold, the ledger, the lag.

Nothing here is held in Python beyond one batch or one key: the stream's records are appended
as they are read (``actions``, one row per record; ``ops``, one row per key an action touches),
the fold walks ``ops`` in (key, log order) and writes what the checks need per key:

- ``fold``: the key's final item (absent keys have no row), as a
  :class:`~verify.tables.store.TableStore` row plus the action that left it;
- ``states``: one row per op, the hash of the item it left (NULL: no item), so a table holding
  an earlier state of the key is found by hash (stale);
- ``adds``: each ADD's delta per attribute with the attribute's ``epoch`` (a put, delete or SET
  of the attribute starts a new one), and ``add_epochs`` the epoch the fold ends in, so a
  number off by deltas of the current epoch is a replayed ADD (double-applied).

Order: ``ord`` sorts as (shard generation, shard, integer sequence number), the log's order
for every key (all actions of a key go to one shard per generation, parents before children).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (ord TEXT PRIMARY KEY, shard TEXT NOT NULL,
    seq TEXT NOT NULL, partition_key TEXT, trace TEXT, action TEXT NOT NULL,
    n_ops INTEGER NOT NULL, commit_ts TEXT, arrival_ms INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS actions_trace ON actions (trace) WHERE trace IS NOT NULL;
CREATE TABLE IF NOT EXISTS malformed (ord TEXT PRIMARY KEY, shard TEXT NOT NULL,
    seq TEXT NOT NULL, partition_key TEXT, trace TEXT, error TEXT NOT NULL,
    data TEXT) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS malformed_trace ON malformed (trace) WHERE trace IS NOT NULL;
CREATE TABLE IF NOT EXISTS ops (key TEXT NOT NULL, ord TEXT NOT NULL, idx INTEGER NOT NULL,
    kind TEXT NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (key, ord, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fold (key TEXT PRIMARY KEY, hash INTEGER NOT NULL, body TEXT NOT NULL,
    trace TEXT, ord TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS states (key TEXT NOT NULL, ord TEXT NOT NULL, idx INTEGER NOT NULL,
    hash INTEGER, last INTEGER NOT NULL, PRIMARY KEY (key, ord, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS states_hash ON states (key, hash);
CREATE TABLE IF NOT EXISTS adds (key TEXT NOT NULL, attr TEXT NOT NULL, epoch INTEGER NOT NULL,
    ord TEXT NOT NULL, delta TEXT NOT NULL, PRIMARY KEY (key, attr, epoch, ord)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS add_epochs (key TEXT NOT NULL, attr TEXT NOT NULL,
    epoch INTEGER NOT NULL, PRIMARY KEY (key, attr)) WITHOUT ROWID;
-- The ledger's attempts at the actions stream, one row per trace: ok if any attempt was,
-- else unknown if any was, else fail; the acknowledged attempt's position kept.
CREATE TABLE IF NOT EXISTS ledger (trace TEXT PRIMARY KEY, key TEXT, op TEXT NOT NULL,
    status TEXT NOT NULL, shard TEXT, seq TEXT, commit_ms INTEGER,
    attempts INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lag (consumer TEXT NOT NULL, ts_ms INTEGER NOT NULL, shard TEXT,
    behind_ms INTEGER, applied_arrival_ms INTEGER);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
"""

UPSERT_LEDGER = """
INSERT INTO ledger VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)
ON CONFLICT (trace) DO UPDATE SET
    status = CASE WHEN status = 'ok' OR excluded.status = 'ok' THEN 'ok'
                  WHEN status = 'unknown' OR excluded.status = 'unknown' THEN 'unknown'
                  ELSE 'fail' END,
    shard = CASE WHEN excluded.status = 'ok' THEN COALESCE(excluded.shard, shard) ELSE shard END,
    seq = CASE WHEN excluded.status = 'ok' THEN COALESCE(excluded.seq, seq) ELSE seq END,
    commit_ms = COALESCE(commit_ms, excluded.commit_ms),
    attempts = attempts + 1
"""

BATCH = 5000
SEQ_DIGITS = 64  # Kinesis sequence numbers have up to 56 digits


def order_of(generation: int, shard: str, sequence_number: str) -> str:
    """Text that sorts as (generation, shard, integer sequence number): the log's order for
    every key (a key's actions are in one shard per generation), and unique per record
    (sequence numbers are unique per shard only: moto numbers each shard 1, 2, ...)."""
    seq = sequence_number.strip()
    digits = str(int(seq)) if seq.isdigit() else seq
    return f"{max(generation, 0):04d}:{shard}:{digits.rjust(SEQ_DIGITS, '0')}"


class ActionStore:
    """Batched writes of the log and the fold's results; the checks read :attr:`db`."""

    def __init__(self, path: Path | str, *, fresh: bool = True) -> None:
        self.path = None if str(path) == ":memory:" else Path(path)
        if fresh and self.path is not None:
            for suffix in ("", "-journal", "-wal"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-32768")
        self.db.execute("PRAGMA temp_store=FILE")
        self.db.executescript(SCHEMA)
        self._actions: list[tuple] = []
        self._ops: list[tuple] = []
        self._malformed: list[tuple] = []

    def write(self, sql: str, rows: list[tuple]) -> None:
        """``executemany`` in one transaction, then empties ``rows``."""
        if not rows:
            return
        self.db.execute("BEGIN")
        try:
            self.db.executemany(sql, rows)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        rows.clear()

    def add_action(self, action_row: tuple, op_rows: Iterable[tuple]) -> None:
        """One parsed record: (ord, shard, seq, partition key, trace, action, n_ops, commit,
        arrival) and its ops (key, ord, idx, kind, payload JSON). A record read twice (a
        shard read again) is kept once."""
        self._actions.append(action_row)
        self._ops.extend(op_rows)
        if len(self._ops) >= BATCH or len(self._actions) >= BATCH:
            self.flush()

    def add_malformed(self, row: tuple) -> None:
        """(ord, shard, seq, partition key, trace or None, error, data text)."""
        self._malformed.append(row)
        if len(self._malformed) >= BATCH:
            self.flush()

    def flush(self) -> None:
        self.write("INSERT OR IGNORE INTO actions VALUES (?,?,?,?,?,?,?,?,?)", self._actions)
        self.write("INSERT OR IGNORE INTO ops VALUES (?,?,?,?,?)", self._ops)
        self.write("INSERT OR IGNORE INTO malformed VALUES (?,?,?,?,?,?,?)", self._malformed)

    def add_ledger_rows(self, rows: Iterable[tuple]) -> int:
        """Rows of (trace, key, op, status, shard, seq, commit_ms)."""
        n, batch = 0, []
        for row in rows:
            batch.append(tuple(row))
            n += 1
            if len(batch) >= BATCH:
                self.write(UPSERT_LEDGER, batch)
        self.write(UPSERT_LEDGER, batch)
        return n

    def add_lag_rows(self, rows: Iterable[tuple]) -> int:
        """Rows of (consumer, ts_ms, shard, behind_ms, applied_arrival_ms)."""
        n, batch = 0, []
        for row in rows:
            batch.append(tuple(row))
            n += 1
            if len(batch) >= BATCH:
                self.write("INSERT INTO lag VALUES (?,?,?,?,?)", batch)
        self.write("INSERT INTO lag VALUES (?,?,?,?,?)", batch)
        return n

    def fold_rows(self, page: int = BATCH) -> Iterator[list[tuple]]:
        """The fold's items as TableStore rows (key, hash, body, trace), ``page`` at a time."""
        last = ""
        while True:
            rows = self.db.execute(
                "SELECT key, hash, body, trace FROM fold WHERE key > ? ORDER BY key LIMIT ?",
                (last, page),
            ).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def count(self, table: str) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def set_meta(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def get_meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.db.close()
