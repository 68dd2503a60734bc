"""What verify reads for a postgres-cdc run besides the streams: the ledger's statements, the
source table's final state (PostgreSQL, at the URL in the run's ``postgres.json``), the
capture's lag file and the run's ``cdc_names``. Each goes into the :class:`CdcStore` as it is
read (a cursor, not a list), so memory stays flat.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from verify.cdc.records import key_text, normal_body
from verify.cdc.store import CdcStore
from verify.ledger_file import load_ledger_file
from xrh import postgres_cdc as pc
from xrh import runs

PIPELINE = pc.PIPELINE
CONNECT_TIMEOUT_S = 5
FETCH = 5000


def cdc_names(run_path: Path) -> Any:
    """``cdc_names`` of the run's config.json (a user's table-mapping renames), or None."""
    try:
        return json.loads((Path(run_path) / runs.CONFIG_FILE).read_text()).get("cdc_names")
    except (OSError, ValueError, AttributeError):
        return None


def import_ledger(store: CdcStore, path: Path, notes: list[str]) -> str | None:
    """The ledger's postgres-cdc statements into the store; a reason when the ledger is
    unreadable or not complete."""

    def rows(ledger: Any) -> Iterator[tuple]:
        for trace, producer, seq, txn, key, op, status, n, commit_ms in ledger.execute(
            "SELECT trace, producer, seq, txn, key, op, status, rows, commit_ts FROM ledger "
            "WHERE pipeline = ?", (PIPELINE,)
        ):  # fmt: skip
            yield (trace, producer, seq, None if txn is None else str(txn).strip(),
                   key_text(key) or key, op, status, n, commit_ms)  # fmt: skip

    reason = load_ledger_file(path, notes, lambda ledger: store.add_statements(rows(ledger)),
                              target="the postgres-cdc table",
                              absent="the streams judged against each other and the table "
                              "without a ledger")  # fmt: skip
    notes.extend(store.separate_reused_xids())
    return reason


def database(run_path: Path) -> dict[str, Any] | None:
    """postgres.json of the run (its URL carries no password: libpq takes PGPASSWORD)."""
    path = Path(run_path) / pc.POSTGRES_FILE
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and isinstance(found.get("url"), str) else None


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_table(store: CdcStore, db: dict[str, Any], table: str, own_prefix: str | None) -> int:
    """Every row of the source table into the store; raises on any database error (psycopg's)."""
    import psycopg

    columns = ", ".join(_quoted(c) for c in pc.COLUMNS)

    def rows(cursor: Any) -> Iterator[tuple]:
        for values in cursor:
            row = dict(zip(pc.COLUMNS, values, strict=True))
            trace = row[pc.TRACE_COLUMN]
            own = own_prefix is None or not isinstance(trace, str) or trace.startswith(own_prefix)
            yield key_text(row[pc.KEY_COLUMN]), normal_body(row), trace, int(own)

    with (
        psycopg.connect(db["url"], connect_timeout=CONNECT_TIMEOUT_S) as conn,
        conn.cursor(name="xrh_verify_table") as cursor,
    ):
        cursor.itersize = FETCH
        cursor.execute(f"SELECT {columns} FROM {_qualified(table)}")
        return store.add_table_rows(rows(cursor))


def probe(db: dict[str, Any], table: str) -> str | None:
    """None when the table can be read, else why not (asked before a fresh store replaces a
    stored read of it)."""
    try:
        import psycopg

        with psycopg.connect(db["url"], connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute(f"SELECT 1 FROM {_qualified(table)} LIMIT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means the table cannot be read
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    return None


def _qualified(table: str) -> str:
    schema, _, name = table.rpartition(".")
    return f"{_quoted(schema or pc.SCHEMA)}.{_quoted(name)}"


def load_capture_lag(store: CdcStore, run_path: Path) -> dict[str, Any]:
    """capture-lag.jsonl into the store; what was found (percentiles of how far the capture's
    last put commit was behind its sample time, the largest WAL backlog)."""
    path = Path(run_path) / pc.LAG_FILE
    if not path.exists():
        return {"file": False, "note": f"no {pc.LAG_FILE}: the capture's lag was not recorded"}
    bad = [0]

    def rows() -> Iterator[tuple]:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    yield (int(d["ts_ms"]), d.get("mode"), _int(d.get("pending_bytes")),
                           _int(d.get("records_put")), _int(d.get("last_commit_ms")))  # fmt: skip
                except (ValueError, KeyError, TypeError, AttributeError):
                    bad[0] += 1

    n = store.add_capture_lag(rows())
    return {"file": True, "samples": n, "unreadable_lines": bad[0], **capture_summary(store)}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def capture_summary(store: CdcStore) -> dict[str, Any]:
    # caught up (no WAL pending) is no lag, however long ago the last commit was
    behind = "CASE WHEN pending_bytes = 0 THEN 0 ELSE ts_ms - last_commit_ms END"
    where = "last_commit_ms IS NOT NULL"
    n = store.db.execute(f"SELECT COUNT(*) FROM capture_lag WHERE {where}").fetchone()[0]
    out: dict[str, Any] = {"behind_commit_ms": {}}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        row = store.db.execute(
            f"SELECT {behind} FROM capture_lag WHERE {where} ORDER BY 1 LIMIT 1 OFFSET ?",
            (max(0, -(-n * int(q * 100) // 100) - 1),)).fetchone()  # fmt: skip
        out["behind_commit_ms"][name] = row[0] if row and n else None
    mx, pending, modes = store.db.execute(
        f"SELECT MAX(CASE WHEN {where} THEN {behind} END), MAX(pending_bytes), "
        "group_concat(DISTINCT mode) FROM capture_lag").fetchone()  # fmt: skip
    out["behind_commit_ms"]["max"] = mx
    out.update(max_pending_bytes=pending, modes=modes)
    return out
