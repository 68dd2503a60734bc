"""The postgres-cdc load's transactions as data and SQL: the statements a transaction plans, the
SQL each runs (what its RETURNING says), and how an outcome is judged (:func:`classify`), apart
from the producer that runs them (:mod:`loadgen.postgres_load`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from loadgen.postgres_options import DEFAULT_PG_OPS, DEFAULT_ROLLBACK_SHARE, DEFAULT_STATEMENTS
from replicator.core.putrecords import Backoff
from xrh.contracts import LedgerStatus
from xrh.postgres_cdc import (
    COMMIT_COLUMN,
    KEY_COLUMN,
    PAYLOAD_COLUMN,
    PIPELINE,
    SCHEMA,
    TRACE_COLUMN,
    table_name,
)

OK, FAIL, UNKNOWN = (s.value for s in LedgerStatus)
XID = "pg_current_xact_id()::xid::text"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INTERRUPTED = "interrupted: the run stopped during the transaction"
#: Locust request names: a transaction that ran to its COMMIT, one rolled back on purpose
TXN, TXN_ROLLED_BACK = "txn", "txn rolled back"

#: ``report(name, ms, statements, exc)``: one transaction as a request (Locust's event)
TxnReport = Callable[[str, float, int, BaseException | None], None]


class Cursor(Protocol):
    def fetchone(self) -> Sequence[Any] | None: ...


class Connection(Protocol):
    """What the producer needs of a psycopg 3 connection (autocommit: it sends BEGIN itself)."""

    closed: bool
    broken: bool

    def execute(self, query: str, params: Any = None) -> Cursor: ...

    def close(self) -> None: ...


class Statement(NamedTuple):
    seq: int
    trace: str
    op: str  # planned: insert (an upsert) | update | delete
    key: int


class PlannedTxn(NamedTuple):
    statements: tuple[Statement, ...]
    rollback: bool  # ends with ROLLBACK on purpose


class Ran(NamedTuple):
    """What a statement that ran did."""

    op: str  # insert | update | delete
    rows: int  # 0 or 1
    commit_ts: int  # epoch ms, its commit_timestamp
    invoked: float


class TransactionFailed(Exception):
    """A transaction that did not commit, or whose COMMIT got no answer (Locust's failure)."""


class ConnectFailed(Exception):
    """No connection could be made within the backoff's attempts."""


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    table: str  # public.<table>
    region: str  # region A: the ledger's region
    statements_per_txn: int = DEFAULT_STATEMENTS
    rollback_share: float = DEFAULT_ROLLBACK_SHARE
    ops: tuple[tuple[str, float], ...] = DEFAULT_PG_OPS
    pipeline: str = PIPELINE
    batch_size: int = 1  # the driving loop's buffer: one transaction
    linger_s: float = 0.0
    backoff: Backoff = Backoff(base=0.05, cap=2.0, max_attempts=10)  # reconnecting


def qualified_table(prefix: str) -> str:
    """``public.<table>`` of the run's prefix (the ledger's target)."""
    return f"{SCHEMA}.{table_name(prefix)}"


def statement_sql(table: str) -> dict[str, str]:
    """The SQL of each operation on ``table`` (``public.<table>``), with the named parameters
    ``key``, ``ts`` (timestamptz), ``trace`` and ``payload`` (JSON text). Each returns the xid
    last; the insert first says whether it inserted, updates and deletes return a row only
    when they changed one."""
    columns = f"{KEY_COLUMN}, {COMMIT_COLUMN}, {TRACE_COLUMN}, {PAYLOAD_COLUMN}"
    values = "%(key)s, %(ts)s, %(trace)s, %(payload)s::jsonb"
    sets = (f"{COMMIT_COLUMN} = %(ts)s, {TRACE_COLUMN} = %(trace)s, "
            f"{PAYLOAD_COLUMN} = %(payload)s::jsonb")  # fmt: skip
    excluded = ", ".join(f"{c} = EXCLUDED.{c}" for c in (COMMIT_COLUMN, TRACE_COLUMN, PAYLOAD_COLUMN))
    return {
        "insert": f"INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT ({KEY_COLUMN}) "
                  f"DO UPDATE SET {excluded} RETURNING (xmax = 0), {XID}",
        "update": f"UPDATE {table} SET {sets} WHERE {KEY_COLUMN} = %(key)s RETURNING {XID}",
        "delete": f"DELETE FROM {table} WHERE {KEY_COLUMN} = %(key)s RETURNING {XID}",
    }  # fmt: skip


def interpret(op: str, row: Sequence[Any] | None) -> tuple[str, int, str | None]:
    """(what the statement did, rows changed, the xid if it returned one) from its RETURNING."""
    if row is None:
        return op, 0, None
    if op == "insert":
        return ("insert" if row[0] else "update"), 1, str(row[-1])
    return op, 1, str(row[-1])


def connection_lost(conn: Connection | None) -> bool:
    return conn is None or bool(getattr(conn, "closed", False) or getattr(conn, "broken", False))


def classify(exc: BaseException, commit_sent: bool, lost: bool) -> str:
    """The transaction's status after ``exc``: ``fail`` if COMMIT was never sent (PostgreSQL
    rolls back a transaction that did not commit, also when its connection drops) or the
    server answered COMMIT with an error over a connection still up; else ``unknown``."""
    if not commit_sent:
        return FAIL
    if not lost and getattr(exc, "sqlstate", None):
        return FAIL
    return UNKNOWN


def describe(exc: BaseException) -> str:
    """``<type>[ <sqlstate>]: <first line of the message>`` for the ledger's error."""
    lines = str(exc).strip().splitlines()
    state = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__}{f' {state}' if state else ''}: {lines[0] if lines else ''}"


