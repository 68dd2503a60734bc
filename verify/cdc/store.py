"""The postgres-cdc part of ``verify.sqlite``, beside the kinesis pipeline's tables.

:class:`CdcStore` is a :class:`verify.store.Store` (so :func:`verify.collect.read_regions`
follows both regions' ``{prefix}-cdc``, settles, samples the checkpoint table and the A-to-B
checks of :mod:`verify.reconcile` run unchanged) whose records are identified as change records
(:mod:`verify.cdc.records`, commit time ``metadata.timestamp``). Each copy read is also kept in
``changes`` (region, shard, position in it, sequence number, arrival, identity); each identity once in
``recs`` (what the record says: op, transaction, key, commit time, trace, row); records that are
not change records in ``malformed``. The ledger's statements go to ``stmts`` and the table as
read from PostgreSQL to ``table_rows``, so a stored read can be judged again without the
database. Nothing is held in Python beyond one batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from verify.cdc.records import Malformed, Names, parse_change
from verify.model import Identity, StoreSide, StreamRecord, hash64
from verify.store import BATCH, Store

CDC_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (region TEXT NOT NULL, ord INTEGER NOT NULL,
    shard TEXT NOT NULL, seq TEXT NOT NULL, arrival_ms INTEGER NOT NULL, ident INTEGER NOT NULL,
    PRIMARY KEY (region, shard, ord)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recs (ident INTEGER PRIMARY KEY, op TEXT NOT NULL, txn TEXT NOT NULL,
    key TEXT NOT NULL, commit_us INTEGER NOT NULL, trace TEXT, own INTEGER NOT NULL, body TEXT);
CREATE TABLE IF NOT EXISTS malformed (region TEXT NOT NULL, ord INTEGER NOT NULL,
    shard TEXT NOT NULL, seq TEXT NOT NULL, pk TEXT, ident INTEGER NOT NULL, error TEXT NOT NULL,
    data TEXT, PRIMARY KEY (region, shard, ord)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS foreign_changes (region TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (region)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stmts (trace TEXT PRIMARY KEY, producer TEXT, seq INTEGER,
    txn TEXT, key TEXT, op TEXT NOT NULL, status TEXT NOT NULL, rows INTEGER,
    commit_ms INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS stmts_txn ON stmts (txn, key, op, seq);
CREATE TABLE IF NOT EXISTS table_rows (key TEXT PRIMARY KEY, body TEXT NOT NULL, trace TEXT,
    own INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS capture_lag (ts_ms INTEGER NOT NULL, mode TEXT,
    pending_bytes INTEGER, records_put INTEGER, last_commit_ms INTEGER);
"""
DATA_KEPT = 500  # characters of a malformed record's data kept for its example


class CdcStore(Store):
    """verify.sqlite of a postgres-cdc run (see the module's docstring)."""

    def __init__(self, path: Path | str, *, names: Names, fresh: bool = True,
                 own_prefix: str | None = None) -> None:  # fmt: skip
        super().__init__(path, fresh=fresh, own_prefix=own_prefix)
        self.db.executescript(CDC_SCHEMA)
        self.names = names
        self._changes: list[tuple] = []
        self._recs: list[tuple] = []
        self._malformed: list[tuple] = []
        self._foreign = {"a": 0, "b": 0}

    def add_read(self, region: str, record: StreamRecord) -> None:
        """One copy read in ``region``: region A is the source side (capture writes there)."""
        try:
            change = parse_change(record.data, self.names, self._own_prefix)
        except Malformed as exc:
            ident = hash64(b"h:" + record.partition_key.encode() + b"\0" + record.data)
            row = self._row(region, record, Identity(ident, None, None, None, hash64(record.data)),
                            "a")  # fmt: skip
            self._malformed.append((region, row[6], record.shard_id, record.sequence_number,
                                    record.partition_key, ident, str(exc),
                                    record.data[:DATA_KEPT].decode(errors="replace")))  # fmt: skip
            self._queue(region, record, (*row[:10], 1, "a"))
            return
        if change is None:
            self._foreign[region] += 1
            ident = hash64(b"h:" + record.partition_key.encode() + b"\0" + record.data)
            identity = Identity(ident, None, None, None, hash64(record.data))
            row = self._row(region, record, identity, "a")
            self._queue(region, record, (*row[:10], 0, "a"))
            return
        identity = Identity(change.ident, change.trace, change.key, change.commit_ms,
                            hash64(record.data))  # fmt: skip
        row = self._row(region, record, identity, "a")
        self._recs.append((change.ident, change.op, change.txn, change.key, change.commit_us,
                           change.trace, int(change.own), change.body))  # fmt: skip
        self._queue(region, record, (*row[:10], int(change.own), "a"))

    def _queue(self, region: str, record: StreamRecord, row: tuple) -> None:
        self._changes.append((region, row[6], record.shard_id, record.sequence_number,
                              record.arrival_ms, row[0]))  # fmt: skip
        self.add_row(StoreSide.SOURCE if region == "a" else StoreSide.TARGET, row)
        if len(self._changes) >= BATCH:
            self._flush_cdc()

    def _flush_cdc(self) -> None:
        with self._transaction():
            self.db.executemany("INSERT OR IGNORE INTO changes VALUES (?,?,?,?,?,?)",
                                self._changes)  # fmt: skip
            self.db.executemany("INSERT OR IGNORE INTO recs VALUES (?,?,?,?,?,?,?,?)",
                                self._recs)  # fmt: skip
            self.db.executemany("INSERT OR IGNORE INTO malformed VALUES (?,?,?,?,?,?,?,?)",
                                self._malformed)  # fmt: skip
            self.db.executemany(
                "INSERT INTO foreign_changes VALUES (?, ?) ON CONFLICT DO UPDATE SET n = n + "
                "excluded.n", [(r, n) for r, n in self._foreign.items() if n])  # fmt: skip
        for pending in (self._changes, self._recs, self._malformed):
            pending.clear()
        self._foreign = {"a": 0, "b": 0}

    def flush(self) -> None:
        super().flush()
        self._flush_cdc()

    def add_dead_letter(self, partition_key: str | None, data: bytes | None, reason: str,
                        location: str) -> None:  # fmt: skip
        """A dead letter of the replicator, identified as the change it holds."""
        super().add_dead_letter(partition_key, data, reason, location)
        try:
            change = parse_change(data or b"", self.names, self._own_prefix)
        except Malformed:
            return
        if change is not None:
            self.db.execute("UPDATE dead_letters SET ident = ?, trace = ?, key = ? "
                            "WHERE rowid = last_insert_rowid()",
                            (change.ident, change.trace, change.key))  # fmt: skip

    def _insert_many(self, sql: str, rows: Iterable[tuple]) -> int:
        n, batch = 0, []
        for row in rows:
            batch.append(tuple(row))
            n += 1
            if len(batch) >= BATCH:
                with self._transaction():
                    self.db.executemany(sql, batch)
                batch.clear()
        with self._transaction():
            self.db.executemany(sql, batch)
        return n

    def add_statements(self, rows: Iterable[tuple]) -> int:
        """Ledger rows of (trace, producer, seq, txn, key, op, status, rows, commit_ms)."""
        return self._insert_many("INSERT OR REPLACE INTO stmts VALUES (?,?,?,?,?,?,?,?,?)", rows)

    def separate_reused_xids(self) -> list[str]:
        """Tell apart ledger transactions that PostgreSQL gave the same xid.

        An xid a transaction took but never wrote to disk is handed out again after a crash,
        so a transaction in flight at a crash (never committed: a committed xid is on disk and
        never reused) and one after the restart can share it. Of the ledger transactions
        holding one xid (by producer and outcome), only the last (earliest statement time) can
        have committed: the earlier ones get a txn of their own (``<xid>~<producer>~<seq>``),
        which no record carries, so their statements are judged as not committed. Returns one
        note per xid so separated."""
        holders = self.db.execute(
            """SELECT txn, producer, status, MIN(seq), MIN(commit_ms) FROM stmts
               WHERE txn IS NOT NULL AND txn IN (SELECT txn FROM stmts WHERE txn IS NOT NULL
                   GROUP BY txn HAVING COUNT(DISTINCT producer || char(0) || status) > 1)
               GROUP BY txn, producer, status ORDER BY txn, MIN(commit_ms), MIN(seq)"""
        ).fetchall()
        by_xid: dict[str, list[tuple]] = {}
        for row in holders:
            by_xid.setdefault(row[0], []).append(row)
        notes = []
        with self.db:
            for xid, group in by_xid.items():
                for _, producer, status, first_seq, _ in group[:-1]:
                    self.db.execute(
                        "UPDATE stmts SET txn = ? WHERE txn = ? AND producer = ? AND status = ?",
                        (f"{xid}~{producer}~{first_seq}", xid, producer, status),
                    )
                notes.append(
                    f"xid {xid} was given to {len(group)} ledger transactions (reused after a "
                    f"database crash): the change records with it are matched to the last one "
                    f"({group[-1][1]}, {group[-1][2]})"
                )
        return notes

    def add_table_rows(self, rows: Iterable[tuple]) -> int:
        """The table as read: (key text, normalised body, trace, own)."""
        return self._insert_many("INSERT OR REPLACE INTO table_rows VALUES (?,?,?,?)", rows)

    def add_capture_lag(self, rows: Iterable[tuple]) -> int:
        """capture-lag.jsonl: (ts_ms, mode, pending_bytes, records_put, last_commit_ms)."""
        return self._insert_many("INSERT INTO capture_lag VALUES (?,?,?,?,?)", rows)

    def get_meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def count(self, table: str) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
