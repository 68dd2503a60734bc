"""The table pipelines' part of ``verify.sqlite``: both tables' items, A's stream, the ledger.

Tables are compared without holding either in memory: each item is appended with its chunk
(the key's CRC-32 mod ``chunks``), and while rows are stored each side keeps one digest per
chunk (the XOR of its items' 64-bit hashes, and a count). Equal chunks are equal with
overwhelming probability, so per-key comparison runs only inside chunks whose digests differ:
one sequential pass over each table picks their rows out (no index over the whole table is
ever built: sorting it would cost more than the comparison), and the keys found differing go
to ``diff`` with the row ids of both sides' items. A settle pass re-reads only those keys and
updates items and digests in place (XOR out the old hash, XOR in the new), so comparing again
costs as much as the keys still differing.

Items are kept as their canonical wire JSON, so counterexamples can show both regions' values.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from zlib import crc32

from verify.tables.stream_reader import Change

CHUNKS = 4096
SIDES = ("a", "b")
_MASK = (1 << 64) - 1

SCHEMA = """
-- Heap tables: the scans append; items are found again by the row ids kept in diff.
CREATE TABLE IF NOT EXISTS items_a (chunk INTEGER NOT NULL, key TEXT NOT NULL,
    hash INTEGER NOT NULL, trace TEXT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items_b (chunk INTEGER NOT NULL, key TEXT NOT NULL,
    hash INTEGER NOT NULL, trace TEXT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (side TEXT NOT NULL, chunk INTEGER NOT NULL,
    digest INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (side, chunk)) WITHOUT ROWID;
-- A's stream: one row per change; ord sorts as (shard generation, integer sequence number).
CREATE TABLE IF NOT EXISTS changes (key TEXT NOT NULL, ord TEXT NOT NULL, shard TEXT NOT NULL,
    seq TEXT NOT NULL, event TEXT NOT NULL, new_trace TEXT, old_trace TEXT, new_hash INTEGER,
    approx_ms INTEGER, PRIMARY KEY (key, ord)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS changes_trace ON changes (new_trace) WHERE new_trace IS NOT NULL;
-- The ledger's attempts at the table, one row per trace: ok if any attempt was, else unknown
-- if any was, else fail.
CREATE TABLE IF NOT EXISTS ledger (trace TEXT PRIMARY KEY, key TEXT NOT NULL, op TEXT NOT NULL,
    status TEXT NOT NULL, commit_ms INTEGER, attempts INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ledger_key ON ledger (key);
CREATE TABLE IF NOT EXISTS diff (key TEXT PRIMARY KEY, chunk INTEGER NOT NULL, a_rid INTEGER,
    b_rid INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
"""

UPSERT_LEDGER = """
INSERT INTO ledger VALUES (?1, ?2, ?3, ?4, ?5, 1)
ON CONFLICT (trace) DO UPDATE SET
    status = CASE WHEN status = 'ok' OR excluded.status = 'ok' THEN 'ok'
                  WHEN status = 'unknown' OR excluded.status = 'unknown' THEN 'unknown'
                  ELSE 'fail' END,
    commit_ms = COALESCE(commit_ms, excluded.commit_ms),
    attempts = attempts + 1
"""

# XOR in SQL (which has none): (x | y) & ~(x & y), exact on 64-bit two's complement.
_FOLD_DIGEST = """
INSERT INTO chunks VALUES (?, ?, ?, ?) ON CONFLICT (side, chunk) DO UPDATE SET
    digest = (digest | excluded.digest) & ~(digest & excluded.digest), n = n + excluded.n
"""
_DIFFERING_CHUNKS = """
SELECT a.chunk AS chunk FROM chunks AS a WHERE a.side = 'a' AND NOT EXISTS (
    SELECT 1 FROM chunks AS b WHERE b.side = 'b' AND b.chunk = a.chunk
        AND b.digest = a.digest AND b.n = a.n)
UNION
SELECT b.chunk FROM chunks AS b WHERE b.side = 'b' AND NOT EXISTS (
    SELECT 1 FROM chunks AS a WHERE a.side = 'a' AND a.chunk = b.chunk)
"""
# The rows of the chunks listed in temp.dchunks, one pass over each table, then the keys that
# differ between them.
_PICK = """
CREATE TEMP TABLE pick_{side} AS SELECT rowid AS rid, chunk, key, hash FROM items_{side}
WHERE chunk IN (SELECT chunk FROM temp.dchunks)
"""
_DIFFERING_KEYS = """
INSERT OR IGNORE INTO diff (key, chunk, a_rid, b_rid)
SELECT a.key, a.chunk, a.rid, b.rid FROM temp.pick_a AS a LEFT JOIN temp.pick_b AS b
    ON b.chunk = a.chunk AND b.key = a.key
WHERE b.key IS NULL OR b.hash != a.hash
UNION ALL
SELECT b.key, b.chunk, NULL, b.rid FROM temp.pick_b AS b LEFT JOIN temp.pick_a AS a
    ON a.chunk = b.chunk AND a.key = b.key
WHERE a.key IS NULL
"""

ItemRow = tuple[str, int, str, "str | None"]  # key, hash, body, trace


def chunk_of(key: str, chunks: int = CHUNKS) -> int:
    """The key's chunk: its CRC-32 mod ``chunks`` (cheap, the same in every process)."""
    return crc32(key.encode()) % chunks


def _signed(value: int) -> int:
    value &= _MASK
    return value - (1 << 64) if value >= 1 << 63 else value


class TableStore:
    """Batched writes from reader threads (serialised by a lock) and the comparison."""

    def __init__(self, path: Path | str, *, fresh: bool = True, chunks: int = CHUNKS) -> None:
        self.path = None if str(path) == ":memory:" else Path(path)
        if fresh and self.path is not None:
            for suffix in ("", "-journal", "-wal"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
        self.db.execute("PRAGMA temp_store=FILE")
        self.db.executescript(SCHEMA)
        self.lock = threading.RLock()
        stored = self.get_meta("chunks")
        self.chunks = int(stored) if stored and not fresh else chunks
        self.set_meta("chunks", str(self.chunks))
        # Per side: chunk -> [xor of hashes, count], folded into the chunks table by
        # flush_digests (at most ``chunks`` entries each, whatever the table's size).
        self._digests: dict[str, dict[int, list[int]]] = {s: {} for s in SIDES}

    # ------------------------------------------------------------------ writing

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def add_items(self, side: str, rows: Iterable[ItemRow]) -> int:
        """Rows of (key, hash, body, trace) read from one side's table (each key once)."""
        chunks, digests = self.chunks, self._digests[side]
        batch = []
        append, get = batch.append, digests.get
        for key, digest, body, trace in rows:
            chunk = crc32(key.encode()) % chunks
            append((chunk, key, digest, trace, body))
            acc = get(chunk)
            if acc is None:
                digests[chunk] = [digest, 1]
            else:
                acc[0] ^= digest
                acc[1] += 1
        with self.transaction() as db:
            db.executemany(f"INSERT INTO items_{side} VALUES (?,?,?,?,?)", batch)
        return len(batch)

    def flush_digests(self) -> None:
        """Fold the digests accumulated while storing into the chunks table."""
        with self.transaction() as db:
            for side in SIDES:
                pending = self._digests[side]
                db.executemany(
                    _FOLD_DIGEST,
                    [(side, c, _signed(d), n) for c, (d, n) in pending.items()],
                )
                pending.clear()

    def _row_id(self, side: str, key: str, chunk: int) -> int | None:
        """Where ``key``'s item is on one side: diff knows for every differing key; anything
        else costs a pass over the table (never on the comparison's path)."""
        known = self.db.execute(f"SELECT {side}_rid FROM diff WHERE key = ?", (key,)).fetchone()
        if known is not None:
            return known[0]
        row = self.db.execute(
            f"SELECT rowid FROM items_{side} WHERE chunk = ? AND key = ?", (chunk, key)
        ).fetchone()
        return row[0] if row else None

    def replace_items(self, side: str, keys: Sequence[str], rows: Iterable[ItemRow]) -> None:
        """A re-read of ``keys`` on one side: ``rows`` are the items found (a key not among
        them is absent now). Items, digests and diff's row ids are updated in place."""
        found = {row[0]: row for row in rows}
        table, chunks = f"items_{side}", self.chunks
        with self.transaction() as db:
            for key in keys:
                chunk = crc32(key.encode()) % chunks
                rid = self._row_id(side, key, chunk)
                old = None
                if rid is not None:
                    old = db.execute(f"SELECT hash FROM {table} WHERE rowid = ?", (rid,)).fetchone()
                new = found.get(key)
                if old is None and new is None:
                    continue
                if old is not None and new is not None and old[0] == new[1]:
                    continue
                delta, count, new_rid = 0, 0, None
                if old is not None:
                    delta ^= old[0]
                    count -= 1
                    db.execute(f"DELETE FROM {table} WHERE rowid = ?", (rid,))
                if new is not None:
                    delta ^= new[1]
                    count += 1
                    new_rid = db.execute(
                        f"INSERT INTO {table} VALUES (?,?,?,?,?)",
                        (chunk, key, new[1], new[3], new[2]),
                    ).lastrowid
                db.execute(f"UPDATE diff SET {side}_rid = ? WHERE key = ?", (new_rid, key))
                db.execute(_FOLD_DIGEST, (side, chunk, _signed(delta), count))

    def add_changes(self, changes: Iterable[Change]) -> None:
        rows = [
            (c.key, c.order, c.shard, c.sequence_number, c.event, c.new_trace, c.old_trace,
             c.new_hash, c.approx_ms)
            for c in changes
        ]  # fmt: skip
        with self.transaction() as db:
            # A shard read again after a trimmed position may repeat a change: kept once.
            db.executemany("INSERT OR IGNORE INTO changes VALUES (?,?,?,?,?,?,?,?,?)", rows)

    def add_ledger_rows(self, rows: Iterable[tuple]) -> int:
        """Rows of (trace, key, op, status, commit_ms); key as the items' key JSON."""
        n, batch = 0, []
        for row in rows:
            batch.append(tuple(row))
            if len(batch) >= 5000:
                n += self._ledger_batch(batch)
        return n + self._ledger_batch(batch)

    def _ledger_batch(self, batch: list[tuple]) -> int:
        n = len(batch)
        if n:
            with self.transaction() as db:
                db.executemany(UPSERT_LEDGER, batch)
            batch.clear()
        return n

    def set_meta(self, name: str, value: str) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def get_meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ comparing

    def compare(self) -> dict[str, int]:
        """Fill ``diff`` from the chunks whose digests differ; the figures of the comparison."""
        self.flush_digests()
        with self.transaction() as db:
            db.execute("DELETE FROM diff")
            for name in ("dchunks", "pick_a", "pick_b"):
                db.execute(f"DROP TABLE IF EXISTS temp.{name}")
            db.execute(f"CREATE TEMP TABLE dchunks AS {_DIFFERING_CHUNKS}")
            differing = db.execute("SELECT COUNT(*) FROM temp.dchunks").fetchone()[0]
            for side in SIDES:
                db.execute(_PICK.format(side=side))
                db.execute(f"CREATE INDEX temp.pick_{side}_ck ON pick_{side} (chunk, key)")
            db.execute(_DIFFERING_KEYS)
            compared = db.execute("SELECT COUNT(*) FROM temp.pick_a").fetchone()[0]
            compared += db.execute("SELECT COUNT(*) FROM temp.pick_b").fetchone()[0]
            for name in ("dchunks", "pick_a", "pick_b"):
                db.execute(f"DROP TABLE temp.{name}")
        chunks = self.db.execute("SELECT COUNT(DISTINCT chunk) FROM chunks").fetchone()[0]
        return {
            "chunks": self.chunks,
            "chunks_compared": chunks,
            "chunks_differing": differing,
            "items_compared_per_key": compared,
            "differing_keys": self.differing(),
        }

    def recompare(self, keys: Sequence[str]) -> int:
        """Compare ``keys`` again (after :meth:`replace_items`); the number still differing."""
        with self.transaction() as db:
            for key in keys:
                rids = db.execute("SELECT a_rid, b_rid FROM diff WHERE key = ?", (key,)).fetchone()
                if rids is None:
                    continue
                hashes = [
                    None if rid is None else db.execute(
                        f"SELECT hash FROM items_{side} WHERE rowid = ?", (rid,)
                    ).fetchone()
                    for side, rid in zip(SIDES, rids, strict=True)
                ]  # fmt: skip
                if hashes[0] == hashes[1]:
                    db.execute("DELETE FROM diff WHERE key = ?", (key,))
        return self.differing()

    def differing(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM diff").fetchone()[0]

    def differing_keys(self, page: int = 1000) -> Iterator[list[str]]:
        """The differing keys in key order, ``page`` at a time; the caller may update ``diff``
        between pages (each page starts after the last key of the one before)."""
        last = ""
        while True:
            keys = [row[0] for row in self.db.execute(
                "SELECT key FROM diff WHERE key > ? ORDER BY key LIMIT ?", (last, page)
            )]  # fmt: skip
            if not keys:
                return
            yield keys
            last = keys[-1]

    def count(self, side: str) -> int:
        return self.db.execute(
            "SELECT COALESCE(SUM(n), 0) FROM chunks WHERE side = ?", (side,)
        ).fetchone()[0]

    def close(self) -> None:
        self.db.close()
