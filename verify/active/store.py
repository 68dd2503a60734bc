"""The active-active part of ``verify.sqlite``: both tables, their stamps, the ledger, staging.

One :class:`~verify.tables.store.TableStore` holds region A's table as side ``a`` and region
B's as side ``b``, so the two tables are compared by chunked digests exactly as the table
pipelines compare theirs. What the store holds of an item is its *logical* value
(:func:`item_row`): bookkeeping attributes (``xrh_*``) left out, numbers normalised, and a
tombstone left out altogether, because a tombstone and an absent item both mean "deleted" and
must compare equal. What last-writer-wins needs beside the value goes to tables of its own in
the same file (so one file is one read, re-checkable from the store):

- ``stamps``: per side and key, the version's stamp, trace and whether it is a tombstone;
- ``aa_ledger``: the ledger's write attempts at the items table (region, op, status, stamp);
- ``winners``: per key the maximum (timestamp, region) of acknowledged writes, with how many
  writes share it and which ops they were (:func:`build_winners`);
- ``staging``: both staging streams' records, parsed (:mod:`verify.active.staging`);
- ``applied_lag``: the appliers' ``replication-lag.jsonl`` samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from verify.actions.items import KEY_NAMES, key_of, table_item
from verify.table_reader import traced_item_row
from verify.tables.store import TableStore
from xrh.active_active import ZERO, is_tombstone, stamp_of
from xrh.contracts import ITEM_TRACE

EXTRA_SCHEMA = """
CREATE TABLE IF NOT EXISTS aa_ledger (trace TEXT NOT NULL, key TEXT NOT NULL,
    region TEXT NOT NULL, op TEXT NOT NULL, status TEXT NOT NULL, commit_ts INTEGER,
    invoked_at INTEGER, completed_at INTEGER);
CREATE INDEX IF NOT EXISTS aa_ledger_stamp ON aa_ledger (key, commit_ts, region);
CREATE INDEX IF NOT EXISTS aa_ledger_invoked ON aa_ledger (key, invoked_at);
CREATE TABLE IF NOT EXISTS winners (key TEXT PRIMARY KEY, ts INTEGER NOT NULL,
    region TEXT NOT NULL, n INTEGER NOT NULL, ops TEXT NOT NULL, trace TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stamps (side TEXT NOT NULL, key TEXT NOT NULL, ts INTEGER NOT NULL,
    region TEXT NOT NULL, trace TEXT, tomb INTEGER NOT NULL, PRIMARY KEY (side, key))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staging (side TEXT NOT NULL, shard TEXT NOT NULL, seq TEXT NOT NULL,
    pk TEXT, origin TEXT, ts INTEGER, region TEXT, image_hash INTEGER, trace TEXT,
    src_shard TEXT, src_seq TEXT, created_ms INTEGER, arrival_ms INTEGER NOT NULL,
    error TEXT, PRIMARY KEY (side, shard, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS staging_change ON staging (side, pk, ts, region, image_hash);
CREATE TABLE IF NOT EXISTS applied_lag (direction TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    lag_ms INTEGER NOT NULL);
"""

# Rank 1 of each key's acknowledged stamps, (timestamp, region) descending: every write that
# shares the maximum (a delete whose DeleteItem found nothing has no stamp and did nothing).
_WINNERS = """
INSERT INTO winners
SELECT key, commit_ts, region, COUNT(DISTINCT trace), GROUP_CONCAT(DISTINCT op), MIN(trace)
FROM (SELECT key, commit_ts, region, op, trace,
             RANK() OVER (PARTITION BY key ORDER BY commit_ts DESC, region DESC) AS r
      FROM aa_ledger WHERE status = 'ok' AND commit_ts IS NOT NULL)
WHERE r = 1 GROUP BY key
"""

StampedRow = tuple[str, int, str, "str | None", int, str, int]


def item_row(item: dict[str, Any], key_names: tuple[str, ...] = KEY_NAMES) -> StampedRow:
    """A scanned item as (key, hash, logical body, trace, stamp ts, stamp region, tombstone):
    the ``row_of`` of :func:`verify.table_reader.scan_table` for active-active."""
    key, digest, body, trace = traced_item_row(table_item(item), key_names, ITEM_TRACE)
    stamp = stamp_of(item) or ZERO
    return key, digest, body, trace, stamp.ts, stamp.region, int(is_tombstone(item))


class ActiveStore(TableStore):
    """A :class:`TableStore` plus the stamps, ledger, winners, staging and lag tables."""

    def __init__(self, path: Path | str, *, fresh: bool = True) -> None:
        super().__init__(path, fresh=fresh)
        self.db.executescript(EXTRA_SCHEMA)

    def add_stamped(self, side: str, rows: Iterable[StampedRow]) -> int:
        """Scanned rows of one side: live items into the comparison, every stamp kept."""
        rows = list(rows)
        self.add_items(side, [r[:4] for r in rows if not r[6]])
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO stamps VALUES (?,?,?,?,?,?)",
                [(side, r[0], r[4], r[5], r[3], r[6]) for r in rows],
            )
        return len(rows)

    def replace_stamped(self, side: str, keys: list[str], rows: Iterable[StampedRow]) -> None:
        """A re-read of ``keys`` on one side (a key not among ``rows`` is absent now)."""
        rows = list(rows)
        self.replace_items(side, keys, [r[:4] for r in rows if not r[6]])
        with self.transaction() as db:
            db.executemany("DELETE FROM stamps WHERE side = ? AND key = ?",
                           [(side, k) for k in keys])  # fmt: skip
            db.executemany(
                "INSERT INTO stamps VALUES (?,?,?,?,?,?)",
                [(side, r[0], r[4], r[5], r[3], r[6]) for r in rows],
            )

    def add_ledger(self, rows: Iterable[tuple]) -> int:
        """Ledger rows (trace, partition key, region, op, status, commit_ts, invoked_at,
        completed_at); the key stored as the items' key JSON."""
        batch = [(r[0], key_of(str(r[1])), *r[2:]) for r in rows]
        with self.transaction() as db:
            db.executemany("INSERT INTO aa_ledger VALUES (?,?,?,?,?,?,?,?)", batch)
        return len(batch)

    def build_winners(self) -> int:
        with self.transaction() as db:
            db.execute("DELETE FROM winners")
            db.execute(_WINNERS)
        return self.db.execute("SELECT COUNT(*) FROM winners").fetchone()[0]

    def add_staging(self, rows: Iterable[tuple]) -> None:
        """Parsed staging records (a shard read again repeats records: each kept once)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO staging VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
            )

    def add_applied_lag(self, rows: Iterable[tuple]) -> int:
        rows = list(rows)
        with self.transaction() as db:
            db.executemany("INSERT INTO applied_lag VALUES (?,?,?)", rows)
        return len(rows)

    def ledger_counts(self) -> dict[str, int]:
        """Writes by outcome, one per trace: ok if any attempt was, else unknown, else fail."""
        counts = {"acknowledged": 0, "failed": 0, "unknown": 0}
        names = {"ok": "acknowledged", "fail": "failed", "unknown": "unknown"}
        for status, n in self.db.execute(
            "SELECT s, COUNT(*) FROM (SELECT CASE WHEN SUM(status = 'ok') THEN 'ok' "
            "WHEN SUM(status = 'unknown') THEN 'unknown' ELSE 'fail' END AS s "
            "FROM aa_ledger GROUP BY trace) GROUP BY s"
        ):
            counts[names[status]] += n
        return counts

    def has_ledger(self) -> bool:
        return self.db.execute("SELECT 1 FROM aa_ledger LIMIT 1").fetchone() is not None

    def scalar(self, sql: str, params: tuple = ()) -> Any:
        return self.db.execute(sql, params).fetchone()[0]
