"""``verify.sqlite``: every record read from both regions, the ledger and the claims, on disk.

Readers stream rows in through :class:`Store` in batches, so memory stays flat however long the
run was; the checks are SQL over the tables built by :meth:`Store.finalize` (one row per
identity and side), never Python dictionaries of everything.

Tables: ``src`` / ``tgt`` (one row per record read), ``src_id`` / ``tgt_id`` (per identity: copy
count and first copy in stream order), ``ledger`` / ``led_id`` (attempts and per-trace status:
``ok`` if any attempt was acknowledged, else ``unknown`` if any was, else ``fail``), ``claims``,
``dead_letters``, ``items`` (DynamoDB scans) and ``meta``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from verify.model import StoreSide, StreamRecord, identify, order_key, trace_ident
from xrh.contracts import WatermarkClaim

BATCH = 5000

_RECORD_COLUMNS = (
    "ident INTEGER NOT NULL, trace TEXT, key TEXT, pk TEXT NOT NULL, shard TEXT NOT NULL, "
    "seq TEXT NOT NULL, ord TEXT NOT NULL, commit_ts INTEGER, arrival_ms INTEGER NOT NULL, "
    "dhash INTEGER NOT NULL"
)

SCHEMA = f"""
CREATE TABLE src ({_RECORD_COLUMNS});
CREATE TABLE tgt ({_RECORD_COLUMNS});
CREATE TABLE ledger (
    ident INTEGER NOT NULL, trace TEXT NOT NULL, status TEXT NOT NULL, pk TEXT, key TEXT,
    commit_ts INTEGER, shard_id TEXT, seq TEXT, attempt INTEGER
);
CREATE TABLE claims (
    id INTEGER PRIMARY KEY, claimed_at_ms INTEGER NOT NULL, watermark_ms INTEGER NOT NULL,
    replicator_id TEXT, origin TEXT NOT NULL
);
CREATE TABLE dead_letters (
    ident INTEGER, trace TEXT, pk TEXT, key TEXT, reason TEXT, location TEXT NOT NULL
);
CREATE TABLE items (side TEXT NOT NULL, key TEXT NOT NULL, item_hash INTEGER NOT NULL,
    item TEXT NOT NULL);
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT);
"""

_ID_TABLE = """
CREATE TABLE {name}_id (
    ident INTEGER PRIMARY KEY, n INTEGER NOT NULL, ord TEXT NOT NULL, trace TEXT, key TEXT,
    pk TEXT NOT NULL, shard TEXT NOT NULL, seq TEXT NOT NULL, commit_ts INTEGER,
    arrival_ms INTEGER NOT NULL, dhash INTEGER NOT NULL, ndhash INTEGER NOT NULL,
    npk INTEGER NOT NULL
);
INSERT INTO {name}_id
SELECT ident, COUNT(*), MIN(ord), trace, key, pk, shard, seq, commit_ts, arrival_ms, dhash,
       COUNT(DISTINCT dhash), COUNT(DISTINCT pk)
FROM {name} GROUP BY ident;
"""

_LEDGER_ID = """
CREATE TABLE led_id (
    ident INTEGER PRIMARY KEY, trace TEXT NOT NULL, status TEXT NOT NULL, pk TEXT, key TEXT,
    commit_ts INTEGER, shard_id TEXT, seq TEXT, attempts INTEGER NOT NULL
);
INSERT INTO led_id
SELECT ident, trace,
       CASE WHEN MAX(status = 'ok') THEN 'ok' WHEN MAX(status = 'unknown') THEN 'unknown'
            ELSE 'fail' END,
       pk, key, commit_ts,
       MAX(CASE WHEN status = 'ok' THEN shard_id END),
       MAX(CASE WHEN status = 'ok' THEN seq END),
       COUNT(*)
FROM ledger GROUP BY ident;
"""


class Store:
    """Write side (batched inserts) and read side (a connection for the checks)."""

    def __init__(self, path: Path | str, *, fresh: bool = True) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        if fresh and self.path is not None:
            for suffix in ("", "-journal", "-wal"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-32768")  # 32 MiB page cache, sorts spill to disk
        self.db.execute("PRAGMA temp_store=FILE")
        if fresh:
            self.db.executescript(SCHEMA)
        self._pending: dict[StoreSide, list[tuple]] = {StoreSide.SOURCE: [], StoreSide.TARGET: []}
        self.counts = {StoreSide.SOURCE: 0, StoreSide.TARGET: 0}
        self.finalized = False

    # ------------------------------------------------------------------ writing

    def add(self, side: StoreSide, record: StreamRecord) -> None:
        ident = identify(record.partition_key, record.data)
        self.add_row(
            side,
            (
                ident.ident,
                ident.trace,
                ident.key,
                record.partition_key,
                record.shard_id,
                record.sequence_number,
                order_key(record.generation, record.sequence_number),
                ident.commit_ts,
                record.arrival_ms,
                ident.data_hash,
            ),
        )

    def add_row(self, side: StoreSide, row: tuple) -> None:
        """A raw row in ``src``/``tgt`` column order (tests and benchmarks plant these)."""
        pending = self._pending[side]
        pending.append(row)
        self.counts[side] += 1
        if len(pending) >= BATCH:
            self._flush(side)

    def _flush(self, side: StoreSide) -> None:
        pending = self._pending[side]
        if pending:
            self.db.executemany(f"INSERT INTO {side.value} VALUES (?,?,?,?,?,?,?,?,?,?)", pending)
            pending.clear()

    def flush(self) -> None:
        for side in StoreSide:
            self._flush(side)

    def add_ledger_rows(self, rows: Iterable[tuple]) -> int:
        """Rows of (trace, status, partition_key, key, commit_ts, shard_id, seq, attempt)."""
        n = 0
        batch: list[tuple] = []
        for row in rows:
            batch.append((trace_ident(row[0]), *row))
            if len(batch) >= BATCH:
                self.db.executemany("INSERT INTO ledger VALUES (?,?,?,?,?,?,?,?,?)", batch)
                n += len(batch)
                batch.clear()
        if batch:
            self.db.executemany("INSERT INTO ledger VALUES (?,?,?,?,?,?,?,?,?)", batch)
            n += len(batch)
        return n

    def import_ledger(self, ledger_path: Path, stream: str) -> int:
        """Copy the attempts at ``stream`` from a ledger.sqlite (opened read-only)."""
        source = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
        try:
            cursor = source.execute(
                "SELECT trace, status, partition_key, key, commit_ts, shard_id, "
                "sequence_number, attempt FROM ledger WHERE target = ? OR target LIKE ?",
                (stream, f"%/{stream}"),
            )
            return self.add_ledger_rows(cursor)
        finally:
            source.close()

    def add_claims(self, claims: Iterable[WatermarkClaim], origin: str = "claims.jsonl") -> None:
        self.db.executemany(
            "INSERT INTO claims (claimed_at_ms, watermark_ms, replicator_id, origin) "
            "VALUES (?,?,?,?)",
            [(c.claimed_at_ms, c.watermark_ms, c.replicator_id, origin) for c in claims],
        )

    def add_claim(self, claimed_at_ms: int, watermark_ms: int, replicator_id: str, origin: str):
        self.db.execute(
            "INSERT INTO claims (claimed_at_ms, watermark_ms, replicator_id, origin) "
            "VALUES (?,?,?,?)",
            (claimed_at_ms, watermark_ms, replicator_id, origin),
        )

    def add_dead_letter(
        self, partition_key: str | None, data: bytes | None, reason: str, location: str
    ) -> None:
        ident = identify(partition_key or "", data) if data is not None else None
        self.db.execute(
            "INSERT INTO dead_letters VALUES (?,?,?,?,?,?)",
            (
                ident.ident if ident else None,
                ident.trace if ident else None,
                partition_key,
                ident.key if ident else None,
                reason,
                location,
            ),
        )

    def add_items(self, side: StoreSide, rows: Iterable[tuple[str, int, str]]) -> None:
        self.db.executemany(
            "INSERT INTO items VALUES (?,?,?,?)", [(side.value, *row) for row in rows]
        )

    def set_meta(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    # ------------------------------------------------------------------ building

    def finalize(self) -> None:
        """Flush and build the per-identity tables and indexes the checks join on."""
        self.flush()
        if self.finalized:
            return
        for side in StoreSide:
            self.db.execute(f"CREATE INDEX {side.value}_ident ON {side.value} (ident, ord)")
            self.db.executescript(_ID_TABLE.format(name=side.value))
        self.db.executescript(_LEDGER_ID)
        self.db.execute("CREATE INDEX tgt_id_pk ON tgt_id (pk, ord)")
        self.db.execute("CREATE INDEX src_id_arrival ON src_id (arrival_ms)")
        self.finalized = True

    def close(self) -> None:
        self.flush()
        self.db.close()
