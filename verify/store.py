"""``verify.sqlite``: every record read from both regions, the ledger and the claims, on disk.

Readers stream rows in through :class:`Store` in batches, so memory stays flat however long the
run was. Each batch is folded into one row per identity (an upsert keyed by the 64-bit
identity, layout in :mod:`verify.schema`), so the grouping work, the lag histograms and the
order index are built while the network reads go on, and the checks afterwards are single scans,
never Python dictionaries of everything. Every copy is also kept in ``src`` / ``tgt`` (shard,
sequence number, arrival) for examples.

Which side a copy is on depends on where its record was written (DESIGN.md, "Ledger": the
ledger's region): :meth:`Store.add_read` takes the region a copy was read in and makes it the
source side in the record's origin region, the target side in the other. Load the ledger
first (:meth:`Store.import_ledger`), so every record of it knows its origin before any copy.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from verify.model import Identity, StoreSide, StreamRecord, identify, trace_ident
from verify.schema import SCHEMA, UPSERT_LEDGER, UPSERT_RATES, upsert_side

BATCH = 5000
# Dead-letter reasons that name a failure which may pass: such a record was dropped, not
# rejected ("transient failures must never drop data"), so its dead letter accounts for nothing.
TRANSIENT = re.compile(
    r"throttl|ProvisionedThroughput|LimitExceeded|InternalFailure|InternalServerError|"
    r"ServiceUnavailable|SlowDown|timeout|timed out|connection|unavailable",
    re.IGNORECASE,
)
POSITION_BITS = 40  # records per shard before the generation bits: 10**12

_UPSERT = {StoreSide.SOURCE: upsert_side("s"), StoreSide.TARGET: upsert_side("t")}


def _per_second(side: StoreSide, rows: list[tuple]) -> list[tuple]:
    """Rows of ``rates`` for one batch: (side, second, copies, first ms, last ms, newest
    commit), a handful per batch however large the run."""
    seconds: dict[int, list] = {}
    for row in rows:
        arrival, commit = row[8], row[7]
        second = seconds.get(arrival // 1000)
        if second is None:
            seconds[arrival // 1000] = [1, arrival, arrival, commit]
            continue
        second[0] += 1
        second[1] = min(second[1], arrival)
        second[2] = max(second[2], arrival)
        if commit is not None and (second[3] is None or commit > second[3]):
            second[3] = commit
    return [(side.value, sec, *values) for sec, values in seconds.items()]


class Store:
    """Write side (batched inserts) and read side (a connection for the checks)."""

    def __init__(
        self, path: Path | str, *, fresh: bool = True, own_prefix: str | None = None
    ) -> None:
        """``own_prefix``: traces that start with it are this run's (``'<run id>/'``); None
        means every record is (no ledger, no run: two streams compared alone)."""
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
        self._positions: dict[tuple[str, str], int] = {}
        self._own_prefix = own_prefix
        self._origin_b: set[int] = set()  # records the ledger says were written to region B
        self.finalized = False

    # ------------------------------------------------------------------ writing

    def add(self, side: StoreSide, record: StreamRecord) -> None:
        """One record as read, on a side chosen by the caller (a record written to region A:
        the source is A's stream, the target B's)."""
        ident = identify(record.partition_key, record.data)
        region = "a" if side is StoreSide.SOURCE else "b"
        self.add_row(side, self._row(region, record, ident, "a"))

    def add_read(self, region: str, record: StreamRecord) -> None:
        """One record as read in ``region`` (``'a'`` or ``'b'``): the source side if the record
        was written there, else the target side. Its position in its shard is the order it
        arrives in (callers deliver each shard in order)."""
        ident = identify(record.partition_key, record.data)
        origin = "b" if ident.ident in self._origin_b else "a"
        side = StoreSide.SOURCE if region == origin else StoreSide.TARGET
        self.add_row(side, self._row(region, record, ident, origin))

    def _row(self, region: str, record: StreamRecord, ident: Identity, origin: str) -> tuple:
        key = (region, record.shard_id)
        position = self._positions.get(key, 0) + 1
        self._positions[key] = position
        prefix = self._own_prefix
        own = 1 if prefix is None or (ident.trace or "").startswith(prefix) else 0
        return (
            ident.ident,
            ident.trace,
            ident.key,
            record.partition_key,
            record.shard_id,
            record.sequence_number,
            (record.generation << POSITION_BITS) + position,
            ident.commit_ts,
            record.arrival_ms,
            ident.data_hash,
            own,
            origin,
        )

    def add_row(self, side: StoreSide, row: tuple) -> None:
        """A row of (ident, trace, key, pk, shard, seq, ord, commit_ts, arrival_ms, dhash[,
        own, origin]); tests and benchmarks plant these directly (own 1, origin 'a' if left
        out)."""
        if len(row) == 10:
            row = (*row, 1, "a")
        pending = self._pending[side]
        pending.append(row)
        self.counts[side] += 1
        if len(pending) >= BATCH:
            self._flush(side)

    def _flush(self, side: StoreSide) -> None:
        pending = self._pending[side]
        if pending:
            with self._transaction():
                self.db.executemany(_UPSERT[side], pending)
                self.db.executemany(
                    f"INSERT INTO {side.value} VALUES (?,?,?,?)",
                    [(r[0], r[4], r[5], r[8]) for r in pending],
                )
                self.db.executemany(UPSERT_RATES, _per_second(side, pending))
            pending.clear()

    def flush(self) -> None:
        for side in StoreSide:
            self._flush(side)

    def add_ledger_rows(self, rows: Iterable[tuple]) -> int:
        """Rows of (trace, status, partition_key, key, commit_ts, shard_id, seq[, origin]):
        origin ``'a'`` or ``'b'``, the region the attempt wrote to (``'a'`` if left out)."""
        n = 0
        batch: list[tuple] = []
        origin_b = self._origin_b
        for row in rows:
            ident = trace_ident(row[0])
            origin = row[7] if len(row) > 7 and row[7] in ("a", "b") else "a"
            if origin == "b":
                origin_b.add(ident)
            batch.append((ident, *row[:7], origin))
            if len(batch) >= BATCH:
                n += self._insert_ledger(batch)
        return n + self._insert_ledger(batch)

    def _insert_ledger(self, batch: list[tuple]) -> int:
        n = len(batch)
        if n:
            with self._transaction():
                self.db.executemany(UPSERT_LEDGER, batch)
            batch.clear()
        return n

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction per batch: autocommit would make every row its own."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def import_ledger(self, ledger: sqlite3.Connection, stream: str,
                      region_b: str | None = None) -> int:  # fmt: skip
        """Copy the attempts at ``stream`` from an open ledger.sqlite
        (:func:`verify.ledger_file.load_ledger_file`); attempts whose region is ``region_b``
        were written to region B (after a failover)."""
        cursor = ledger.execute(
            "SELECT trace, status, partition_key, key, commit_ts, shard_id, "
            "sequence_number, CASE WHEN region = ? THEN 'b' ELSE 'a' END "
            "FROM ledger WHERE target = ? OR target LIKE ?",
            (region_b, stream, f"%/{stream}"),
        )
        return self.add_ledger_rows(cursor)

    def add_observed_claims(self, rows: Iterable[tuple], origin: str = "claims.jsonl") -> None:
        """Rows of (claimed_at_ms, seen_at_ms, watermark_ms, replicator_id, source_side)."""
        with self._transaction():
            self.db.executemany(
                "INSERT INTO claims (claimed_at_ms, seen_at_ms, watermark_ms, replicator_id, "
                "source_side, origin) VALUES (?,?,?,?,?,?)",
                [(*row, origin) for row in rows],
            )

    def add_claim(
        self,
        claimed_at_ms: int,
        watermark_ms: int,
        replicator_id: str,
        origin: str,
        *,
        seen_at_ms: int | None = None,
        source_side: str = "a",
    ) -> None:
        self.add_observed_claims(
            [(claimed_at_ms, seen_at_ms if seen_at_ms is not None else claimed_at_ms,
              watermark_ms, replicator_id, source_side)], origin
        )  # fmt: skip

    def add_dead_letter(
        self, partition_key: str | None, data: bytes | None, reason: str, location: str
    ) -> None:
        ident = identify(partition_key or "", data) if data is not None else None
        self.db.execute(
            "INSERT INTO dead_letters VALUES (?,?,?,?,?,?,?)",
            (
                ident.ident if ident else None,
                ident.trace if ident else None,
                partition_key,
                ident.key if ident else None,
                reason,
                location,
                int(ident is not None and not TRANSIENT.search(reason or "")),
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
        """Flush and index the small tables (the order index was kept up to date while reading)."""
        self.flush()
        if self.finalized:
            return
        self.db.executescript(
            """
            CREATE INDEX IF NOT EXISTS claims_t ON claims (claimed_at_ms, watermark_ms);
            """
        )
        self.finalized = True

    def close(self) -> None:
        self.flush()
        self.db.close()
